/**
 * BrokerAdmin.WatchAudit: this replica's audit trail as a stream, for SIEM collectors. History
 * first (every record after `fromId`, read from the chain files, rotated ones included), then the
 * records committed from then on, with no gap and no duplicate between the two: the watch
 * subscribes before it reads the files, buffers what commits meanwhile, and hands on each seq once.
 *
 * Authorized by the `WatchAudit` admin action and audited as `admin.read` when it starts. The
 * caller paces it (`send` resolves when the client can take more); when more than `maxBuffered`
 * records wait for a slow client the watch ends RESOURCE_EXHAUSTED, naming the last record it
 * handed on, so the client can resume from there.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { listChainFiles } from '../audit/chain-files.js';
import { AUDIT_EVENT_TYPES } from '../audit/event-types.js';
import type { AuditRecord, AuditSink, CommitListener } from '../audit/types.js';
import { BrokerError, invalidArgument, notFound } from '../errors.js';
import type { Caller } from '../identity/types.js';
import type { PolicyEngine } from '../policy/types.js';
import { AdminGuard } from './admin-guard.js';

export interface AuditWatchFilter {
  /** '' = only records committed from now on. */
  fromId: string;
  /** Record types to hand on ([] = all). */
  types: readonly string[];
  /** Agent SPIFFE ID to hand on ('' = all). */
  agent: string;
}

export interface AuditWatchDeps {
  /** The trail's committed records, in chain order. */
  source: { subscribe(listener: CommitListener): () => void };
  /** The chain's active file (`audit.file`); rotated files are found beside it. */
  auditFile: string;
  policy: () => PolicyEngine;
  audit: AuditSink;
  logger: Logger;
  /** Records waiting for a slow client before the watch ends. Default 10,000. */
  maxBuffered?: number;
}

const DEFAULT_MAX_BUFFERED = 10_000;
const MAX_FILTER_TYPES = 64;

export class AuditWatch {
  private readonly guard: AdminGuard;

  constructor(private readonly deps: AuditWatchDeps) {
    this.guard = new AdminGuard({ policy: deps.policy, audit: deps.audit, logger: deps.logger });
  }

  /**
   * Hands matching records to `send` (one at a time, awaited) until `signal` aborts (resolves) or
   * the watch fails (rejects with a BrokerError).
   */
  async watch(
    caller: Caller,
    filter: AuditWatchFilter,
    send: (record: AuditRecord) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    await this.guard.authorize(caller, 'WatchAudit', 'WatchAudit');
    validateFilter(filter);
    const live = new LiveBuffer(this.deps.maxBuffered ?? DEFAULT_MAX_BUFFERED, signal);
    const unsubscribe = this.deps.source.subscribe((records) => live.push(records));
    try {
      await this.guard.recordRead(caller, 'WatchAudit', {
        from_id: filter.fromId,
        types: [...filter.types],
        watched_agent: filter.agent,
      });
      const cursor = new Cursor(filter, send);
      if (filter.fromId !== '') await this.replayHistory(filter.fromId, cursor, live);
      await cursor.follow(live);
    } finally {
      unsubscribe();
    }
  }

  /** Every record of the chain files after `fromId`; NOT_FOUND when no file holds it. */
  private async replayHistory(fromId: string, cursor: Cursor, live: LiveBuffer): Promise<void> {
    let found = false;
    for (const file of await listChainFiles(this.deps.auditFile)) {
      for await (const record of readRecords(file)) {
        if (found) {
          live.check(cursor.lastId);
          await cursor.offer(record);
        } else if (record.id === fromId) {
          found = true;
          cursor.skipTo(record);
        }
      }
    }
    if (!found) throw notFound('audit_id_unknown', `from_id ${fromId} is not in this replica's audit trail`);
  }
}

/** Hands on each seq once, in order, through the filter; remembers the last record it passed. */
class Cursor {
  private lastSeq = 0;
  lastId = '';

  constructor(
    private readonly filter: AuditWatchFilter,
    private readonly send: (record: AuditRecord) => Promise<void>,
  ) {}

  skipTo(record: AuditRecord): void {
    this.lastSeq = record.seq;
    this.lastId = record.id;
  }

  async offer(record: AuditRecord): Promise<void> {
    if (record.seq <= this.lastSeq) return;
    if (this.matches(record)) await this.send(record);
    this.skipTo(record);
  }

  /** Live records until the signal aborts. */
  async follow(live: LiveBuffer): Promise<void> {
    for (;;) {
      const record = await live.next(this.lastId);
      if (record === undefined) return;
      await this.offer(record);
    }
  }

  private matches(record: AuditRecord): boolean {
    if (this.filter.types.length > 0 && !this.filter.types.includes(record.type)) return false;
    return this.filter.agent === '' || record.agent === this.filter.agent;
  }
}

/** Records committed since the watch subscribed, waiting for the client. */
class LiveBuffer {
  private readonly records: AuditRecord[] = [];
  private overflowed = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly max: number,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', () => this.wake?.(), { once: true });
  }

  push(records: readonly AuditRecord[]): void {
    if (this.overflowed) return;
    this.records.push(...records);
    if (this.records.length > this.max) {
      this.overflowed = true;
      this.records.length = 0;
    }
    this.wake?.();
  }

  /** Throws RESOURCE_EXHAUSTED once the client fell too far behind. */
  check(lastId: string): void {
    if (!this.overflowed) return;
    throw new BrokerError(
      'RESOURCE_EXHAUSTED',
      `the client fell more than ${this.max} records behind; resume with from_id ${lastId || '(none sent)'}`,
      { reason: 'watch_too_slow' },
    );
  }

  /** The next record, waiting for one; undefined once the signal aborted. */
  async next(lastId: string): Promise<AuditRecord | undefined> {
    for (;;) {
      if (this.signal.aborted) return undefined;
      this.check(lastId);
      const record = this.records.shift();
      if (record !== undefined) return record;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

function validateFilter(filter: AuditWatchFilter): void {
  if (filter.types.length > MAX_FILTER_TYPES) invalid('types', `at most ${MAX_FILTER_TYPES} types`);
  for (const type of filter.types) {
    if (!Object.hasOwn(AUDIT_EVENT_TYPES, type))
      invalid('types', `unknown audit event type ${JSON.stringify(type)}`);
  }
  if (filter.agent !== '' && !filter.agent.startsWith('spiffe://')) invalid('agent', 'must be a SPIFFE ID');
  if (filter.fromId.length > 64 || /[^0-9a-zA-Z-]/.test(filter.fromId))
    invalid('from_id', 'must be an audit record id');
}

function invalid(field: string, message: string): never {
  throw invalidArgument(field, message);
}

/** The records of one chain file; a torn last line (a write in progress) is left to the live feed. */
async function* readRecords(file: string): AsyncGenerator<AuditRecord> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (line === '') continue;
      const record = parseLine(line);
      if (record !== undefined) yield record;
    }
  } finally {
    lines.close();
  }
}

function parseLine(line: string): AuditRecord | undefined {
  try {
    return JSON.parse(line) as AuditRecord;
  } catch {
    return undefined;
  }
}
