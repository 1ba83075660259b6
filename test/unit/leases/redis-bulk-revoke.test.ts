/**
 * What only the Redis store's bulk revoke has (what it revokes is the selection contract's): each
 * page reads a lease once, writes it once and batches its set updates; its revocations are queued
 * as lease-based jobs (a queue entry, no job hash) that the worker's first claim builds from the
 * lease; and a page may hold more leases than one Lua call can take arguments. Counted on a
 * private redis-server with INFO commandstats, which Redis 7 keeps per command a script calls.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../../src/leases/redis-revocation-queue.js';
import type { Lease, RevocationPage } from '../../../src/leases/types.js';
import { makeLease, makeTask, rawRedis } from '../../support/lease-store-harness.js';
import { randomPrefix, startRedisServer, type RunningRedis } from '../../support/redis-server.js';

const AGENT = 'spiffe://example.org/agents/bulk';

/** Calls per command since the last CONFIG RESETSTAT. */
async function callsByCommand(raw: Redis): Promise<Record<string, number>> {
  const info = await raw.info('commandstats');
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) calls[m[1] as string] = Number(m[2]);
  return calls;
}

describe('RedisLeaseStore bulk revoke (Redis only)', function () {
  this.timeout(60_000);
  let server: RunningRedis;
  let raw: Redis;
  let store: RedisLeaseStore;
  let queue: RedisRevocationQueue;
  let prefix: string;
  let now: number;

  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    await server.stop();
  });
  beforeEach(async () => {
    prefix = randomPrefix();
    raw = await rawRedis(server.url);
    const client = createRedisClient(server.url);
    store = new RedisLeaseStore(client, { prefix });
    // The queue shares the store's client and prefix, as main.ts wires it.
    queue = new RedisRevocationQueue(client, { prefix, visibilityTimeoutMs: 1000 });
    now = Date.now();
  });
  afterEach(async () => {
    await store.close();
    await raw.quit();
  });

  /** `count` active token leases of AGENT, written concurrently. */
  async function seed(count: number): Promise<Lease[]> {
    const task = makeTask(now, { agent: AGENT, expiresAt: now + 3_600_000 });
    await store.createTask(task);
    const leases = Array.from({ length: count }, (_, i) =>
      makeLease(task, now, { id: `lease-${i}`, expiresAt: now + 60_000 + i }),
    );
    const results = await Promise.all(leases.map((l) => store.putLease(l, now)));
    assert.ok(
      results.every((r) => r === 'ok'),
      'seeded',
    );
    return leases;
  }

  async function revokeAll(pageSize: number): Promise<RevocationPage[]> {
    const pages: RevocationPage[] = [];
    const at = now + 100;
    for await (const page of store.revokeSelected(
      { agent: AGENT },
      { reason: 'admin: bulk', at, runAt: at + 60_000, pageSize },
    )) {
      pages.push(page);
    }
    return pages;
  }

  /** The job hashes under this test's prefix. */
  const jobKeys = (): Promise<string[]> => raw.keys(`{${prefix}}:revoke:job:*`);

  it('reads each lease once, writes it once (no job hash), and updates each set once per page', async () => {
    const leases = await seed(30);
    await raw.call('CONFIG', 'RESETSTAT');
    const pages = await revokeAll(10);
    assert.deepEqual(
      pages.map((p) => p.leases.length),
      [10, 10, 10, 0],
    );
    const calls = await callsByCommand(raw);
    assert.equal(calls.hmget, leases.length, 'one read per lease');
    assert.equal(calls.hset, leases.length, 'its state only: the lease is the job');
    assert.equal(calls.exists, undefined, 'no job key checked');
    assert.equal(calls.zrem, 3, 'out of the active set, once per page');
    assert.equal(calls.zadd, 9, 'deny list, token deny list and queue, once per page each');
    assert.deepEqual(await jobKeys(), [], 'no job hash written');
    assert.equal(await queue.pending(), leases.length, 'each queued');
  });

  it("writes a job's hash from its lease when the worker first claims it; a crashed claim comes back", async () => {
    const [lease] = await seed(1);
    assert.ok(lease);
    await revokeAll(10);
    const jobKey = `{${prefix}}:revoke:job:${lease.id}`;
    assert.deepEqual(await jobKeys(), []);
    const at = now + 100 + 60_000;
    const [claimed] = await queue.claimDue(at, 10); // ...and the worker dies
    assert.ok(claimed);
    const built = {
      leaseId: lease.id,
      backend: 'token',
      backendRef: lease.backendRef,
      expiresAt: String(lease.expiresAt),
      reason: 'admin: bulk',
      attempts: '0',
    };
    assert.deepEqual(await raw.hgetall(jobKey), { ...built, claim: claimed.claim, claimedAt: String(at) });
    assert.deepEqual(await queue.claimDue(at + 999, 10), [], 'hidden while claimed');
    const [again] = await queue.claimDue(at + 1000, 10);
    assert.equal(again?.leaseId, lease.id);
    assert.equal(again?.reason, 'admin: bulk');
    assert.equal(await queue.complete(lease.id, claimed.claim), false, 'the dead claim is stale');
    assert.equal(await queue.complete(lease.id, again?.claim), true);
    assert.deepEqual(await jobKeys(), []);
    assert.equal(await queue.pending(), 0);
  });

  it('drops the entry of a lease whose outcome was recorded before its job was claimed (done, not revoked again)', async () => {
    const leases = await seed(2);
    await revokeAll(10);
    const [done, open] = leases as [Lease, Lease];
    // A worker recorded the outcome and died before completing the job.
    assert.equal(
      (await store.markRevokeOutcome(done.id, 'revoked', 'admin: bulk', now + 200))?.state,
      'revoked',
    );
    assert.equal(await queue.get(done.id), undefined, 'nothing left to revoke');
    const claimed = await queue.claimDue(now + 100 + 60_000, 10);
    assert.deepEqual(
      claimed.map((j) => j.leaseId),
      [open.id],
    );
    assert.equal(await queue.pending(), 1, 'the done entry dropped, the open one kept');
    assert.equal(await raw.exists(`{${prefix}}:revoke:job:${done.id}`), 0);
  });

  it('refuses to claim a job whose revoking lease lost a field, and keeps it queued (never made up)', async () => {
    const [lease] = await seed(1);
    assert.ok(lease);
    await revokeAll(10);
    await raw.hdel(`{${prefix}}:lease:${lease.id}`, 'backendRef');
    await assert.rejects(queue.claimDue(now + 100 + 60_000, 10), /unavailable/);
    assert.equal(await queue.pending(), 1);
    assert.deepEqual(await jobKeys(), []);
  });

  it('takes a page of more leases than one Lua call can pass to a command (5,000)', async () => {
    const leases = await seed(5000);
    const pages = await revokeAll(5000);
    assert.equal(pages[0]?.leases.length, leases.length, 'all in the first page');
    assert.equal(
      pages.reduce((n, p) => n + p.leases.length, 0),
      leases.length,
    );
    const tag = `{${prefix}}`;
    assert.equal(await raw.zcard(`${tag}:active-leases`), 0);
    assert.equal(await raw.zcard(`${tag}:revoked`), leases.length);
    assert.equal(await raw.zcard(`${tag}:revoked:tokens`), leases.length);
    assert.equal(await raw.zcard(`${tag}:revoke:queue`), leases.length);
    assert.equal(await raw.hget(`${tag}:active-leases:by-backend`, 'token'), '0');
    const last = leases[leases.length - 1] as Lease;
    assert.equal((await store.getLease(last.id))?.state, 'revoking');
    assert.deepEqual(await queue.get(last.id), {
      leaseId: last.id,
      backend: 'token',
      backendRef: last.backendRef,
      expiresAt: last.expiresAt,
      reason: 'admin: bulk',
      attempts: 0,
      runAt: now + 100 + 60_000,
    });
  });
});
