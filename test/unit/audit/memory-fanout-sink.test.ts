import assert from 'node:assert/strict';
import { FanoutSink } from '../../../src/audit/fanout-sink.js';
import { GENESIS_HASH, verifyChain } from '../../../src/audit/hash-chain.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { AuditEventInput, AuditRecord, AuditSink } from '../../../src/audit/types.js';
import { isBrokerError } from '../../../src/errors.js';

const begun: AuditEventInput = { type: 'task.begun', agent: 'spiffe://example.org/agent/a', task_id: 't1' };

/** A sink whose writes settle only when the test says so. */
class ManualSink implements AuditSink {
  readonly settlers: Array<{ resolve: (r: AuditRecord) => void; reject: (e: unknown) => void }> = [];
  closed = false;
  write(): Promise<AuditRecord> {
    return new Promise((resolve, reject) => this.settlers.push({ resolve, reject }));
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

describe('audit/memory-sink', () => {
  it('chains records like the file sink, starting from the genesis hash', async () => {
    const sink = new MemoryAuditSink();
    for (let i = 0; i < 10; i += 1) await sink.write({ ...begun, n: i });
    assert.equal(sink.records.length, 10);
    assert.equal(sink.records[0]?.prev_hash, GENESIS_HASH);
    assert.deepEqual(verifyChain(sink.lines()), { ok: true, count: 10, lastHash: sink.records[9]?.hash });
    assert.equal(sink.ofType('task.begun').length, 10);
  });

  it('rejects after close and after failWrites', async () => {
    const failing = new MemoryAuditSink();
    failing.failWrites(new Error('disk gone'));
    await assert.rejects(
      failing.write(begun),
      (err: unknown) => isBrokerError(err) && err.code === 'UNAVAILABLE',
    );
    const closed = new MemoryAuditSink();
    await closed.close();
    await assert.rejects(
      closed.write(begun),
      (err: unknown) => isBrokerError(err) && err.reason === 'audit_closed',
    );
  });
});

describe('audit/fanout-sink', () => {
  it('writes to every sink and returns the primary record', async () => {
    const a = new MemoryAuditSink();
    const b = new MemoryAuditSink();
    const fanout = new FanoutSink([a, b]);
    const record = await fanout.write(begun);
    assert.deepEqual(record, a.records[0]);
    assert.equal(b.records.length, 1);
    assert.equal(b.records[0]?.task_id, 't1');
  });

  it('resolves only when every sink has resolved', async () => {
    const fast = new MemoryAuditSink();
    const slow = new ManualSink();
    const fanout = new FanoutSink([fast, slow]);
    let settled = false;
    const write = fanout.write(begun).finally(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'still waiting for the slow sink');
    slow.settlers[0]?.resolve({ ...begun, id: 'x', time: 't', prev_hash: GENESIS_HASH, hash: 'h' });
    await write;
  });

  it('rejects if any sink rejects, but only after all have settled', async () => {
    const failing = new MemoryAuditSink();
    failing.failWrites();
    const slow = new ManualSink();
    const fanout = new FanoutSink([new MemoryAuditSink(), failing, slow]);
    let settled = false;
    const write = fanout.write(begun).finally(() => (settled = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false);
    slow.settlers[0]?.resolve({ ...begun, id: 'x', time: 't', prev_hash: GENESIS_HASH, hash: 'h' });
    await assert.rejects(write, (err: unknown) => isBrokerError(err) && err.reason === 'audit_unavailable');
  });

  it('closes every sink', async () => {
    const a = new ManualSink();
    const b = new ManualSink();
    await new FanoutSink([a, b]).close();
    assert.deepEqual([a.closed, b.closed], [true, true]);
  });

  it('needs at least one sink', () => {
    assert.throws(() => new FanoutSink([]), /at least one/);
  });
});
