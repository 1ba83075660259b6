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
  return entries.map(([, fields]) => {
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

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-stream-'));
    redis = createRedisClient((await sharedRedis()).url);
    h = await startHarness({
      config: {
        audit: {
          file: join(dir, 'audit.jsonl'),
          fsync: true,
          ackTimeoutMs: ACK_TIMEOUT_MS,
          sinks: [{ type: 'redis_stream', mode: 'required', key, maxLen: 10_000 }],
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

    const fileSeqs = (await readAudit(join(dir, 'audit.jsonl'))).map((r) => r.seq as number);
    await eventually(async () => (await streamSeqs(redis, key)).length === fileSeqs.length);
    const seqs = await streamSeqs(redis, key);
    assert.deepEqual(seqs, fileSeqs, 'the stream holds the whole chain, in order');
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
      'seq continuous from 1',
    );
  });
});
