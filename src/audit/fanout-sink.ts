/**
 * Writes every event to several sinks (the shape of pino's multistream). An event counts as
 * recorded only when every sink has it: write() waits for all of them, even after one failed, so
 * no sink is left mid-write when the caller moves on, and then rejects with the first failure.
 *
 * Each sink keeps its own chain, so the records differ (id, time, hashes); the record of the first
 * sink, the primary, is the one returned.
 */
import type { AuditEventInput, AuditRecord, AuditSink } from './types.js';

export class FanoutSink implements AuditSink {
  private readonly sinks: readonly AuditSink[];

  constructor(sinks: readonly AuditSink[]) {
    if (sinks.length === 0) throw new Error('audit: FanoutSink needs at least one sink');
    this.sinks = [...sinks];
  }

  async write(event: AuditEventInput): Promise<AuditRecord> {
    const results = await Promise.allSettled(this.sinks.map((sink) => sink.write(event)));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return (results[0] as PromiseFulfilledResult<AuditRecord>).value;
  }

  /** Closes every sink; rejects with the first failure once all have been tried. */
  async close(): Promise<void> {
    const results = await Promise.allSettled(this.sinks.map((sink) => sink.close()));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}
