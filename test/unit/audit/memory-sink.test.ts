import assert from 'node:assert/strict';
import { GENESIS_HASH, verifyChain } from '../../../src/audit/hash-chain.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { AuditEventInput } from '../../../src/audit/types.js';
import { isBrokerError } from '../../../src/errors.js';

const begun: AuditEventInput = { type: 'task.begun', agent: 'spiffe://example.org/agent/a', task_id: 't1' };

describe('audit/memory-sink', () => {
  it('chains records like the file sink, starting from the genesis hash', async () => {
    const sink = new MemoryAuditSink();
    for (let i = 0; i < 10; i += 1) await sink.write({ ...begun, n: i });
    assert.equal(sink.records.length, 10);
    assert.equal(sink.records[0]?.prev_hash, GENESIS_HASH);
    assert.deepEqual(verifyChain(sink.lines()), {
      ok: true,
      count: 10,
      lastHash: sink.records[9]?.hash,
      lastSeq: 10,
    });
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
