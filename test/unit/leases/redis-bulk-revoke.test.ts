/**
 * What only the Redis store's bulk revoke has (what it revokes is the selection contract's): each
 * page reads a lease once and batches its set updates, and a page may hold more leases than one
 * Lua call can take arguments. Counted on a private redis-server with INFO commandstats, which
 * Redis 7 keeps per command a script calls.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
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
    store = new RedisLeaseStore(createRedisClient(server.url), { prefix });
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

  it('reads each lease once, writes it twice, and checks job keys and updates each set once per page', async () => {
    const leases = await seed(30);
    await raw.call('CONFIG', 'RESETSTAT');
    const pages = await revokeAll(10);
    assert.deepEqual(
      pages.map((p) => p.leases.length),
      [10, 10, 10, 0],
    );
    const calls = await callsByCommand(raw);
    assert.equal(calls.hmget, leases.length, 'one read per lease');
    assert.equal(calls.hset, 2 * leases.length, 'its state and its job');
    assert.equal(calls.exists, 3, 'one EXISTS per page that moved leases');
    assert.equal(calls.zrem, 3, 'out of the active set, once per page');
    assert.equal(calls.zadd, 9, 'deny list, token deny list and queue, once per page each');
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
    assert.equal(await raw.hget(`${tag}:revoke:job:${last.id}`, 'reason'), 'admin: bulk');
  });
});
