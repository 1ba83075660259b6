import assert from 'node:assert/strict';
import { fromCloudEvent, toCloudEvent } from '../../../src/audit/cloudevent.js';
import { QueuedFollower, type SinkMode } from '../../../src/audit/follower.js';
import { checkRecordLine, GENESIS_HASH, verifyChain } from '../../../src/audit/hash-chain.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../src/audit/pipeline.js';
import type { AuditEventInput, AuditRecord } from '../../../src/audit/types.js';
import { isBrokerError } from '../../../src/errors.js';

const begun: AuditEventInput = { type: 'task.begun', agent: 'spiffe://example.org/agent/a', task_id: 't1' };

/** A follower whose receiver the test controls: it takes batches, refuses them, or never answers. */
class TestFollower extends QueuedFollower {
  readonly received: AuditRecord[] = [];
  behaviour: 'take' | 'refuse' | 'hang' = 'take';
  attempts = 0;

  constructor(
    mode: SinkMode,
    private readonly only?: (r: AuditRecord) => boolean,
  ) {
    super({ name: `test-${mode}`, mode, retry: { baseDelayMs: 5, maxDelayMs: 20 }, closeTimeoutMs: 200 });
  }

  protected override accepts(record: AuditRecord): boolean {
    return this.only === undefined || this.only(record);
  }

  protected async send(batch: readonly AuditRecord[]): Promise<void> {
    this.attempts += 1;
    if (this.behaviour === 'refuse') throw new Error('receiver said 503');
    if (this.behaviour === 'hang') return new Promise<void>(() => undefined);
    this.received.push(...batch);
  }
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i += 1) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check(), 'condition not reached');
}

describe('audit/pipeline', () => {
  it('hands every committed record to every follower in chain order', async () => {
    const keeper = new MemoryAuditSink();
    const a = new TestFollower('required');
    const b = new TestFollower('best_effort');
    const pipeline = new AuditPipeline(keeper, [a, b]);
    await Promise.all(Array.from({ length: 50 }, (_, n) => pipeline.write({ ...begun, n })));
    await until(() => b.received.length === 50);
    assert.deepEqual(
      a.received.map((r) => r.seq),
      keeper.records.map((r) => r.seq),
    );
    assert.deepEqual(
      b.received.map((r) => r.hash),
      keeper.records.map((r) => r.hash),
    );
    assert.equal(verifyChain(a.received.map((r) => JSON.stringify(r))).ok, true);
    await pipeline.close();
  });

  it('a required follower that refuses fails the write with UNAVAILABLE within the bound; the record still arrives later, in order', async () => {
    const keeper = new MemoryAuditSink();
    const sink = new TestFollower('required');
    sink.behaviour = 'refuse';
    const pipeline = new AuditPipeline(keeper, [sink], { ackTimeoutMs: 100 });
    await assert.rejects(
      pipeline.write(begun),
      (err: unknown) => isBrokerError(err) && err.code === 'UNAVAILABLE' && err.reason === 'audit_timeout',
    );
    assert.equal(keeper.records.length, 1, 'the refused request is still in the chain');
    assert.equal(pipeline.health().ok, false, 'the gate refuses up front while a required sink is down');
    sink.behaviour = 'take';
    await until(() => sink.received.length === 1);
    await until(() => pipeline.health().ok);
    await pipeline.write({ ...begun, n: 2 });
    assert.deepEqual(
      sink.received.map((r) => r.seq),
      [1, 2],
    );
    await pipeline.close();
  });

  it('a required follower that never answers cannot hang a write past the bound', async () => {
    const sink = new TestFollower('required');
    sink.behaviour = 'hang';
    const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink], { ackTimeoutMs: 50 });
    await assert.rejects(
      pipeline.write(begun),
      (err: unknown) => isBrokerError(err) && err.reason === 'audit_timeout',
    );
  });

  it('a keeper that never answers cannot hang a write past the bound, with no follower either', async () => {
    class StuckKeeper extends MemoryAuditSink {
      override write(): Promise<AuditRecord> {
        return new Promise<AuditRecord>(() => undefined);
      }
    }
    const pipeline = new AuditPipeline(new StuckKeeper(), [], { ackTimeoutMs: 50 });
    await assert.rejects(
      pipeline.write(begun),
      (err: unknown) => isBrokerError(err) && err.code === 'UNAVAILABLE' && err.reason === 'audit_timeout',
    );
  });

  it('a best-effort follower that fails never delays or refuses a write, and reports itself down', async () => {
    const sink = new TestFollower('best_effort');
    sink.behaviour = 'hang';
    const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink], { ackTimeoutMs: 50 });
    const record = await pipeline.write(begun);
    assert.equal(record.seq, 1);
    assert.equal(pipeline.health().ok, true);
    const refusing = new TestFollower('best_effort');
    refusing.behaviour = 'refuse';
    pipeline.addFollower(refusing);
    await pipeline.write(begun);
    await until(() => !refusing.health().ok);
    assert.equal(pipeline.health().ok, true, 'best effort: the broker keeps serving');
    assert.deepEqual(
      pipeline.sinks().map((s) => [s.name, s.health.ok]),
      [
        ['test-best_effort', true],
        ['test-best_effort', false],
      ],
    );
  });

  it('the keeper failing refuses the write before any follower sees it', async () => {
    const keeper = new MemoryAuditSink();
    const sink = new TestFollower('required');
    const pipeline = new AuditPipeline(keeper, [sink]);
    keeper.failWrites();
    await assert.rejects(
      pipeline.write(begun),
      (err: unknown) => isBrokerError(err) && err.reason === 'audit_unavailable',
    );
    assert.equal(sink.received.length, 0);
  });

  it('records a follower does not accept are acknowledged in their place', async () => {
    const sink = new TestFollower('required', (r) => r.type === 'lease.revoked');
    const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink], { ackTimeoutMs: 500 });
    await pipeline.write(begun);
    await pipeline.write({ type: 'lease.revoked', agent: 'spiffe://example.org/agent/a', lease_id: 'l1' });
    await pipeline.write(begun);
    assert.deepEqual(
      sink.received.map((r) => r.type),
      ['lease.revoked'],
    );
  });
});

