/**
 * What only the Redis store has: key layout (one hash tag for Cluster), TTLs, and failing closed
 * and fast while Redis is down, then recovering with the data the append-only file kept.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { isBrokerError } from '../../../src/errors.js';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
import { makeLease, makeTask, rawRedis, scanKeys } from '../../support/lease-store-harness.js';
import {
  randomPrefix,
  sharedRedis,
  startRedisServer,
  type RunningRedis,
} from '../../support/redis-server.js';

const DAY_MS = 24 * 60 * 60_000;

/** Resolves with how long the call took to reject; fails if it resolves or the error is wrong. */
async function rejectsUnavailable(call: Promise<unknown>): Promise<number> {
  const started = Date.now();
  await assert.rejects(call, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.reason, 'lease_store_unavailable');
    assert.equal(err.message, 'lease store unavailable');
    assert.ok(err.cause instanceof Error, 'the Redis error travels as the cause');
    return true;
  });
  return Date.now() - started;
}

describe('RedisLeaseStore (Redis only)', () => {
  describe('keys', () => {
    let raw: Redis;
    let store: RedisLeaseStore;
    let prefix: string;

    beforeEach(async () => {
      const server = await sharedRedis();
      prefix = randomPrefix();
      raw = await rawRedis(server.url);
      store = new RedisLeaseStore(createRedisClient(server.url), { prefix, retentionSeconds: 3600 });
      await store.ping();
    });
    afterEach(async () => {
      await store.close();
      await raw.quit();
    });

    it('puts every key under the one `{prefix}` hash tag, so scripts work on Redis Cluster', async () => {
      const now = Date.now();
      const task = makeTask(now);
      const ended = makeTask(now);
      await store.createTask(task);
      await store.createTask(ended);
      const leases = [
        makeLease(task, now),
        makeLease(task, now),
        makeLease(task, now, { expiresAt: now + 1 }),
      ];
      for (const l of leases) assert.equal(await store.putLease(l, now), 'ok');
      await store.markLeaseEnded(leases[0]?.id ?? '', 'revoked', 'incident', now);
      await store.claimExpiredLeases(now + 1, 10);
      await store.endTask(ended.id, 'ended', 'done', now);

      const keys = await scanKeys(raw, `*${prefix}*`);
      for (const key of keys) assert.ok(key.startsWith(`{${prefix}}:`), `key ${key} outside the hash tag`);
      const kinds = new Set(
        keys.map((k) =>
          k
            .slice(prefix.length + 3)
            .split(':')
            .slice(0, 2)
            .join(':'),
        ),
      );
      for (const kind of [
        `task:${task.id}`,
        `task:${ended.id}`,
        `lease:${leases[0]?.id}`,
        'active-tasks',
        'active-leases',
        'revoked',
        'revoked:tokens',
        `agent-tasks:spiffe`,
        'idx:agent',
        'idx:task',
        'idx:env',
        'idx:all',
      ]) {
        assert.ok(kinds.has(kind), `expected a ${kind} key, have ${[...kinds].join(', ')}`);
      }
      assert.equal(store.keyTag, `{${prefix}}`);
    });

    it('copies the token leases of a deny list written before the token deny list existed', async () => {
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      const tokens = Array.from({ length: 7 }, (_, i) =>
        makeLease(task, now, { expiresAt: now + 10_000 + i }),
      );
      const vault = makeLease(task, now, { backend: 'vault', role: 'vault/db' });
      const past = makeLease(task, now, { expiresAt: now + 5 });
      for (const l of [...tokens, vault, past]) {
        assert.equal(await store.putLease(l, now), 'ok');
        await store.markLeaseEnded(l.id, 'revoked', 'incident', now + 1);
      }
      // As an older version left it: the deny list only.
      await raw.del(`{${prefix}}:revoked:tokens`);
      assert.deepEqual(await store.listRevokedTokens(now, { limit: 100 }), []);

      assert.equal(await store.backfillRevokedTokens(now + 10, 3), tokens.length);
      const want = tokens.map((l) => ({ jti: l.backendRef, expiresAt: l.expiresAt }));
      assert.deepEqual(await store.listRevokedTokens(now + 10, { limit: 100 }), want);
      assert.equal(await store.backfillRevokedTokens(now + 10), tokens.length, 'idempotent');
      assert.deepEqual(await store.listRevokedTokens(now + 10, { limit: 100 }), want);
    });

    it('keeps active records without TTL and drops ended ones at expiresAt + retention', async () => {
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      const lease = makeLease(task, now);
      await store.putLease(lease, now);
      const leaseKey = `{${prefix}}:lease:${lease.id}`;
      const taskKey = `{${prefix}}:task:${task.id}`;
      assert.equal(await raw.pttl(leaseKey), -1);
      assert.equal(await raw.pttl(taskKey), -1);

      await store.markLeaseEnded(lease.id, 'revoked', 'incident', now + 1);
      await store.endTask(task.id, 'ended', 'done', now + 2);
      assert.equal(await raw.call('PEXPIRETIME', leaseKey), lease.expiresAt + 3600_000);
      assert.equal(await raw.call('PEXPIRETIME', taskKey), task.expiresAt + 3600_000);
      // Indexes live as long as the newest record they point at.
      for (const index of [`idx:agent:${task.agent}`, `idx:task:${task.id}`, 'idx:env:staging', 'idx:all']) {
        const expiresAt = Number(await raw.call('PEXPIRETIME', `{${prefix}}:${index}`));
        assert.ok(
          Math.abs(expiresAt - (lease.expiresAt + 3600_000)) < 5000,
          `${index} expires at ${expiresAt}`,
        );
      }
    });

    it('prunes index entries whose record Redis dropped, when listing', async () => {
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      const kept = makeLease(task, now);
      const gone = makeLease(task, now);
      await store.putLease(kept, now);
      await store.putLease(gone, now);
      // Stands in for Redis expiring the record at expiresAt + retention.
      await raw.del(`{${prefix}}:lease:${gone.id}`);

      assert.deepEqual(
        (await store.listLeases({ agent: task.agent })).map((l) => l.id),
        [kept.id],
      );
      assert.deepEqual(await raw.zrange(`{${prefix}}:idx:agent:${task.agent}`, 0, -1), [kept.id]);
    });

    it('trims index entries older than retention on every write, so unlisted indexes stay bounded', async () => {
      const now = Date.now();
      const task = makeTask(now - 10 * DAY_MS, { expiresAt: now + DAY_MS });
      await store.createTask(task);
      const ancient = makeLease(task, now - 10 * DAY_MS, { expiresAt: now - 9 * DAY_MS });
      assert.equal(await store.putLease(ancient, now - 10 * DAY_MS), 'ok');
      assert.equal(await store.putLease(makeLease(task, now), now), 'ok');
      assert.equal(await raw.zscore(`{${prefix}}:idx:env:staging`, ancient.id), null);
    });

    it('answers INTERNAL, not a guess, for a record it cannot read', async () => {
      await raw.hset(`{${prefix}}:lease:broken`, 'id', 'broken', 'state', 'sideways');
      await assert.rejects(store.getLease('broken'), (err: unknown) => {
        assert.ok(isBrokerError(err));
        assert.equal(err.code, 'INTERNAL');
        assert.equal(err.reason, 'lease_store_corrupt');
        return true;
      });
    });

    it('refuses a prefix that would move the hash tag', () => {
      assert.throws(() => new RedisLeaseStore(raw, { prefix: 'a}b' }), /prefix/);
    });
  });

  describe('outage', function () {
    this.timeout(30_000);
    let server: RunningRedis;
    let store: RedisLeaseStore;

    beforeEach(async () => {
      server = await startRedisServer();
      // `everysec` may lose the last second to a SIGKILL on a loaded machine: these tests assert
      // what was written before the kill survives, so every write is fsynced here.
      const raw = await rawRedis(server.url);
      await raw.call('CONFIG', 'SET', 'appendfsync', 'always');
      raw.disconnect();
      store = new RedisLeaseStore(createRedisClient(server.url), { prefix: randomPrefix() });
      await store.ping();
    });
    afterEach(async () => {
      await store.close();
      await server.stop();
    });

    it('rejects UNAVAILABLE within 3 s while Redis is down, then works again with the data kept', async () => {
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      const lease = makeLease(task, now);
      assert.equal(await store.putLease(lease, now), 'ok');

      server.kill();
      // Let the client notice the dropped connection, as it would between two requests.
      await new Promise((r) => setTimeout(r, 100));
      const calls: Promise<unknown>[] = [
        store.ping(),
        store.getLease(lease.id),
        store.getTask(task.id),
        store.putLease(makeLease(task, now), now),
        store.markLeaseEnded(lease.id, 'revoked', 'incident', now),
        store.endTask(task.id, 'ended', 'done', now),
        store.claimExpiredLeases(now, 10),
        store.listLeases({ agent: task.agent }),
        store.listRevokedUnexpired(now),
        store.countActiveTasks(task.agent, now),
      ];
      const took = await Promise.all(calls.map(rejectsUnavailable));
      assert.ok(Math.max(...took) < 3000, `slowest rejection took ${Math.max(...took)} ms`);

      await server.restart();
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          await store.ping();
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      // Written before the crash, kept by the append-only file; nothing ran while Redis was down.
      assert.deepEqual(await store.getLease(lease.id), lease);
      assert.equal((await store.getTask(task.id))?.state, 'active');
      assert.equal((await store.markLeaseEnded(lease.id, 'revoked', 'incident', now + 1))?.state, 'revoked');
      assert.equal(await store.putLease(makeLease(task, now), now), 'ok');
    });

    it('rejects a call in flight when Redis dies under it, without replaying it later', async () => {
      const now = Date.now();
      const task = makeTask(now);
      await store.createTask(task);
      const raw = await rawRedis(server.url);
      // Holds every other client's commands, so the next call is in flight when Redis is killed.
      await raw.call('CLIENT', 'PAUSE', '2000', 'ALL');
      const lease = makeLease(task, now);
      const inFlight = store.putLease(lease, now);
      server.kill();
      await rejectsUnavailable(inFlight);
      raw.disconnect();

      await server.restart();
      const deadline = Date.now() + 10_000;
      while (
        await store.ping().then(
          () => false,
          () => Date.now() < deadline,
        )
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(
        await store.getLease(lease.id),
        undefined,
        'the failed write did not run after reconnecting',
      );
    });

    it('rejects UNAVAILABLE within 3 s when Redis hangs without closing the connection', async () => {
      const raw = await rawRedis(server.url);
      // Longer than the 1.5 s command timeout; the pause runs out on its own before afterEach.
      await raw.call('CLIENT', 'PAUSE', '2000', 'ALL');
      raw.disconnect();
      const took = await rejectsUnavailable(store.getLease('any'));
      assert.ok(took >= 1000 && took < 3000, `took ${took} ms`);
    });

    it('rejects UNAVAILABLE fast when Redis is down at startup', async () => {
      await server.stop();
      const down = new RedisLeaseStore(createRedisClient(server.url), { prefix: randomPrefix() });
      try {
        const took = await rejectsUnavailable(down.ping());
        assert.ok(took < 3000, `took ${took} ms`);
      } finally {
        await down.close();
        server = await startRedisServer();
      }
    });
  });
});
