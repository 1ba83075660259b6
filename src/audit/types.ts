/** Audit seam. */
import type { AuditEventType } from './event-types.js';

/** Every record type, each with its meaning, lives in event-types.ts. */
export type { AuditEventType } from './event-types.js';

/** What callers hand to a sink. Values must be JSON (RFC 8785-canonicalisable); never secrets. */
export interface AuditEventInput {
  type: AuditEventType;
  /** SPIFFE ID of the acting agent, or '' when unknown (e.g. a refused handshake). */
  agent: string;
  [field: string]: unknown;
}

/** A record as written to the chain. */
export interface AuditRecord extends AuditEventInput {
  id: string;
  /** RFC 3339 UTC */
  time: string;
  /** The replica that wrote it (its SPIFFE ID): each replica keeps its own chain. */
  source: string;
  /** Position in the replica's chain, from 1, continuing across rotated files. */
  seq: number;
  prev_hash: string;
  hash: string;
}

/**
 * Contract: write() resolves only once the record is durable in the sink (written and flushed);
 * it rejects when the record could not be recorded, and the caller must then fail closed.
 */
export interface AuditSink {
  write(event: AuditEventInput): Promise<AuditRecord>;
  close(): Promise<void>;
  /** Whether writes are being accepted now (sinks that can fail and heal report it). */
  health?(): AuditSinkHealth;
}

/** Called with every record a chain keeper committed, in chain order (its own records included). */
export type CommitListener = (records: readonly AuditRecord[]) => void;

/**
 * The sink that seals the chain (the file sink; the memory sink in tests). Every record it
 * commits, including those it writes itself (`audit.recovered`, `audit.repaired`), reaches its
 * subscribers synchronously and in order, before any write() of that batch resolves.
 */
export interface ChainKeeper extends AuditSink {
  subscribe(listener: CommitListener): () => void;
}

/** A sink refusing writes says since when and why (errno, path: for operators, never for callers). */
export type AuditSinkHealth = { ok: true } | { ok: false; since: string; cause: string };
