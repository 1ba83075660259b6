/**
 * An in-memory AuditSink with the same chaining and the same contract as the file sink, for tests
 * of code that audits (a fake, not a mock). failWrites() lets a test prove that its caller fails
 * closed when the audit trail is down.
 */
import type { BrokerError } from '../errors.js';
import { unavailable } from '../errors.js';
import { DEFAULT_SOURCE, GENESIS_HASH, sealRecord } from './hash-chain.js';
import type { AuditEventInput, AuditRecord, ChainKeeper, CommitListener } from './types.js';
import { createUuidV7Factory } from './uuid-v7.js';

export interface MemoryAuditSinkOptions {
  now?: () => Date;
  idFactory?: () => string;
  source?: string;
}

export class MemoryAuditSink implements ChainKeeper {
  readonly records: AuditRecord[] = [];
  private readonly listeners = new Set<CommitListener>();
  private readonly source: string;
  private lastHash = GENESIS_HASH;
  private closed = false;
  private failure: BrokerError | undefined;
  private readonly now: () => Date;
  private readonly nextId: () => string;

  constructor(opts: MemoryAuditSinkOptions = {}) {
    this.now = opts.now ?? (() => new Date());
    this.nextId = opts.idFactory ?? createUuidV7Factory(() => this.now().getTime());
    this.source = opts.source ?? DEFAULT_SOURCE;
  }

  subscribe(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async write(event: AuditEventInput): Promise<AuditRecord> {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw unavailable('audit_closed', 'audit log closed');
    const record = sealRecord(this.lastHash, event, {
      id: this.nextId(),
      time: this.now().toISOString(),
      seq: this.records.length + 1,
      source: this.source,
    });
    this.lastHash = record.hash;
    this.records.push(record);
    for (const listener of this.listeners) listener([record]);
    return record;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** From now on every write rejects, as the file sink does after an I/O error. */
  failWrites(cause?: unknown): void {
    this.failure = unavailable('audit_unavailable', 'audit log unavailable', cause);
  }

  /** The records as the file sink would have written them, for verifyChain. */
  lines(): string[] {
    return this.records.map((record) => JSON.stringify(record));
  }

  /** Records of one type, in write order. */
  ofType(type: AuditEventInput['type']): AuditRecord[] {
    return this.records.filter((record) => record.type === type);
  }
}
