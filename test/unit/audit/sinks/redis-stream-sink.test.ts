/**
 * The Redis Stream follower against a real redis-server: one entry per record in chain order,
 * read by a consumer group; checkpoints in their place; an outage makes a required sink refuse
 * within the bound, and once Redis is back every record arrives with no gap.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { fromCloudEvent } from '../../../../src/audit/cloudevent.js';
import type { FollowerMetrics } from '../../../../src/audit/follower.js';
import { checkRecordLine } from '../../../../src/audit/hash-chain.js';
import { MemoryAuditSink } from '../../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../../src/audit/pipeline.js';
import { buildFollowers } from '../../../../src/audit/sinks/build-followers.js';
import { RedisStreamSink } from '../../../../src/audit/sinks/redis-stream-sink.js';
import type { AuditRecord } from '../../../../src/audit/types.js';
import { createRedisClient } from '../../../../src/redis/connect.js';
import { eventually } from '../../../support/eventually.js';
import {
  randomPrefix,
  sharedRedis,
  startRedisServer,
  type RunningRedis,
} from '../../../support/redis-server.js';

const silent = { error: () => undefined, warn: () => undefined, info: () => undefined };
const FAST_RETRY = { baseDelayMs: 20, maxDelayMs: 100 };

type Entry = [id: string, fields: string[]];

function fieldsOf(entry: Entry): Record<string, string> {
  const out: Record<string, string> = {};
  const f = entry[1];
  for (let i = 0; i < f.length; i += 2) out[f[i] as string] = f[i + 1] as string;
  return out;
}

async function streamRecords(redis: Redis, key: string): Promise<AuditRecord[]> {
  const entries = (await redis.xrange(key, '-', '+')) as Entry[];
  return entries
    .map(fieldsOf)
    .filter((f) => f.kind === 'record')
    .map((f) => fromCloudEvent(JSON.parse(f.event as string) as Record<string, unknown>));
}

async function writeEvents(pipeline: AuditPipeline, n: number, from = 0): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await pipeline.write({ type: 'task.begun', agent: 'spiffe://e.org/a', task: `t${from + i}` }));
  }
  return out;
}

class CountingMetrics implements FollowerMetrics {
  deliveredRecords = 0;
  failures = 0;
  ups: boolean[] = [];
  delivered(_sink: string, records: number): void {
    this.deliveredRecords += records;
  }
  failed(): void {
    this.failures += 1;
  }
  dropped(): void {}
  up(_sink: string, up: boolean): void {
    this.ups.push(up);
  }
}

describe('audit: Redis Stream sink', function () {
  this.timeout(30_000);

  describe('on a running Redis', () => {
    let redis: Redis;
    before(async () => {
      redis = createRedisClient((await sharedRedis()).url);
      await redis.ping();
    });
    after(() => redis.disconnect());

    it('writes one entry per record, in chain order, with the filter fields and a verifiable hash', async () => {
      const key = `${randomPrefix()}:audit`;
      const keeper = new MemoryAuditSink();
      const sink = new RedisStreamSink({ name: 'redis_stream', mode: 'required', key, maxLen: 1000, redis });
      const pipeline = new AuditPipeline(keeper, [sink]);
      const written = await writeEvents(pipeline, 5);

      const entries = (await redis.xrange(key, '-', '+')) as Entry[];
      assert.equal(entries.length, 5);
      const fields = entries.map(fieldsOf);
      assert.deepEqual(
        fields.map((f) => f.seq),
        ['1', '2', '3', '4', '5'],
      );
      for (const [i, f] of fields.entries()) {
        const record = written[i] as AuditRecord;
        assert.equal(f.kind, 'record');
        assert.equal(f.type, 'task.begun');
        assert.equal(f.source, record.source);
        assert.equal(f.hash, record.hash);
        const event = JSON.parse(f.event as string) as Record<string, unknown>;
        assert.equal(event.type, 'io.svid-broker.task.begun');
        const back = fromCloudEvent(event);
        // The record from the stream is the sealed one: its hash checks.
        assert.deepEqual(checkRecordLine(JSON.stringify(back), record.prev_hash), {
          ok: true,
          hash: record.hash,
          seq: record.seq,
          record: back,
        });
      }
      await pipeline.close();
    });

    it('is read by a consumer group, and a checkpoint sits after the records it covers', async () => {
      const key = `${randomPrefix()}:audit`;
      await redis.xgroup('CREATE', key, 'siem', '$', 'MKSTREAM');
      const sink = new RedisStreamSink({ name: 'redis_stream', mode: 'required', key, maxLen: 1000, redis });
      const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink]);
      await writeEvents(pipeline, 2);
      pipeline.publishCheckpoint('example.org/broker\n2\nabc=\n\n— sig\n');
      await writeEvents(pipeline, 1, 2);
      await eventually(async () => (await redis.xlen(key)) === 4);

      const read = (await redis.xreadgroup('GROUP', 'siem', 'c1', 'COUNT', 10, 'STREAMS', key, '>')) as Array<
        [string, Entry[]]
      >;
      const entries = (read[0] as [string, Entry[]])[1].map(fieldsOf);
      assert.deepEqual(
        entries.map((f) => f.kind),
        ['record', 'record', 'checkpoint', 'record'],
      );
      assert.deepEqual(
        entries.map((f) => f.seq),
        ['1', '2', undefined, '3'],
      );
      assert.equal(entries[2]?.note, 'example.org/broker\n2\nabc=\n\n— sig\n');
      await pipeline.close();
    });

    it('caps the stream approximately at maxLen', async () => {
      const key = `${randomPrefix()}:audit`;
      const sink = new RedisStreamSink({ name: 'redis_stream', mode: 'required', key, maxLen: 10, redis });
      const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink]);
      await writeEvents(pipeline, 300);
      const len = await redis.xlen(key);
      assert.ok(len < 300, `trimmed (length ${len})`);
      assert.ok(len >= 10, `keeps at least maxLen (length ${len})`);
      await pipeline.close();
    });

    it('refuses while the stream cannot take entries (a wrong-type key), then delivers every record', async () => {
      const key = `${randomPrefix()}:audit`;
      await redis.set(key, 'not a stream');
      const metrics = new CountingMetrics();
      const sink = new RedisStreamSink({
        name: 'redis_stream',
        mode: 'required',
        key,
        maxLen: 1000,
        redis,
        metrics,
        retry: FAST_RETRY,
      });
      const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink], { ackTimeoutMs: 300 });
      await assert.rejects(writeEvents(pipeline, 1), /audit trail unavailable/);
      assert.equal(sink.health().ok, false);
      assert.equal(pipeline.health().ok, false, 'a required sink down makes the trail down');
      await redis.del(key);
      await eventually(() => sink.health().ok);
      await writeEvents(pipeline, 2, 1);
      const records = await streamRecords(redis, key);
      assert.deepEqual(
        records.map((r) => r.seq),
        [1, 2, 3],
      );
      assert.ok(metrics.failures >= 1);
      assert.deepEqual(metrics.ups, [false, true]);
      assert.equal(metrics.deliveredRecords, 3);
      await pipeline.close();
    });
  });

  describe('Redis outage', () => {
    let server: RunningRedis;
    let redis: Redis;
    beforeEach(async () => {
      server = await startRedisServer({ appendfsync: 'always' });
      redis = createRedisClient(server.url);
      await redis.ping();
    });
    afterEach(async () => {
      redis.disconnect();
      await server.stop();
    });

    it('a required sink refuses writes within the bound while Redis is down; back up, no gap', async () => {
      const key = `${randomPrefix()}:audit`;
      const sink = new RedisStreamSink({
        name: 'redis_stream',
        mode: 'required',
        key,
        maxLen: 1000,
        redis,
        logger: silent,
        retry: FAST_RETRY,
      });
      const pipeline = new AuditPipeline(new MemoryAuditSink(), [sink], { ackTimeoutMs: 500 });
      await writeEvents(pipeline, 3);

      server.kill();
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 3; i++) {
        await assert.rejects(writeEvents(pipeline, 1, 3 + i), /audit/);
      }
      assert.equal(pipeline.health().ok, false);

      await server.restart();
      await eventually(() => sink.health().ok, 15_000);
      await writeEvents(pipeline, 1, 6);
      const seqs = (await streamRecords(redis, key)).map((r) => r.seq);
      assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7], 'every record, once, in order');
      await pipeline.close();
    });
  });

  describe('configuration', () => {
    it('without Redis (the in-process dev store) a redis_stream sink is a startup error', () => {
      assert.throws(
        () =>
          buildFollowers(
            { file: 'a.jsonl', sinks: [{ type: 'redis_stream', mode: 'required', key: 'k', maxLen: 10 }] },
            { logger: silent, redis: undefined },
          ),
        /audit sink redis_stream: a redis_stream sink needs Redis .*in-process dev store/,
      );
    });
  });
});