describe('audit/cloudevent', () => {
  it('maps a record to a CloudEvents 1.0 event and back without changing its hash', async () => {
    const keeper = new MemoryAuditSink({ source: 'spiffe://example.org/broker' });
    const record = await keeper.write({
      ...begun,
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    const event = toCloudEvent(record);
    assert.equal(event.specversion, '1.0');
    assert.equal(event.type, 'io.svid-broker.task.begun');
    assert.equal(event.source, 'spiffe://example.org/broker');
    assert.equal(event.subject, 'spiffe://example.org/agent/a');
    assert.equal(event.chainseq, 1);
    assert.equal(event.prevhash, GENESIS_HASH);
    assert.equal(event.traceparent, record.traceparent);
    assert.deepEqual(event.data, { task_id: 't1' });
    const wire = JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
    const back = fromCloudEvent(wire);
    const check = checkRecordLine(JSON.stringify(back), GENESIS_HASH);
    assert.equal(check.ok, true);
    assert.deepEqual(back, record);
  });

  it('a record without an agent has no subject, and maps back to agent ""', async () => {
    const record = await new MemoryAuditSink().write({ type: 'audit.recovered', agent: '', down_ms: 5 });
    const event = toCloudEvent(record);
    assert.equal(event.subject, undefined);
    assert.equal(fromCloudEvent(JSON.parse(JSON.stringify(event)) as Record<string, unknown>).agent, '');
  });

  it('an edited event fails the hash check once mapped back', async () => {
    const record = await new MemoryAuditSink().write(begun);
    const wire = JSON.parse(JSON.stringify(toCloudEvent(record))) as Record<string, unknown>;
    (wire.data as Record<string, unknown>).task_id = 't2';
    const check = checkRecordLine(JSON.stringify(fromCloudEvent(wire)), GENESIS_HASH);
    assert.deepEqual(check.ok, false);
  });
});
