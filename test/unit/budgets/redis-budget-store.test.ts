/**
 * What only the Redis budget store has: budgets shared by two broker replicas on their own clients,
 * key layout (one hash tag for Cluster), TTLs that let idle scopes disappear, and failing closed and
 * fast while Redis is down.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { RedisBudgetStore } from '../../../src/budgets/redis-budget-store.js';
import { isBrokerError } from '../../../src/errors.js';
import { createRedisClient } from '../../../src/leases/redis-lease-store.js';
import { rawRedis } from '../../support/lease-store-harness.js';
import {
  randomPrefix,
  sharedRedis,
  startRedisServer,
  type RunningRedis,
} from '../../support/redis-server.js';

const GROUP = 'group:ci-agents';
const AGENT = 'agent:spiffe://example.org/agents/ci/runner-1';
const HOUR = 3600_000;

let seq = 0;
const id = (kind: string): string => `${kind}-${++seq}`;

describe('RedisBudgetStore (Redis only)', () => {
  let raw: Redis;
  let clients: Redis[];
  let prefix: string;
  let replicaA: RedisBudgetStore;
  let replicaB: RedisBudgetStore;

  beforeEach(async () => {
    const server = await sharedRedis();
    prefix = randomPrefix();
    raw = await rawRedis(server.url);
    clients = [createRedisClient(server.url), createRedisClient(server.url)];
    await Promise.all(clients.map((c) => c.ping()));
    // Two broker replicas: own clients, same prefix.
    replicaA = new RedisBudgetStore(clients[0] as Redis, { prefix });
    replicaB = new RedisBudgetStore(clients[1] as Redis, { prefix });
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.quit()));
    await raw.quit();
  });

  it('shares budgets between two replicas: 50 concurrent reservations against a limit of 10, exactly 10 pass', async () => {
    const now = Date.now();
    const scopes = [
      { scope: GROUP, limits: { credentialsPerMinute: 10 } },
      { scope: AGENT, limits: { activeLeases: 25 } },
    ];
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? replicaA : replicaB).reserveCredential(scopes, id('lease'), now + HOUR, now),
      ),
    );
    assert.equal(results.filter((r) => r.ok).length, 10);
    for (const r of results.filter((r) => !r.ok)) {
      assert.deepEqual(r, { ok: false, scope: GROUP, limit: 'credentialsPerMinute', current: 10, max: 10 });
    }
    const t = `{${prefix}}`;
    assert.equal(await raw.zcard(`${t}:budget:${GROUP}:rate`), 10);
    assert.equal(await raw.zcard(`${t}:budget:${AGENT}:leases`), 10);
  });

  it('shares open tasks between replicas, freed by either', async () => {
    const now = Date.now();
    const scopes = [{ scope: AGENT, limits: { openTasks: 1 } }];
    const task = id('task');
    assert.deepEqual(await replicaA.reserveTask(scopes, task, now + HOUR, now), { ok: true });
    assert.equal((await replicaB.reserveTask(scopes, id('task'), now + HOUR, now)).ok, false);
    await replicaB.releaseTask([AGENT], task);
    assert.deepEqual(await replicaA.reserveTask(scopes, id('task'), now + HOUR, now), { ok: true });
  });

  it('keeps every key under the `{prefix}` hash tag, with a TTL a minute past what it counts', async () => {
    const now = Date.now();
    const leaseExpiresAt = now + 10 * 60_000;
    await replicaA.reserveCredential(
      [{ scope: AGENT, limits: { credentialsPerMinute: 5, activeLeases: 5 } }],
      id('lease'),
      leaseExpiresAt,
      now,
    );
    await replicaA.reserveTask([{ scope: AGENT, limits: { openTasks: 5 } }], id('task'), now + HOUR, now);
    const t = `{${prefix}}`;
    const keys = (await raw.keys(`*${prefix}*`)).sort();
    assert.deepEqual(keys, [
      `${t}:budget:${AGENT}:leases`,
      `${t}:budget:${AGENT}:rate`,
      `${t}:budget:${AGENT}:tasks`,
    ]);
    const ttl = async (name: string): Promise<number> => raw.pttl(`${t}:budget:${AGENT}:${name}`);
    const near = (actual: number, expected: number, what: string): void =>
      assert.ok(Math.abs(actual - expected) < 5000, `${what}: ${actual} is not near ${expected}`);
    // The rate log: 60 s window + 60 s idle slack after the newest reservation.
    near(await ttl('rate'), 120_000, 'rate');
    near(await ttl('leases'), leaseExpiresAt - now + 60_000, 'leases');
    near(await ttl('tasks'), HOUR + 60_000, 'tasks');
    // A later lease pushes the expiry out; an earlier one never pulls it in.
    await replicaA.reserveCredential(
      [{ scope: AGENT, limits: { activeLeases: 5 } }],
      id('lease'),
      now + 1000,
      now,
    );
    near(await ttl('leases'), leaseExpiresAt - now + 60_000, 'leases after a shorter lease');
    assert.equal(replicaA.keyTag, t);
  });

  it('writes nothing for a scope without limits, nor for a refused reservation', async () => {
    const now = Date.now();
    await replicaA.reserveCredential([{ scope: AGENT, limits: {} }], id('lease'), now + HOUR, now);
    const refused = await replicaA.reserveCredential(
      [
        { scope: GROUP, limits: { activeLeases: 5 } },
        { scope: AGENT, limits: { activeLeases: 0 } },
      ],
      id('lease'),
      now + HOUR,
      now,
    );
    assert.equal(refused.ok, false);
    assert.deepEqual(await raw.keys(`*${prefix}*`), []);
  });

  it('refuses a prefix that would move the hash tag', () => {
    assert.throws(() => new RedisBudgetStore(raw, { prefix: 'a{b' }), /prefix/);
  });

  describe('outage', function () {
    this.timeout(30_000);
    let server: RunningRedis;
    let redis: Redis;

    beforeEach(async () => {
      server = await startRedisServer();
      redis = createRedisClient(server.url);
      await redis.ping();
    });
    afterEach(async () => {
      redis.disconnect();
      await server.stop();
    });

    it('rejects UNAVAILABLE within 3 s while Redis is down: no reservation passes unchecked', async () => {
      const store = new RedisBudgetStore(redis, { prefix: randomPrefix() });
      const now = Date.now();
      const scopes = [{ scope: AGENT, limits: { activeLeases: 5, credentialsPerMinute: 5 } }];
      assert.deepEqual(await store.reserveCredential(scopes, id('lease'), now + HOUR, now), { ok: true });

      server.kill();
      await new Promise((r) => setTimeout(r, 100));
      const calls: Promise<unknown>[] = [
        store.reserveCredential(scopes, id('lease'), now + HOUR, now),
        store.reserveTask([{ scope: AGENT, limits: { openTasks: 1 } }], id('task'), now + HOUR, now),
        store.releaseLease([AGENT], 'x'),
        store.releaseTask([AGENT], 'x'),
      ];
      const took = await Promise.all(
        calls.map(async (call) => {
          const started = Date.now();
          await assert.rejects(call, (err: unknown) => {
            assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
            assert.equal(err.code, 'UNAVAILABLE');
            assert.equal(err.reason, 'budget_store_unavailable');
            assert.ok(err.cause instanceof Error, 'the Redis error travels as the cause');
            return true;
          });
          return Date.now() - started;
        }),
      );
      assert.ok(Math.max(...took) < 3000, `slowest rejection took ${Math.max(...took)} ms`);
    });
  });
});
