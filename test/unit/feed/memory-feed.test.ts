/**
 * The in-process invalidation feed (dev stack without Redis), and FeedFreshness, the bound every
 * replica holds its feed to.
 */
import { strict as assert } from 'node:assert';
import { MemoryInvalidationFeed } from '../../../src/feed/memory-feed.js';
import { FeedFreshness } from '../../../src/feed/types.js';
import { RecordingListener } from './feed-harness.js';

describe('FeedFreshness', () => {
  let confirmedAt: number;
  let clock: number;
  const freshness = (staleAfterMs: number): FeedFreshness =>
    new FeedFreshness({ lastConfirmedAt: () => confirmedAt }, staleAfterMs, () => clock);

  beforeEach(() => {
    confirmedAt = 0;
    clock = 1_000_000;
  });

  it('is stale before the feed was ever confirmed', () => {
    const f = freshness(1000);
    assert.equal(f.lagMs(), Number.POSITIVE_INFINITY);
    assert.equal(f.fresh(), false);
  });

  it('is fresh up to the bound after the last confirmation, and stale past it', () => {
    const f = freshness(1000);
    confirmedAt = clock;
    assert.equal(f.lagMs(), 0);
    assert.equal(f.fresh(), true);
    clock += 1000;
    assert.equal(f.lagMs(), 1000);
    assert.equal(f.fresh(), true, 'exactly at the bound');
    clock += 1;
    assert.equal(f.fresh(), false);
    confirmedAt = clock - 10;
    assert.equal(f.fresh(), true, 'fresh again once a read confirms it');
  });

  it('never reports a negative lag when the confirmation is ahead of the clock', () => {
    const f = freshness(1000);
    confirmedAt = clock + 500;
    assert.equal(f.lagMs(), 0);
    assert.equal(f.fresh(), true);
  });
});

describe('MemoryInvalidationFeed', () => {
  it('resyncs every listener on start, then delivers entries in order; nothing from before start', async () => {
    const feed = new MemoryInvalidationFeed();
    const first = new RecordingListener();
    const second = new RecordingListener();
    feed.listen(first);
    feed.listen(second);
    await feed.publish('test', { n: '0' });
    assert.deepEqual(first.events, [], 'not started: nothing delivered');

    await feed.start();
    const ids = [
      await feed.publish('test', { n: '1' }),
      feed.append({ kind: 'quarantine', op: 'set', pattern: 'spiffe://example.org/a', at: '5' }),
      await feed.publish('test', { n: '3' }),
    ];
    for (const l of [first, second]) {
      assert.equal(l.events[0]?.type, 'resync');
      assert.equal(l.resyncs, 1);
      assert.deepEqual(l.entries, [
        { id: ids[0], kind: 'test', fields: { n: '1' } },
        { id: ids[1], kind: 'quarantine', fields: { op: 'set', pattern: 'spiffe://example.org/a', at: '5' } },
        { id: ids[2], kind: 'test', fields: { n: '3' } },
      ]);
    }
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
  });

  it('is confirmed from start to close, as of now; stale outside; a closed feed delivers nothing', async () => {
    let clock = 5000;
    const feed = new MemoryInvalidationFeed(() => clock);
    const listener = new RecordingListener();
    feed.listen(listener);
    const freshness = new FeedFreshness(feed, 100, () => clock);
    assert.equal(feed.lastConfirmedAt(), 0, 'never confirmed before start: its listeners loaded nothing');
    assert.equal(freshness.fresh(), false);
    await feed.start();
    assert.equal(feed.lastConfirmedAt(), 5000);
    clock += 10_000;
    assert.equal(freshness.fresh(), true, 'no other replica to miss');
    await feed.close();
    assert.equal(feed.lastConfirmedAt(), 0);
    assert.equal(freshness.fresh(), false);
    await feed.publish('test', { n: '1' });
    assert.deepEqual(listener.entries, []);
  });

  it('keeps delivering to the others when a listener fails', async () => {
    const feed = new MemoryInvalidationFeed();
    const good = new RecordingListener();
    feed.listen({ onEntry: async () => Promise.reject(new Error('boom')), onResync: async () => undefined });
    feed.listen(good);
    await feed.start();
    await feed.publish('test', { n: '1' });
    await feed.publish('test', { n: '2' });
    assert.deepEqual(good.numbers(), ['1', '2']);
  });
});
