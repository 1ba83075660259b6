/**
 * The QuarantineStore contract on both stores (Redis: a real redis-server, fresh key prefix per
 * test), including the announcements each change makes on the invalidation feed: the `{prefix}:feed`
 * stream on Redis (appended inside the same Lua script), the MemoryInvalidationFeed in process.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { MemoryInvalidationFeed } from '../../../src/feed/memory-feed.js';
import type { FeedEntry } from '../../../src/feed/types.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { MemoryQuarantineStore } from '../../../src/quarantine/memory-quarantine-store.js';
import { RedisQuarantineStore } from '../../../src/quarantine/redis-quarantine-store.js';
import type { Quarantine, QuarantineStore } from '../../../src/quarantine/types.js';
import { rawRedis } from '../../support/lease-store-harness.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

interface QuarantineHarness {
  store: QuarantineStore;
  /** Another handle on the same quarantines and strikes, as a second replica has. */
  replica(): Promise<QuarantineStore>;
  /** What the store announced on the invalidation feed so far, oldest first (ids left out). */
  announced(): Promise<Omit<FeedEntry, 'id'>[]>;
  close(): Promise<void>;
}

type MakeQuarantineHarness = () => Promise<QuarantineHarness>;

const memoryHarness: MakeQuarantineHarness = async () => {
  const feed = new MemoryInvalidationFeed();
  const entries: FeedEntry[] = [];
  feed.listen({ onEntry: (e) => void entries.push(e), onResync: async () => undefined });
  await feed.start();
  const store = new MemoryQuarantineStore(feed);
  return {
    store,
    replica: async () => store,
    announced: async () => entries.map(({ kind, fields }) => ({ kind, fields })),
    close: () => feed.close(),
  };
};

const redisHarness: MakeQuarantineHarness = async () => {
  const server = await sharedRedis();
  const prefix = randomPrefix();
  const clients: Redis[] = [];
  const open = async (): Promise<QuarantineStore> => {
    const client = createRedisClient(server.url);
    clients.push(client);
    const store = new RedisQuarantineStore(client, { prefix });
    await store.ping();
    return store;
  };
  const store = await open();
  const raw = await rawRedis(server.url);
  clients.push(raw);
  return {
    store,
    replica: open,
    announced: async () =>
      (await raw.xrange(`{${prefix}}:feed`, '-', '+')).map(([, flat]) => {
        const fields: Record<string, string> = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
        const { kind = '', ...rest } = fields;
        return { kind, fields: rest };
      }),
    close: async () => {
      await Promise.all(clients.map((c) => c.quit()));
    },
  };
};

const A = 'spiffe://example.org/agents/a';
const B = 'spiffe://example.org/agents/b';
const TEAM = 'spiffe://example.org/agents/**';

function quarantine(pattern: string, createdAt: number, overrides: Partial<Quarantine> = {}): Quarantine {
  return {
    pattern,
    reason: 'incident 42',
    by: 'spiffe://example.org/security/oncall',
    trigger: 'manual',
    createdAt,
    expiresAt: 0,
    ...overrides,
  };
}

