import { strict as assert } from 'node:assert';
import { createRedisClient } from '../../src/redis/connect.js';
import { watchRedisHealth } from '../../src/redis/redis-health-log.js';
import { eventually } from '../support/eventually.js';
import { startRedisServer, type RunningRedis } from '../support/redis-server.js';

describe('integration: a Redis outage in the log', function () {
  this.timeout(60_000);
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    await redis?.stop();
  });

  it('one line when it starts, a reminder per remindMs, one line when it recovers', async () => {
    const lines: Array<{ level: 'warn' | 'info'; msg: string }> = [];
    const logger = {
      warn: (_: object, msg: string) => void lines.push({ level: 'warn', msg }),
      info: (_: object, msg: string) => void lines.push({ level: 'info', msg }),
    };
    let clock = 1_000_000;
    const client = createRedisClient(redis.url);
    let errors = 0;
    client.on('error', () => errors++);
    watchRedisHealth(client, { logger, target: 'Redis at test', remindMs: 60_000, now: () => clock });
    try {
      assert.equal(await client.ping(), 'PONG');
      redis.kill();
      // ioredis reports every failed reconnect; the log says it once.
      await eventually(() => (errors >= 3 ? true : undefined), 20_000);
      assert.deepEqual(lines, [
        {
          level: 'warn',
          msg: `redis unavailable: connect ECONNREFUSED 127.0.0.1:${redis.port}, failing closed`,
        },
      ]);
      clock += 60_000;
      const seen = errors;
      await eventually(() => (errors > seen ? true : undefined), 20_000);
      assert.equal(lines.length, 2);
      assert.match(
        lines[1]?.msg ?? '',
        /^redis still unavailable after 60 s \(connect ECONNREFUSED .*\), failing closed$/,
      );
      await redis.restart();
      clock += 5_000;
      await eventually(() => lines.find((l) => l.level === 'info'), 20_000);
      assert.deepEqual(lines.at(-1), { level: 'info', msg: 'redis available again after 65 s' });
      assert.equal(lines.length, 3);
    } finally {
      client.disconnect();
    }
  });
});
