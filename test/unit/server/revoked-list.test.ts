import assert from 'node:assert/strict';
import type { RevokedToken } from '../../../src/leases/types.js';
import { RevokedList, RevokedQueryError, type RevokedListOptions } from '../../../src/server/revoked-list.js';

/** A store whose reads the test releases by hand, counting them. */
class GatedStore {
  readonly calls: Array<{ since: number; after?: RevokedToken; limit: number }> = [];
  private waiting: Array<() => void> = [];
  constructor(private readonly tokens: RevokedToken[]) {}
  listRevokedTokens(since: number, page: { after?: RevokedToken; limit: number }): Promise<RevokedToken[]> {
    this.calls.push({ since, ...page });
    const i = page.after ? this.tokens.findIndex((t) => t.jti === page.after?.jti) + 1 : 0;
    const result = this.tokens.slice(i, i + page.limit);
    return new Promise((resolve) => this.waiting.push(() => resolve(result)));
  }
  release(): void {
    for (const go of this.waiting.splice(0)) go();
  }
}

const TOKENS: RevokedToken[] = [
  { jti: 'a', expiresAt: 1_700_000_100_000 },
  { jti: 'b', expiresAt: 1_700_000_200_000 },
  { jti: 'c', expiresAt: 1_700_000_200_000 },
];

describe('RevokedList (/v1/revoked)', () => {
  let clock: number;
  let store: GatedStore;
  const list = (opts: Partial<RevokedListOptions> = {}): RevokedList =>
    new RevokedList({
      store,
      clockSkewMs: 60_000,
      cacheMs: 1000,
      defaultPageSize: 2,
      maxPageSize: 10,
      now: () => clock,
      ...opts,
    });
  const q = (query = ''): URLSearchParams => new URLSearchParams(query);
  beforeEach(() => {
    clock = 1_700_000_000_000;
    store = new GatedStore(TOKENS);
  });

  it('concurrent callers of one page share one store read, and the page is served from memory for cacheMs', async () => {
    const l = list();
    const pages = [l.page(q()), l.page(q('limit=2')), l.page(q('limit=3'))];
    store.release();
    const [first, same, other] = await Promise.all(pages);
    assert.equal(
      store.calls.length,
      2,
      'one read for the default page (limit=2 is the same), one for limit=3',
    );
    assert.equal(same, first);
    assert.equal(other?.revoked.length, 3);
    clock += 999;
    await l.page(q());
    assert.equal(store.calls.length, 2, 'still cached');
    clock += 1;
    const again = l.page(q());
    store.release();
    await again;
    assert.equal(store.calls.length, 3, 'read again once cacheMs passed');
  });

  it('lists until exp plus the verifiers clock skew, in seconds, with a cursor to the next page', async () => {
    const l = list();
    const first = l.page(q());
    store.release();
    const body = await first;
    assert.equal(store.calls[0]?.since, clock - 60_000);
    assert.deepEqual(body, {
      generated_at: new Date(clock).toISOString(),
      revoked: [
        { jti: 'a', exp: 1_700_000_100 },
        { jti: 'b', exp: 1_700_000_200 },
      ],
      next_cursor: body.next_cursor,
    });
    assert.equal(typeof body.next_cursor, 'string');
    const second = l.page(q(`cursor=${body.next_cursor}`));
    store.release();
    const next = await second;
    assert.deepEqual(store.calls[1]?.after, TOKENS[1]);
    assert.deepEqual(next.revoked, [{ jti: 'c', exp: 1_700_000_200 }]);
    assert.equal(next.next_cursor, null);
  });

  it('a failed read is not cached', async () => {
    let fail = true;
    const l = list({
      store: {
        listRevokedTokens: () => (fail ? Promise.reject(new Error('redis down')) : Promise.resolve([])),
      },
    });
    await assert.rejects(l.page(q()), /redis down/);
    fail = false;
    assert.deepEqual((await l.page(q())).revoked, []);
  });

  it('refuses a bad limit or a cursor it did not hand out, naming the parameter', () => {
    const l = list();
    for (const [query, param] of [
      ['limit=0', 'limit'],
      ['limit=11', 'limit'],
      ['limit=2.5', 'limit'],
      ['limit=-1', 'limit'],
      ['cursor=***', 'cursor'],
      [`cursor=${Buffer.from('no-dot').toString('base64url')}`, 'cursor'],
      [`cursor=${Buffer.from('12.a b').toString('base64url')}`, 'cursor'],
    ] as const) {
      assert.throws(
        () => l.page(q(query)),
        (err: unknown) => err instanceof RevokedQueryError && err.param === param,
        query,
      );
    }
    assert.equal(store.calls.length, 0);
  });
});
