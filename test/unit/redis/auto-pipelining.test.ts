/**
 * Auto pipelining (redis.autoPipelining, on by default): the commands issued in one tick leave as
 * one batch, each still answered, or failed, on its own.
 */
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load-config.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

describe('redis: auto pipelining', () => {
  it('is on by default and can be turned off', () => {
    assert.equal(parseConfig({}).redis.autoPipelining, true);
    assert.equal(parseConfig({ redis: { autoPipelining: false } }).redis.autoPipelining, false);
  });

  for (const on of [true, false]) {
    it(`${on ? 'batches' : 'does not batch'} one tick's commands, each answered or failed alone (autoPipelining: ${on})`, async () => {
      const server = await sharedRedis();
      const redis = createRedisClient(server.url, { autoPipelining: on });
      try {
        await redis.ping();
        const key = `${randomPrefix()}:n`;
        await redis.set(`${key}:text`, 'not a number');
        const replies = Array.from({ length: 10 }, () => redis.incr(key));
        const failing = redis.incr(`${key}:text`);
        // Queued for the batch, not written yet, when pipelining; written one by one otherwise.
        assert.equal(redis.autoPipelineQueueSize, on ? 11 : 0);
        assert.deepEqual(await Promise.all(replies), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        await assert.rejects(failing, /not an integer/);
      } finally {
        redis.disconnect();
      }
    });
  }
});
