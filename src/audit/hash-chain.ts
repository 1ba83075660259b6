/**
 * The audit hash chain: every record carries the hash of its predecessor, so deleting, reordering
 * or editing any record breaks verification at that point. Pure functions, shared by every sink
 * and by the verifier so that writing and checking can never drift apart.
 *
 *   hash = lowercase hex SHA-256( prev_hash || JCS(record without `hash`) )
 *
 * JCS is RFC 8785 canonical JSON; the record hashed includes `prev_hash` itself.
 */
import { createHash } from 'node:crypto';
import { BrokerError } from '../errors.js';
import { tryCanonicalJson } from '../util/canonical-json.js';
import type { AuditEventInput, AuditRecord } from './types.js';

/** prev_hash of the first record of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** Fields a sink assigns; an event that carries them would forge or confuse the chain. */
const RESERVED_FIELDS = ['id', 'time', 'source', 'seq', 'prev_hash', 'hash'] as const;

/** `source` of records written by a sink that was not told the broker replica's SPIFFE ID. */
export const DEFAULT_SOURCE = 'svid-broker';

/** What a sink assigns to each record besides the hashes. */
export interface RecordMeta {
  /** UUIDv7 */
  id: string;
  /** RFC 3339 UTC */
  time: string;
  /** Position in the chain: 1 for its first record, +1 for each next one (also across rotated files). */
  seq: number;
  /** The broker replica that wrote the record (its SPIFFE ID): the chain is per replica. */
  source: string;
}

/** Fields every record must have, in the order they are checked. */
const REQUIRED_FIELDS = ['id', 'time', 'type', 'agent', 'prev_hash', 'hash'] as const;

const HEX_SHA256 = /^[0-9a-f]{64}$/;

/** `Omit<AuditRecord, 'hash'>` would collapse to the index signature, so spelled out. */
export type RecordWithoutHash = AuditEventInput & {
  id: string;
  time: string;
  source: string;
  seq: number;
  prev_hash: string;
};

export function computeRecordHash(prevHash: string, recordWithoutHash: RecordWithoutHash): string {
  const canonical = tryCanonicalJson(recordWithoutHash);
  if (canonical === undefined) {
    throw new BrokerError('INTERNAL', 'audit: record is not canonicalisable JSON');
  }
  return createHash('sha256').update(prevHash, 'utf8').update(canonical, 'utf8').digest('hex');
}

/**
 * Builds the next record of a chain. The event is round-tripped through JSON first so the hash
 * covers exactly what a verifier will parse back from the line (undefined members dropped, Dates
 * as strings, NaN as null); hashing the live object instead could seal values the line never
 * shows. Throws (and the chain does not advance) for reserved fields or non-JSON values.
 */
export function sealRecord(prevHash: string, event: AuditEventInput, meta: RecordMeta): AuditRecord {
  for (const field of RESERVED_FIELDS) {
    if (Object.hasOwn(event, field)) {
      throw new BrokerError('INTERNAL', `audit: event must not set reserved field '${field}'`);
    }
  }
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
  } catch (err) {
    throw new BrokerError('INTERNAL', 'audit: event is not JSON-serialisable', { cause: err });
  }
  // id, time, type and agent lead the line so a human reading the file sees them first.
  const unsealed = {
    id: meta.id,
    time: meta.time,
    type: fields.type,
    agent: fields.agent,
    ...fields,
    source: meta.source,
    seq: meta.seq,
    prev_hash: prevHash,
  } as RecordWithoutHash;
  return { ...unsealed, hash: computeRecordHash(prevHash, unsealed) };
}

export type VerifyChainResult =
  | {
      ok: true;
      count: number;
      lastHash: string;
      /** seq of the last record (undefined: no record, or records from before seq existed). */
      lastSeq?: number;
    }
  | {
      ok: false;
      /** Valid records before the broken one. */
      count: number;
      /** 1-based line number of the broken record. */
      line: number;
      id?: string;
      error: string;
    };

/** The outcome of checking one parsed line against the expected prev_hash. */
export type LineCheck =
  { ok: true; hash: string; seq?: number; record: AuditRecord } | { ok: false; id?: string; error: string };

/**
 * Checks one line: JSON object, required fields, linkage to `expectedPrevHash` (skipped when
 * undefined, e.g. for the tail record a sink resumes from) and its own hash.
 */
