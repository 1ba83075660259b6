/**
 * QuarantineView: a replica's copy of the quarantines, kept current by the invalidation feed and
 * trusted only while the feed is fresh. In process (MemoryInvalidationFeed) and across replicas on
 * a real redis-server (a quarantine set through another store handle reaches this replica's view
 * within about one blocking read).
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import { isBrokerError } from '../../../src/errors.js';
import { MemoryInvalidationFeed } from '../../../src/feed/memory-feed.js';
import { RedisInvalidationFeed } from '../../../src/feed/redis-feed.js';
import { FeedFreshness } from '../../../src/feed/types.js';
import { MemoryQuarantineStore } from '../../../src/quarantine/memory-quarantine-store.js';
import { quarantinedError, QuarantineView } from '../../../src/quarantine/quarantine-view.js';
import { RedisQuarantineStore } from '../../../src/quarantine/redis-quarantine-store.js';
import type { Quarantine } from '../../../src/quarantine/types.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';
import { eventually } from '../feed/feed-harness.js';

const A = 'spiffe://example.org/agents/a';
const A_SUB = 'spiffe://example.org/agents/a/sub';
const B = 'spiffe://example.org/agents/b';

function quarantine(pattern: string, createdAt: number, overrides: Partial<Quarantine> = {}): Quarantine {
  return {
    pattern,
    reason: 'secret incident details',
    by: 'spiffe://example.org/security/oncall',
    trigger: 'manual',
    createdAt,
    expiresAt: 0,
    ...overrides,
  };
}

/** Whether check() refuses `agent` as quarantined; any other outcome fails the test. */
function isQuarantined(view: QuarantineView, agent: string): boolean {
  try {
    view.check(agent);
    return false;
  } catch (err) {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'PERMISSION_DENIED');
    assert.equal(err.reason, 'quarantined');
    return true;
  }
}

function throwsStale(view: QuarantineView, agent: string): void {
  assert.throws(
    () => view.check(agent),
    (err: unknown) => {
      assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.reason, 'invalidation_feed_stale');
      return true;
    },
  );
}

describe('QuarantineView', () => {
  describe('in process', () => {
    let clock: number;
    let feed: MemoryInvalidationFeed;
    let store: MemoryQuarantineStore;
    let view: QuarantineView;

    beforeEach(async () => {
      clock = 1_700_000_000_000;
      feed = new MemoryInvalidationFeed(() => clock);
      store = new MemoryQuarantineStore(feed);
      view = new QuarantineView(store, new FeedFreshness(feed, 1000, () => clock), () => clock);
      feed.listen(view);
    });

    it('loads the quarantines set before start, on start', async () => {
      await store.put(quarantine(A, clock));
      throwsStale(view, A); // nothing loaded yet: it cannot know
      await feed.start();
      assert.equal(isQuarantined(view, A), true);
      assert.deepEqual(
        view.list().map((q) => q.pattern),
        [A],
      );
    });

    it('refuses a covered agent with PERMISSION_DENIED quarantined, naming the pattern but not the reason', async () => {
      await feed.start();
      await store.put(quarantine('spiffe://example.org/agents/**', clock));
      await store.put(quarantine(A_SUB, clock));
      await eventually(() => view.list().length === 2);
      assert.equal(isQuarantined(view, B), true);
      assert.throws(
        () => view.check(A_SUB),
        (err: unknown) => {
          assert.ok(isBrokerError(err));
          assert.match(err.message, /agents\/a\/sub"/, 'the most specific pattern');
          assert.doesNotMatch(err.message, /secret/);
          return true;
        },
      );
      assert.equal(isQuarantined(view, 'spiffe://example.org/other'), false);
      assert.deepEqual(quarantinedError().reason, 'quarantined');
    });

    it('follows a release, and lets a quarantine lapse at its expiresAt', async () => {
      await feed.start();
      await store.put(quarantine(A, clock));
      await store.put(quarantine(B, clock, { expiresAt: clock + 500 }));
      await eventually(() => view.list().length === 2);
      assert.equal(isQuarantined(view, A), true);
      assert.equal(isQuarantined(view, B), true);
      clock += 500;
      assert.equal(isQuarantined(view, B), false, 'expired with no feed entry');
      assert.deepEqual(
        view.list().map((q) => q.pattern),
        [A],
      );
      await store.release(A, clock);
      await eventually(() => !isQuarantined(view, A));
    });

    it('answers UNAVAILABLE invalidation_feed_stale once the feed is stale, for every agent', async () => {
      await feed.start();
      await store.put(quarantine(A, clock));
      await eventually(() => isQuarantined(view, A));
      await feed.close();
      throwsStale(view, A);
      throwsStale(view, B);
    });

    it('is stale before the feed ever started', () => {
      throwsStale(view, B);
    });
  });

  describe('across replicas on Redis', () => {
    const blockMs = 1000;
    let prefix: string;
    let clients: Redis[];
    let feed: RedisInvalidationFeed;
    let view: QuarantineView;
    /** Another replica's handle on the same quarantines. */
    let other: RedisQuarantineStore;

    beforeEach(async () => {
      const server = await sharedRedis();
      prefix = randomPrefix();
      clients = [createRedisClient(server.url), createRedisClient(server.url)];
      const [mine, theirs] = clients as [Redis, Redis];
      other = new RedisQuarantineStore(theirs, { prefix });
      await other.put(quarantine(B, Date.now()));
      feed = new RedisInvalidationFeed(mine, { prefix, blockMs });
      view = new QuarantineView(
        new RedisQuarantineStore(mine, { prefix }),
        new FeedFreshness(feed, 3 * blockMs),
      );
      feed.listen(view);
      await feed.start();
    });
    afterEach(async () => {
      await feed.close();
      for (const c of clients) c.disconnect();
    });

    it('enforces what was set before it started, as soon as start() resolves', () => {
      assert.equal(isQuarantined(view, B), true);
      assert.equal(isQuarantined(view, A), false);
    });

    it('sees a quarantine set and released through another replica within one blocking read', async () => {
      // The blocking read wakes on the append: well within blockMs, not at its timeout.
      await other.put(quarantine('spiffe://example.org/agents/a/*', Date.now()));
      await eventually(() => isQuarantined(view, A_SUB), blockMs);
      assert.equal(isQuarantined(view, A), false, 'a /* pattern covers one segment below only');
      await other.release(B, Date.now());
      await eventually(() => !isQuarantined(view, B), blockMs);
      assert.equal(isQuarantined(view, A_SUB), true);
    });
  });
});
