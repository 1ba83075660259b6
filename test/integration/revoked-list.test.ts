/**
 * GET /v1/revoked against a real broker and Redis: paged from the token deny list, and it never
 * reads a lease (its cost used to grow with every revoked lease, on every unauthenticated call).
 */
import { strict as assert } from 'node:assert';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { DEMO_AGENT, startHarness, type Harness } from '../support/broker-harness.js';
import { scanKeys } from '../support/lease-store-harness.js';
import { sharedRedis } from '../support/redis-server.js';

interface RevokedBody {
  generated_at: string;
  revoked: Array<{ jti: string; exp: number }>;
  next_cursor: string | null;
}

describe('integration: GET /v1/revoked', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  let redis: Redis;
  const issued: Array<{ jti: string; exp: number }> = [];

  /** Every page, `limit` at a time, following next_cursor. */
  async function allPages(limit: number): Promise<RevokedBody[]> {
    const pages: RevokedBody[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const query: string = `?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await h.httpJson(`/v1/revoked${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const body = res.body as RevokedBody;
      pages.push(body);
      cursor = body.next_cursor;
    }
    return pages;
  }

  before(async () => {
    h = await startHarness();
    demo = await h.client('demo');
    redis = new Redis((await sharedRedis()).url);
    const task = await demo.beginTask({ environment: 'dev' });
    for (let i = 0; i < 12; i++) {
      const res = await demo.issueCredential({
        task_id: task.task_id,
        role: 'token/demo',
        ttl_seconds: 60 + i,
      });
      const claims = decodeJwt(res.credential?.token ?? '');
      // RFC 9068's client_id: the agent the token was issued to.
      assert.equal(claims.client_id, DEMO_AGENT);
      issued.push({ jti: res.lease_id, exp: claims.exp as number });
    }
    await demo.endTask({ task_id: task.task_id, reason: 'done' });
  });
  after(async () => {
    redis?.disconnect();
    await h?.close();
  });

  it('pages the revoked jtis by expiry, each once, with exp in seconds', async () => {
    const pages = await allPages(5);
    assert.deepEqual(
      pages.map((p) => p.revoked.length),
      [5, 5, 2],
    );
    const want = [...issued].sort((a, b) => a.exp - b.exp || (a.jti < b.jti ? -1 : 1));
    assert.deepEqual(
      pages.flatMap((p) => p.revoked),
      want,
    );
    assert.equal(pages.at(-1)?.next_cursor, null);
  });

  it('never reads a lease: the list stands with every lease record gone', async () => {
    const leaseKeys = await scanKeys(redis, `{${h.redisPrefix}}:lease:*`);
    assert.ok(leaseKeys.length >= issued.length);
    await redis.del(...leaseKeys);
    const jtis = (await allPages(100)).flatMap((p) => p.revoked.map((r) => r.jti));
    assert.deepEqual(jtis.sort(), issued.map((t) => t.jti).sort());
  });

  it('answers 400 naming the parameter for a bad limit or cursor', async () => {
    for (const [query, param] of [
      ['limit=0', 'limit'],
      ['limit=100000', 'limit'],
      ['cursor=not-a-cursor', 'cursor'],
    ] as const) {
      const res = await h.httpJson(`/v1/revoked?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal((res.body as { param: string }).param, param);
    }
  });
});