export function checkRecordLine(line: string, expectedPrevHash: string | undefined): LineCheck {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { ok: false, error: 'unparseable json' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, error: 'not a json object' };
  }
  const record = parsed as Record<string, unknown>;
  const id = typeof record.id === 'string' ? record.id : undefined;
  const withId = (error: string): LineCheck =>
    id === undefined ? { ok: false, error } : { ok: false, id, error };
  for (const field of REQUIRED_FIELDS) {
    if (typeof record[field] !== 'string') return withId(`missing field ${field}`);
  }
  // seq and source came with the pipeline: records written before them have neither.
  if (record.seq !== undefined && !(Number.isSafeInteger(record.seq) && (record.seq as number) > 0)) {
    return withId('seq is not a positive integer');
  }
  if (record.source !== undefined && typeof record.source !== 'string')
    return withId('source is not a string');
  const { hash, ...rest } = record as unknown as AuditRecord;
  if (expectedPrevHash !== undefined && rest.prev_hash !== expectedPrevHash) {
    return withId('prev_hash mismatch');
  }
  if (!HEX_SHA256.test(hash) || computeRecordHash(rest.prev_hash, rest) !== hash) {
    return withId('hash mismatch');
  }
  const sealed = record as unknown as AuditRecord;
  return rest.seq === undefined
    ? { ok: true, hash, record: sealed }
    : { ok: true, hash, seq: rest.seq, record: sealed };
}

/** Where a verifier starts: the chain head before its first line (genesis, or a rotated file's last record). */
export interface ChainStart {
  hash: string;
  /** seq of the record whose hash is `hash` (0 at genesis; undefined when unknown). */
  seq?: number;
}

export const GENESIS_START: ChainStart = Object.freeze({ hash: GENESIS_HASH, seq: 0 });

/**
 * Incremental verifier, so the same logic serves an in-memory array and a streamed file.
 * Empty lines are tolerated only at the very end (the empty string after a final newline when a
 * file is split on '\n'); anywhere else they are reported as the break.
 */
export class ChainVerifier {
  private count = 0;
  private lineNo = 0;
  private lastHash: string;
  private lastSeq: number | undefined;
  private firstBlankLine: number | undefined;
  private broken: VerifyChainResult | undefined;

  /** `start`: the chain head the first line must link to (genesis unless continuing a rotated file). */
  constructor(start: ChainStart = GENESIS_START) {
    this.lastHash = start.hash;
    this.lastSeq = start.seq;
  }

  push(line: string): void {
    if (this.broken !== undefined) return;
    this.lineNo += 1;
    if (line === '') {
      this.firstBlankLine ??= this.lineNo;
      return;
    }
    if (this.firstBlankLine !== undefined) {
      this.broken = { ok: false, count: this.count, line: this.firstBlankLine, error: 'unparseable json' };
      return;
    }
    const check = checkRecordLine(line, this.lastHash);
    if (!check.ok) {
      this.broken = { ...check, count: this.count, line: this.lineNo };
      return;
    }
    const seqError = this.seqError(check.seq);
    if (seqError !== undefined) {
      this.broken = { ok: false, count: this.count, line: this.lineNo, id: check.record.id, error: seqError };
      return;
    }
    this.count += 1;
    this.lastHash = check.hash;
    this.lastSeq = check.seq;
  }

  /** seq must follow its predecessor's (a record without seq may not follow one with it). */
  private seqError(seq: number | undefined): string | undefined {
    if (seq === undefined)
      return this.lastSeq !== undefined && this.lastSeq > 0 ? 'missing field seq' : undefined;
    if (this.lastSeq !== undefined && seq !== this.lastSeq + 1) {
      return `seq ${seq} does not follow ${this.lastSeq}`;
    }
    return undefined;
  }

  /** True once a break was found; later lines cannot change the result. */
  get done(): boolean {
    return this.broken !== undefined;
  }

  result(): VerifyChainResult {
    if (this.broken !== undefined) return this.broken;
    const ok = { ok: true as const, count: this.count, lastHash: this.lastHash };
    return this.lastSeq === undefined || this.count === 0 ? ok : { ...ok, lastSeq: this.lastSeq };
  }
}

export function verifyChain(lines: Iterable<string>): VerifyChainResult {
  const verifier = new ChainVerifier();
  for (const line of lines) {
    verifier.push(line);
    if (verifier.done) break;
  }
  return verifier.result();
}
