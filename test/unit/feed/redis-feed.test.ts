/**
 * The invalidation feed on a Redis Stream: delivery across replicas, start-up order, and what the
 * reader does when its connection drops, when the stream was trimmed past its position, and when
 * the server goes away and comes back (a server of its own, so the test may kill it).
 */
import { strict as assert } from 'node:assert';
import type { ChainableCommander, Redis } from 'ioredis';
import { isBrokerError } from '../../../src/errors.js';
import { RedisInvalidationFeed, type RedisInvalidationFeedOptions } from '../../../src/feed/redis-feed.js';
import { FeedFreshness } from '../../../src/feed/types.js';
import { QuarantineView } from '../../../src/quarantine/quarantine-view.js';
import { RedisQuarantineStore } from '../../../src/quarantine/redis-quarantine-store.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { rawRedis } from '../../support/lease-store-harness.js';
import {
  randomPrefix,
  sharedRedis,
  startRedisServer,
  type RunningRedis,
} from '../../support/redis-server.js';
import { append, eventually, readerClientIds, RecordingListener } from './feed-harness.js';
import { rejectsWith } from '../../support/eventually.js';

function throwsWith(call: () => void, code: string, reason: string): void {
  assert.throws(call, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.reason, reason);
    return true;
  });
}

/** Feeds and clients of one test under one prefix; close() ends them all. */
class FeedSet {
  readonly prefix = randomPrefix();
  readonly key = `{${this.prefix}}:feed`;
  private readonly clients: Redis[] = [];
  private readonly feeds: RedisInvalidationFeed[] = [];

  constructor(private readonly url: string) {}

  client(): Redis {
    const client = createRedisClient(this.url);
    this.clients.push(client);
    return client;
  }

  feed(opts: RedisInvalidationFeedOptions = {}): RedisInvalidationFeed {
    const feed = new RedisInvalidationFeed(this.client(), { prefix: this.prefix, blockMs: 200, ...opts });
    this.feeds.push(feed);
    return feed;
  }

  /** A started feed with a recording listener. */
  async reader(opts: RedisInvalidationFeedOptions = {}): Promise<{
    feed: RedisInvalidationFeed;
    listener: RecordingListener;
  }> {
    const feed = this.feed(opts);
    const listener = new RecordingListener();
    feed.listen(listener);
    await feed.start();
    return { feed, listener };
  }

  async close(): Promise<void> {
    await Promise.all(this.feeds.map((f) => f.close()));
    for (const c of this.clients) c.disconnect();
  }
}

