/**
 * The lease store on a master found through a real Sentinel, via createRedisConnection({sentinels,
 * sentinelName}): the LeaseStore contract, the url's password and db reaching the master, and a
 * startup that names the problem when the sentinel does not know the master's name.
 */
import { strict as assert } from 'node:assert';
import { Redis } from 'ioredis';
import { isBrokerError } from '../../src/errors.js';
import { StartupError } from '../../src/main.js';
import { RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import { createRedisConnection, describeRedisTarget } from '../../src/redis/connect.js';
import { makeLease, makeTask, type MakeHarness } from '../support/lease-store-harness.js';
import { sharedRedisSentinel, type RunningRedisSentinel } from '../support/redis-cluster.js';
import { startHarness } from '../support/broker-harness.js';
import { randomPrefix } from '../support/redis-server.js';
import { describeLeaseStoreContract } from '../unit/leases/lease-store.contract.test.js';

/** The master's password travels in the url; its host and port are the sentinel's to say. */
const masterUrl = (sentinel: RunningRedisSentinel, db = 0): string =>
  `redis://:${sentinel.password}@sentinel-decides:1/${db}`;

const sentinelLeases: MakeHarness = async (opts = {}) => {
  const sentinel = await sharedRedisSentinel();
  const prefix = randomPrefix();
  const stores: RedisLeaseStore[] = [];
  const open = async (): Promise<RedisLeaseStore> => {
    const redis = createRedisConnection({
      url: masterUrl(sentinel),
      sentinels: sentinel.sentinels,
      sentinelName: sentinel.name,
    });
    const store = new RedisLeaseStore(redis, { prefix, ...opts });
    stores.push(store);
    await store.ping();
    return store;
  };
  const store = await open();
  return { store, replica: open, close: async () => void (await Promise.all(stores.map((s) => s.close()))) };
};

describe('Redis Sentinel (createRedisConnection({sentinels, sentinelName}))', () => {
  let sentinel: RunningRedisSentinel;

  before(async function () {
    this.timeout(30_000);
    sentinel = await sharedRedisSentinel();
  });

  describeLeaseStoreContract('RedisLeaseStore through Sentinel', sentinelLeases);

  it("reaches the master the sentinel names, with the url's password and db", async () => {
    const prefix = randomPrefix();
    const store = new RedisLeaseStore(
      createRedisConnection({
        url: masterUrl(sentinel, 3),
        sentinels: sentinel.sentinels,
        sentinelName: sentinel.name,
      }),
      { prefix },
    );
    const master = new Redis({ ...sentinel.master, password: sentinel.password, db: 3, lazyConnect: true });
    try {
      await store.ping();
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      assert.equal(await store.putLease(makeLease(task, now), now), 'ok');
      await master.connect();
      assert.equal(await master.hget(`{${prefix}}:task:${task.id}`, 'agent'), task.agent);
      assert.equal(await master.select(0), 'OK');
      assert.equal(await master.exists(`{${prefix}}:task:${task.id}`), 0, 'nothing written to db 0');
    } finally {
      await Promise.all([store.close(), master.quit()]);
    }
  });

  it('runs a broker wired from config.redis.sentinels, and refuses to start on an unknown name', async () => {
    const redis = { url: masterUrl(sentinel), sentinels: sentinel.sentinels, store: 'redis' };
    const h = await startHarness({ config: { redis: { ...redis, sentinelName: sentinel.name } } });
    try {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'sentinel' });
      const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.equal((await h.broker.store.getLease(issued.lease_id))?.state, 'active');
    } finally {
      await h.close();
    }

    const address = `${sentinel.sentinels[0]?.host}:${sentinel.sentinels[0]?.port}`;
    await assert.rejects(
      startHarness({ config: { redis: { ...redis, sentinelName: 'no-such-master' } } }),
      (err: unknown) => {
        assert.ok(err instanceof StartupError, `expected a StartupError, got ${String(err)}`);
        assert.ok(
          err.message.startsWith(
            `cannot reach Redis master "no-such-master" through Sentinel (${address}): lease store unavailable`,
          ),
          err.message,
        );
        assert.ok(
          err.message.includes(`sentinel ${address} does not know a master named "no-such-master"`),
          err.message,
        );
        assert.ok(!err.message.includes(sentinel.password), 'no password in the message');
        return true;
      },
    );
  });

  it('fails fast and says so when the sentinel does not know the master name', async () => {
    const problems: Error[] = [];
    const cfg = { url: masterUrl(sentinel), sentinels: sentinel.sentinels, sentinelName: 'no-such-master' };
    const store = new RedisLeaseStore(
      createRedisConnection(cfg, { commandTimeoutMs: 300, onError: (err) => problems.push(err) }),
    );
    try {
      const started = Date.now();
      await assert.rejects(store.ping(), (err: unknown) => {
        assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
        assert.equal(err.code, 'UNAVAILABLE');
        assert.equal(err.reason, 'lease_store_unavailable');
        return true;
      });
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
      const address = `${sentinel.sentinels[0]?.host}:${sentinel.sentinels[0]?.port}`;
      const expected =
        `no sentinel gave the address of master "no-such-master": sentinel ${address} ` +
        'does not know a master named "no-such-master" (check sentinelName)';
      assert.ok(problems.length > 0, 'the problem is reported');
      assert.deepEqual(new Set(problems.map((p) => p.message)), new Set([expected]));
      assert.equal(
        describeRedisTarget(cfg),
        `Redis master "no-such-master" through Sentinel (${address})`,
        'what the startup error names',
      );
    } finally {
      await store.close();
    }
  });
});