function describeQuarantineStoreContract(name: string, makeHarness: MakeQuarantineHarness): void {
  describe(`QuarantineStore contract: ${name}`, () => {
    let h: QuarantineHarness;
    let store: QuarantineStore;
    let now: number;

    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
      now = Date.now();
    });
    afterEach(async () => {
      await h.close();
    });

    it('sets a quarantine, then replaces it, and every replica lists the latest record', async () => {
      const first = quarantine(A, now);
      assert.deepEqual(await store.put(first), { replaced: false });
      const replica = await h.replica();
      assert.deepEqual(await replica.list(now), [first]);

      const second = quarantine(A, now + 10, {
        reason: '5 denials in 60 s',
        by: 'broker',
        trigger: 'denials',
        expiresAt: now + 60_000,
        evidence: { strikes: 5, last_refusal: { reason: 'policy_denied', policies: ['p1'] } },
      });
      assert.deepEqual(await replica.put(second), { replaced: true });
      assert.deepEqual(await store.list(now + 10), [second], 'one quarantine per pattern, evidence kept');
    });

    it('lists only quarantines in force, oldest first', async () => {
      const forever = quarantine(A, now + 2);
      const later = quarantine(TEAM, now + 1, { expiresAt: now + 1000 });
      const gone = quarantine(B, now, { expiresAt: now + 500 });
      for (const q of [forever, later, gone]) await store.put(q);
      // Same createdAt: the pattern breaks the tie.
      const tie = quarantine('spiffe://example.org/agents/0', now + 2);
      await store.put(tie);
      assert.deepEqual(await store.list(now + 499), [gone, later, tie, forever]);
      assert.deepEqual(await store.list(now + 500), [later, tie, forever], 'expiresAt == now is over');
      assert.deepEqual(await store.list(now + 5000), [tie, forever]);
    });

    it('releases a quarantine once, handing back the record it ended', async () => {
      const q = quarantine(TEAM, now, { evidence: { note: 'x' } });
      await store.put(q);
      await store.put(quarantine(A, now));
      const replica = await h.replica();
      assert.deepEqual(await replica.release(TEAM, now + 5), q);
      assert.equal(await store.release(TEAM, now + 6), undefined);
      assert.equal(await store.release('spiffe://example.org/none', now + 6), undefined);
      assert.deepEqual(
        (await store.list(now + 7)).map((r) => r.pattern),
        [A],
      );
    });

    it('announces every set and release on the invalidation feed, in order, and nothing else', async () => {
      await store.put(quarantine(A, now));
      await store.put(quarantine(A, now + 1, { reason: 'again' }));
      await store.put(quarantine(TEAM, now + 2));
      await store.release(A, now + 3);
      await store.release(A, now + 4);
      await store.release('spiffe://example.org/none', now + 5);
      await store.list(now);
      await store.recordStrike(A, 'denials', now, 60_000);
      assert.deepEqual(await h.announced(), [
        { kind: 'quarantine', fields: { op: 'set', pattern: A, at: String(now) } },
        { kind: 'quarantine', fields: { op: 'set', pattern: A, at: String(now + 1) } },
        { kind: 'quarantine', fields: { op: 'set', pattern: TEAM, at: String(now + 2) } },
        { kind: 'quarantine', fields: { op: 'release', pattern: A, at: String(now + 3) } },
      ]);
    });

    it('counts strikes in a sliding window shared by every replica, per agent and kind', async () => {
      const replica = await h.replica();
      const window = 60_000;
      assert.equal(await store.recordStrike(A, 'denials', now, window), 1);
      assert.equal(await replica.recordStrike(A, 'denials', now + 10_000, window), 2);
      assert.equal(
        await store.recordStrike(A, 'denials', now + 10_000, window),
        3,
        'same instant, two strikes',
      );
      assert.equal(await replica.recordStrike(A, 'denials', now + 59_999, window), 4);
      // (now + 60000 - window, now + 60000]: the first strike has left the window.
      assert.equal(await store.recordStrike(A, 'denials', now + 60_000, window), 4);
      assert.equal(await replica.recordStrike(A, 'denials', now + 70_000, window), 3);
      assert.equal(await store.recordStrike(A, 'denials', now + 200_000, window), 1, 'all old strikes gone');
      // Other kinds and agents count apart.
      assert.equal(await replica.recordStrike(A, 'budget_exceeded', now + 200_000, window), 1);
      assert.equal(await replica.recordStrike(B, 'denials', now + 200_000, window), 1);
    });
  });
}

describeQuarantineStoreContract('MemoryQuarantineStore', memoryHarness);
describeQuarantineStoreContract('RedisQuarantineStore', redisHarness);