describe('RedisInvalidationFeed', () => {
  describe('on the shared server', () => {
    let set: FeedSet;
    let raw: Redis;

    beforeEach(async () => {
      const server = await sharedRedis();
      set = new FeedSet(server.url);
      raw = await rawRedis(server.url);
    });
    afterEach(async () => {
      await set.close();
      await raw.quit();
    });

    it('delivers what another replica publishes to every listener, in order, with kind and fields', async () => {
      const { listener } = await set.reader();
      const other = await set.reader();
      const writer = set.feed();
      const ids: string[] = [];
      for (let n = 0; n < 10; n++) ids.push(await writer.publish('test', { n: String(n), note: 'x' }));
      // The quarantine store appends inside its Lua script, to the same stream.
      await new RedisQuarantineStore(set.client(), { prefix: set.prefix }).put({
        pattern: 'spiffe://example.org/a',
        reason: 'r',
        by: 'b',
        trigger: 'manual',
        createdAt: 42,
        expiresAt: 0,
      });
      for (const l of [listener, other.listener]) {
        await eventually(() => l.entries.length >= 11);
        assert.deepEqual(
          l.entries.slice(0, 10),
          ids.map((id, n) => ({ id, kind: 'test', fields: { n: String(n), note: 'x' } })),
        );
        assert.deepEqual(l.entries[10]?.kind, 'quarantine');
        assert.deepEqual(l.entries[10]?.fields, { op: 'set', pattern: 'spiffe://example.org/a', at: '42' });
        assert.equal(l.resyncs, 1, 'only the one at start');
      }
    });

    it('resyncs its listeners on start before tailing from the end: old entries are not replayed', async () => {
      await append(raw, set.key, 'old-1');
      await append(raw, set.key, 'old-2');
      const feed = set.feed();
      const listener = new RecordingListener();
      // A change landing between taking the position and finishing the resync must not be lost.
      let during = true;
      feed.listen({
        onEntry: (e) => listener.onEntry(e),
        onResync: async () => {
          if (during) await append(raw, set.key, 'during-resync');
          during = false;
          await listener.onResync();
        },
      });
      await feed.start();
      assert.deepEqual(listener.events, [{ type: 'resync' }], 'start() resolves after the resync');
      await append(raw, set.key, 'new');
      await eventually(() => listener.entries.length >= 2);
      assert.deepEqual(listener.numbers(), ['during-resync', 'new']);
      assert.equal(listener.resyncs, 1);
    });

    it('confirms the feed on each read, entries or not; never confirmed before start', async () => {
      const feed = set.feed({ blockMs: 100 });
      const freshness = new FeedFreshness(feed, 1000);
      assert.equal(feed.lastConfirmedAt(), 0);
      assert.equal(freshness.fresh(), false);
      feed.listen(new RecordingListener());
      await feed.start();
      assert.equal(freshness.fresh(), true);
      const first = feed.lastConfirmedAt();
      // Idle: each timed-out blocking read confirms again.
      await eventually(() => feed.lastConfirmedAt() >= first + 150);
      assert.ok(freshness.lagMs() < 1000);
    });

    it('rejects start() and publish() with UNAVAILABLE when Redis cannot be reached', async () => {
      const down = new FeedSet('redis://127.0.0.1:1');
      try {
        const feed = down.feed();
        await rejectsWith(feed.start(), 'UNAVAILABLE', 'feed_unavailable');
        await rejectsWith(feed.publish('test', { n: '1' }), 'UNAVAILABLE', 'feed_unavailable');
      } finally {
        await down.close();
      }
    });
  });

  describe('through outages (a server of its own)', () => {
    let server: RunningRedis;
    let set: FeedSet;
    let raw: Redis;

    before(async () => {
      server = await startRedisServer();
    });
    after(async () => {
      await server.stop();
    });
    beforeEach(async () => {
      set = new FeedSet(server.url);
      raw = await rawRedis(server.url);
    });
    afterEach(async () => {
      await set.close();
      raw.disconnect();
    });

    /** The id of the one blocking reader connected now. */
    const readerId = (): Promise<string> =>
      eventually(async () => {
        const ids = await readerClientIds(raw);
        return ids.length === 1 ? ids[0] : undefined;
      });

    it('replays what was appended while its connection was down, without a resync', async () => {
      const { listener } = await set.reader();
      await append(raw, set.key, 1);
      await eventually(() => listener.entries.length === 1);
      const before = await readerId();

      assert.equal(await raw.call('CLIENT', 'KILL', 'ID', before), 1);
      // The reader waits at least 100 ms before reconnecting: these land while it is away.
      for (let n = 2; n <= 6; n++) await append(raw, set.key, n);

      await eventually(() => listener.entries.length >= 6);
      assert.deepEqual(listener.numbers(), ['1', '2', '3', '4', '5', '6']);
      assert.equal(listener.resyncs, 1, 'nothing was trimmed: a replay, not a resync');
      const after = await readerId();
      assert.notEqual(after, before, 'it read again on a new connection');
    });

    const gaps: {
      title: string;
      drop: (m: ChainableCommander, key: string) => ChainableCommander;
      survived: string[];
    }[] = [
      {
        title: 'trimmed past its position to nothing (XTRIM MAXLEN 0)',
        drop: (m, key) => m.xtrim(key, 'MAXLEN', 0),
        survived: [],
      },
      {
        title: 'trimmed past its position to one entry (XTRIM MAXLEN 1)',
        drop: (m, key) => m.xtrim(key, 'MAXLEN', 1),
        survived: ['3'],
      },
      { title: 'lost altogether (DEL)', drop: (m, key) => m.del(key), survived: [] },
    ];
    for (const gap of gaps) {
      it(`resyncs its listeners when, while it was away, the stream was ${gap.title}`, async () => {
        const { listener } = await set.reader();
        await append(raw, set.key, 1);
        await eventually(() => listener.entries.length === 1);
        const id = await readerId();

        // One step, so the reader cannot see 2 or 3 before they are dropped.
        const replies = await gap
          .drop(
            raw
              .multi()
              .call('CLIENT', 'KILL', 'ID', id)
              .xadd(set.key, '*', 'kind', 'test', 'n', '2')
              .xadd(set.key, '*', 'kind', 'test', 'n', '3'),
            set.key,
          )
          .exec();
        assert.deepEqual(
          replies?.map(([err]) => err),
          [null, null, null, null],
        );
        assert.equal(replies?.[0]?.[1], 1, 'the reader was disconnected');

        await eventually(() => listener.resyncs === 2);
        await append(raw, set.key, 4);
        await eventually(() => listener.numbers().includes('4'));
        // Whatever survived is still delivered, after the resync.
        assert.deepEqual(listener.numbers(), ['1', ...gap.survived, '4']);
        const resyncAt = listener.events.findIndex((e, i) => i > 0 && e.type === 'resync');
        assert.ok(resyncAt > 1, 'after entry 1');
        assert.deepEqual(
          listener.events.slice(resyncAt + 1).map((e) => (e.type === 'entry' ? e.entry.fields.n : e.type)),
          [...gap.survived, '4'],
        );
      });
    }

    it('goes stale while Redis is down, then fresh again, replaying what was appended meanwhile', async () => {
      const staleAfterMs = 600;
      const { feed, listener } = await set.reader({ blockMs: 100 });
      const freshness = new FeedFreshness(feed, staleAfterMs);
      const quarantines = new RedisQuarantineStore(set.client(), { prefix: set.prefix });
      const view = new QuarantineView(quarantines, freshness);
      await view.onResync();
      const writer = set.feed();
      await append(raw, set.key, 1);
      await eventually(() => listener.entries.length === 1);
      assert.equal(freshness.fresh(), true);
      view.check('spiffe://example.org/a');

      server.kill();
      raw.disconnect();
      const downAt = Date.now();
      await eventually(() => !freshness.fresh());
      assert.ok(Date.now() - downAt >= staleAfterMs - 150, 'not stale before the bound');
      throwsWith(() => view.check('spiffe://example.org/a'), 'UNAVAILABLE', 'invalidation_feed_stale');
      await rejectsWith(writer.publish('test', { n: 'lost' }), 'UNAVAILABLE', 'feed_unavailable');

      await server.restart();
      raw = await rawRedis(server.url);
      await append(raw, set.key, 2);
      await append(raw, set.key, 3);
      await eventually(() => listener.entries.length >= 3 && freshness.fresh());
      assert.deepEqual(listener.numbers(), ['1', '2', '3']);
      assert.equal(listener.resyncs, 1, 'the append-only file kept the stream: a replay, not a resync');
      view.check('spiffe://example.org/a');
    });
  });
});
