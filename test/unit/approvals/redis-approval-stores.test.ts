/**
 * What only the Redis approval and break-glass stores have: key layout (one hash tag for Cluster),
 * TTLs, two replicas on their own clients sharing one state, refusing corrupt records, and failing
 * closed and fast while Redis is down.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { RedisApprovalStore } from '../../../src/approvals/redis-approval-store.js';
import { RedisBreakGlassStore } from '../../../src/approvals/redis-break-glass-store.js';
import { isBrokerError } from '../../../src/errors.js';
import { createRedisClient } from '../../../src/leases/redis-lease-store.js';
import { rawRedis } from '../../support/lease-store-harness.js';
import {
  randomPrefix,
  sharedRedis,
  startRedisServer,
  type RunningRedis,
} from '../../support/redis-server.js';
import { ALICE, BOB, makeGrant, makeRequest, REQUESTER } from './approval-harness.js';

const RETENTION_MS = 3600_000;

async function scanAll(redis: Redis, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

async function rejectsWith(call: Promise<unknown>, code: string, reason: string): Promise<number> {
  const started = Date.now();
  await assert.rejects(call, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.reason, reason);
    return true;
  });
  return Date.now() - started;
}

const near = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 5000, `${what}: ${actual} is not near ${expected}`);

describe('Redis approval and break-glass stores (Redis only)', () => {
  let raw: Redis;
  let clients: Redis[];
  let prefix: string;
  let approvals: RedisApprovalStore;
  let breakGlass: RedisBreakGlassStore;

  beforeEach(async () => {
    const server = await sharedRedis();
    prefix = randomPrefix();
    raw = await rawRedis(server.url);
    const redis = createRedisClient(server.url);
    clients = [redis];
    await redis.ping();
    // As main.ts wires them: one client, one prefix, shared with the lease store.
    approvals = new RedisApprovalStore(redis, { prefix, retentionSeconds: RETENTION_MS / 1000 });
    breakGlass = new RedisBreakGlassStore(redis, { prefix, retentionSeconds: RETENTION_MS / 1000 });
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.quit()));
    await raw.quit();
  });

  async function secondReplica(): Promise<{
    approvals: RedisApprovalStore;
    breakGlass: RedisBreakGlassStore;
  }> {
    const redis = createRedisClient((await sharedRedis()).url);
    clients.push(redis);
    await redis.ping();
    return {
      approvals: new RedisApprovalStore(redis, { prefix }),
      breakGlass: new RedisBreakGlassStore(redis, { prefix }),
    };
  }

  describe('keys', () => {
    it('puts every key under the one `{prefix}` hash tag, so scripts work on Redis Cluster', async () => {
      const now = Date.now();
      const request = makeRequest(now);
      await approvals.create(request);
      await approvals.decide(request.id, { approver: ALICE, approve: true, reason: 'ok', at: now });
      await approvals.list({ state: 'approved' }, now);
      const grant = makeGrant(now);
      await breakGlass.grant(grant);
      await breakGlass.recordUse(grant.id);

      const keys = await scanAll(raw, `*${prefix}*`);
      for (const key of keys) assert.ok(key.startsWith(`{${prefix}}:`), `key ${key} outside the hash tag`);
      const t = `{${prefix}}`;
      assert.deepEqual(
        keys.sort(),
        [
          `${t}:approval:${request.id}`,
          `${t}:approval-digest:${request.digest}`,
          `${t}:approvals:all`,
          // Approved and unspent is still open: it counts against the caps until used or expired.
          `${t}:approvals:open:agent:${REQUESTER}`,
          `${t}:approvals:open:task:${request.taskId}`,
          `${t}:breakglass:${grant.id}`,
          `${t}:breakglass:agent:${REQUESTER}`,
          `${t}:breakglass:unreviewed`,
        ].sort(),
      );
      // Approved, so no longer in the pending index, which Redis dropped once empty.
      assert.equal(approvals.keyTag, t);
      assert.equal(breakGlass.keyTag, t);
    });

    it('gives requests their TTL at creation: expiresAt + retention for the record, expiresAt for open indexes', async () => {
      const now = Date.now();
      const request = makeRequest(now);
      await approvals.create(request);
      const t = `{${prefix}}`;
      assert.equal(
        await raw.call('PEXPIRETIME', `${t}:approval:${request.id}`),
        request.expiresAt + RETENTION_MS,
      );
      near(
        Number(await raw.call('PEXPIRETIME', `${t}:approval-digest:${request.digest}`)),
        request.expiresAt,
        'digest',
      );
      near(Number(await raw.call('PEXPIRETIME', `${t}:approvals:pending`)), request.expiresAt, 'pending');
      near(
        Number(await raw.call('PEXPIRETIME', `${t}:approvals:all`)),
        request.expiresAt + RETENTION_MS,
        'all',
      );
      // Deciding keeps the record's TTL.
      await approvals.decide(request.id, { approver: ALICE, approve: false, reason: 'no', at: now });
      assert.equal(
        await raw.call('PEXPIRETIME', `${t}:approval:${request.id}`),
        request.expiresAt + RETENTION_MS,
      );
    });

    it('keeps a grant without TTL until reviewed, then drops it at expiresAt + retention', async () => {
      const now = Date.now();
      const grant = makeGrant(now);
      await breakGlass.grant(grant);
      const t = `{${prefix}}`;
      assert.equal(await raw.pttl(`${t}:breakglass:${grant.id}`), -1);
      assert.equal(await raw.pttl(`${t}:breakglass:unreviewed`), -1);
      near(
        Number(await raw.call('PEXPIRETIME', `${t}:breakglass:agent:${REQUESTER}`)),
        grant.expiresAt,
        'agent',
      );
      await breakGlass.review(grant.id, BOB, 'fine', now + 1);
      assert.equal(
        await raw.call('PEXPIRETIME', `${t}:breakglass:${grant.id}`),
        grant.expiresAt + RETENTION_MS,
      );
      assert.equal(await raw.exists(`${t}:breakglass:unreviewed`), 0);
    });

    it('refuses a prefix that would move the hash tag', () => {
      assert.throws(() => new RedisApprovalStore(raw, { prefix: 'a}b' }), /prefix/);
      assert.throws(() => new RedisBreakGlassStore(raw, { prefix: '{x' }), /prefix/);
    });
  });

  describe('two replicas, each on its own client', () => {
    it('share approvals: created and decided on one, consumed once across both', async () => {
      const other = await secondReplica();
      const now = Date.now();
      const request = makeRequest(now, { required: 2 });
      await approvals.create(request);
      assert.equal((await other.approvals.findOpenByDigest(request.digest, now))?.id, request.id);
      const first = await other.approvals.decide(request.id, {
        approver: ALICE,
        approve: true,
        reason: 'a',
        at: now,
      });
      assert.equal(first.outcome, 'recorded');
      // The same approver through the other replica is still the same approver.
      const again = await approvals.decide(request.id, {
        approver: ALICE,
        approve: true,
        reason: 'a',
        at: now,
      });
      assert.equal(again.outcome, 'duplicate_approver');
      const second = await approvals.decide(request.id, {
        approver: BOB,
        approve: true,
        reason: 'b',
        at: now,
      });
      assert.equal(second.outcome, 'approved');
      const [a, b] = await Promise.all([
        approvals.consume(request.id, request.digest, now + 1),
        other.approvals.consume(request.id, request.digest, now + 1),
      ]);
      assert.equal([a, b].filter((r) => r !== undefined).length, 1);
      assert.equal((await other.approvals.get(request.id, now + 2))?.state, 'consumed');
    });

    it('share break-glass grants and their use counts', async () => {
      const other = await secondReplica();
      const now = Date.now();
      const grant = makeGrant(now);
      await breakGlass.grant(grant);
      const found = await other.breakGlass.findActive(REQUESTER, 'task-1', 'token/deploy', now);
      assert.equal(found?.id, grant.id);
      await other.breakGlass.recordUse(grant.id);
      await breakGlass.recordUse(grant.id);
      assert.equal((await other.breakGlass.get(grant.id))?.uses, 2);
      assert.deepEqual(
        (await other.breakGlass.listUnreviewed()).map((g) => g.id),
        [grant.id],
      );
    });
  });

  describe('corrupt records', () => {
    const corrupt = async (call: Promise<unknown>, reason: string): Promise<void> => {
      await rejectsWith(call, 'INTERNAL', reason);
    };

    it('answers INTERNAL, never a guess, for a request it cannot read', async () => {
      const now = Date.now();
      const t = `{${prefix}}`;
      await raw.hset(`${t}:approval:sideways`, 'id', 'sideways', 'state', 'sideways');
      await corrupt(approvals.get('sideways', now), 'approval_store_corrupt');

      // A stored request that claims to need no approval is never read as one that got enough.
      const zero = makeRequest(now);
      await approvals.create(zero);
      await raw.hset(`${t}:approval:${zero.id}`, 'required', '0');
      await corrupt(approvals.get(zero.id, now), 'approval_store_corrupt');

      const garbled = makeRequest(now);
      await approvals.create(garbled);
      await raw.hset(`${t}:approval:${garbled.id}`, 'approvals', '{not json');
      await corrupt(
        approvals.decide(garbled.id, { approver: ALICE, approve: true, reason: 'x', at: now }),
        'approval_store_corrupt',
      );
    });

    it('answers INTERNAL for a grant whose roles cannot be read', async () => {
      const now = Date.now();
      const grant = makeGrant(now);
      await breakGlass.grant(grant);
      await raw.hset(`{${prefix}}:breakglass:${grant.id}`, 'roles', 'token/deploy');
      await corrupt(
        breakGlass.findActive(REQUESTER, 'task', 'token/deploy', now),
        'break_glass_store_corrupt',
      );
      await corrupt(breakGlass.get(grant.id), 'break_glass_store_corrupt');
    });
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

    it('rejects UNAVAILABLE within 3 s while Redis is down', async () => {
      const p = randomPrefix();
      const a = new RedisApprovalStore(redis, { prefix: p });
      const bg = new RedisBreakGlassStore(redis, { prefix: p });
      const now = Date.now();
      const request = makeRequest(now);
      await a.create(request);
      const grant = makeGrant(now);
      await bg.grant(grant);

      server.kill();
      // Let the client notice the dropped connection, as it would between two requests.
      await new Promise((r) => setTimeout(r, 100));
      const approvalCalls: Promise<unknown>[] = [
        a.create(makeRequest(now)),
        a.get(request.id, now),
        a.findOpenByDigest(request.digest, now),
        a.list({}, now),
        a.decide(request.id, { approver: ALICE, approve: true, reason: 'x', at: now }),
        a.consume(request.id, request.digest, now),
      ];
      const grantCalls: Promise<unknown>[] = [
        bg.grant(makeGrant(now)),
        bg.get(grant.id),
        bg.findActive(REQUESTER, 'task', 'token/deploy', now),
        bg.recordUse(grant.id),
        bg.listUnreviewed(),
        bg.review(grant.id, BOB, 'x', now),
      ];
      const took = await Promise.all([
        ...approvalCalls.map((c) => rejectsWith(c, 'UNAVAILABLE', 'approval_store_unavailable')),
        ...grantCalls.map((c) => rejectsWith(c, 'UNAVAILABLE', 'break_glass_store_unavailable')),
      ]);
      assert.ok(Math.max(...took) < 3000, `slowest rejection took ${Math.max(...took)} ms`);
    });
  });
});
