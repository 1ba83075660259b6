import assert from 'node:assert/strict';
import type { FollowerSink } from '../../../src/audit/follower.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../src/audit/pipeline.js';
import type { AuditEventInput, AuditRecord } from '../../../src/audit/types.js';

/** A required follower that records what it was given and never acknowledges anything. */
function silentRequired(): FollowerSink & { given: AuditRecord[] } {
  const given: AuditRecord[] = [];
  return {
    name: 'silent',
    mode: 'required',
    given,
    enqueue: (records) => void given.push(...records),
    acknowledged: (_seq, signal) =>
      new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    health: () => ({ ok: true }),
    close: async () => undefined,
  };
}

describe('audit/pipeline addFollower', () => {
  it('a follower added while a write is under way is not waited for by that write (it never saw the record)', async () => {
    const keeper = new MemoryAuditSink();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowKeeper = Object.assign(Object.create(keeper) as MemoryAuditSink, {
      write: async (event: AuditEventInput) => {
        const record = await keeper.write(event);
        await gate;
        return record;
      },
    });
    const pipeline = new AuditPipeline(slowKeeper, [], { ackTimeoutMs: 300 });
    const writing = pipeline.write({ type: 'policy.reloaded', agent: '' });
    const late = silentRequired();
    pipeline.addFollower(late);
    release();
    const record = await writing;
    assert.equal(record.seq, 1);
    assert.equal(late.given.length, 0, 'it was added after the record was committed');
    // The next write is the late follower's to acknowledge: refused past the bound.
    await assert.rejects(pipeline.write({ type: 'policy.reloaded', agent: '' }), /audit trail unavailable/);
    assert.deepEqual(
      late.given.map((r) => r.seq),
      [2],
    );
  });
});
