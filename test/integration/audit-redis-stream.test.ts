/**
 * A broker with a required Redis Stream audit sink: every record reaches the stream in chain
 * order; while the stream cannot take entries, issuance is refused within the bound and the minted
 * credential is revoked (no active lease); once the stream is back, every record arrives, no gap.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { fromCloudEvent } from '../../src/audit/cloudevent.js';
import { createRedisClient } from '../../src/redis/connect.js';
import { eventually, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { randomPrefix, sharedRedis } from '../support/redis-server.js';

const ACK_TIMEOUT_MS = 500;

async function streamSeqs(redis: Redis, key: string): Promise<number[]> {
  const entries = (await redis.xrange(key, '-', '+')) as Array<[string, string[]]>;
  // Records only: signed checkpoints travel in the same stream (kind checkpoint).
  const records = entries.filter(([, fields]) => fields[fields.indexOf('kind') + 1] === 'record');
  return records.map(([, fields]) => {
    const event = fields[fields.indexOf('event') + 1] as string;
    return fromCloudEvent(JSON.parse(event) as Record<string, unknown>).seq;
  });
}

describe('integration: required Redis Stream audit sink', function () {
  this.timeout(60_000);
  let h: Harness;
  let redis: Redis;
  let dir: string;
  const key = `${randomPrefix()}:audit-stream`;
  // A best-effort sink whose key is never a stream: it fails throughout.
  const spareKey = `${randomPrefix()}:audit-spare`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-stream-'));
    redis = createRedisClient((await sharedRedis()).url);
    await redis.set(spareKey, 'not a stream');
    h = await startHarness({
      config: {
        audit: {
          file: join(dir, 'audit.jsonl'),
          fsync: true,
          ackTimeoutMs: ACK_TIMEOUT_MS,
          sinks: [
            { type: 'redis_stream', name: 'siem', mode: 'required', key, maxLen: 10_000 },
            { type: 'redis_stream', name: 'spare', mode: 'best_effort', key: spareKey, maxLen: 10 },
          ],
        },
      },
    });
  });
  after(async () => {
    await h?.close();
    redis?.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses issuance while the stream fails, leaves no active lease, then delivers every record', async () => {
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'stream' });
    const ok = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    await eventually(async () => (await streamSeqs(redis, key)).length >= 2);

    // The stream key stops taking entries (another type under its name); the store still works.
    await redis.rename(key, `${key}:saved`);
    await redis.set(key, 'not a stream');
    const started = Date.now();
    const err = await grpcError(client.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
    const tookMs = Date.now() - started;
    assert.equal(err.code, status.UNAVAILABLE, err.details);
    assert.match(err.details, /audit trail/);
    assert.doesNotMatch(err.details, /WRONGTYPE|redis/i, 'the sink failure stays in the logs');
    assert.ok(tookMs < ACK_TIMEOUT_MS + 3000, `refused within the bound (took ${tookMs} ms)`);
    const active = await h.broker.store.listLeases({ taskId: task.task_id, state: 'active' });
    assert.deepEqual(
      active.map((l) => l.id),
      [ok.lease_id],
      'the refused credential has no active lease',
    );
    const ready = await h.httpJson('/readyz');
    assert.equal(ready.status, 503, 'not ready while a required sink is down');

    await redis.del(key);
    await redis.rename(`${key}:saved`, key);
    await eventually(async () => (await h.httpJson('/readyz')).status === 200, 15_000);
    await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });

    // Ready with the best-effort sink down; /readyz reports it.
    const readyNow = await h.httpJson('/readyz');
    assert.equal(readyNow.status, 200);
    const sinks = (readyNow.body as { audit_sinks: Array<Record<string, unknown>> }).audit_sinks;
    assert.deepEqual(
      sinks.map((s) => [s.name, s.mode, s.ok]),
      [
        ['redis_stream:siem', 'required', true],
        ['redis_stream:spare', 'best_effort', false],
      ],
    );
    assert.match(String(sinks[1]?.cause), /WRONGTYPE/);

    const fileSeqs = (await readAudit(join(dir, 'audit.jsonl'))).map((r) => r.seq as number);
    await eventually(async () => (await streamSeqs(redis, key)).length === fileSeqs.length);
    const seqs = await streamSeqs(redis, key);
    assert.deepEqual(seqs, fileSeqs, 'the stream holds the whole chain, in order');
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
      'seq continuous from 1',
    );

    const metrics = String((await h.httpJson('/metrics')).body);
    const value = (line: string): number => Number(new RegExp(`^${line} (\\S+)$`, 'm').exec(metrics)?.[1]);
    assert.equal(value('svid_broker_audit_sink_up\\{sink="redis_stream:siem"\\}'), 1);
    assert.equal(value('svid_broker_audit_sink_up\\{sink="redis_stream:spare"\\}'), 0);
    // Every entry it added: the records and the signed checkpoints between them.
    assert.equal(
      value('svid_broker_audit_sink_delivered_total\\{sink="redis_stream:siem"\\}'),
      await redis.xlen(key),
    );
    assert.equal(value('svid_broker_audit_sink_delivered_total\\{sink="redis_stream:spare"\\}'), 0);
    assert.ok(value('svid_broker_audit_sink_failures_total\\{sink="redis_stream:siem"\\}') >= 1);
    assert.ok(value('svid_broker_audit_sink_failures_total\\{sink="redis_stream:spare"\\}') >= 1);
    assert.ok(value('svid_broker_audit_sink_backlog\\{sink="redis_stream:spare"\\}') >= 1);
    assert.equal(value('svid_broker_audit_sink_backlog\\{sink="redis_stream:siem"\\}'), 0);
  });
});
