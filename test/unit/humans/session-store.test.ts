import assert from 'node:assert/strict';
import { RedisSessionStore } from '../../../src/humans/redis-session-store.js';
import {
  MemorySessionStore,
  newToken,
  storeKey,
  type ConsoleSession,
  type SessionStore,
} from '../../../src/humans/session-store.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

const SESSION: ConsoleSession = {
  human: { sub: 'alice', email: 'alice@example.org', groups: ['security'], authTime: 1, acr: '' },
  csrf: 'csrf-token',
  createdAt: 1,
  expiresAt: 2,
};
const PENDING = { codeVerifier: 'v', nonce: 'n', returnTo: '/approvals', browserKey: 'b' };

function contract(name: string, make: () => Promise<{ store: SessionStore; close(): Promise<void> }>): void {
  describe(`${name} session store contract`, () => {
    let store: SessionStore;
    let close: () => Promise<void>;
    beforeEach(async () => ({ store, close } = await make()));
    afterEach(() => close());

    it('keeps a session under its id until deleted', async () => {
      const id = newToken();
      await store.putSession(id, SESSION, 60_000);
      assert.deepEqual(await store.getSession(id), SESSION);
      assert.equal(await store.getSession(newToken()), undefined);
      await store.deleteSession(id);
      assert.equal(await store.getSession(id), undefined);
    });

    it('hands a sign-in in flight out once', async () => {
      await store.putSignIn('state-1', PENDING, 60_000);
      assert.deepEqual(await store.takeSignIn('state-1'), PENDING);
      assert.equal(await store.takeSignIn('state-1'), undefined);
    });
  });
}

contract('memory', async () => ({ store: new MemorySessionStore(), close: async () => undefined }));

contract('Redis', async () => {
  const redis = createRedisClient((await sharedRedis()).url);
  return { store: new RedisSessionStore(redis, randomPrefix()), close: async () => redis.disconnect() };
});

describe('session stores: expiry and keys', () => {
  it('memory: a session is gone at its TTL', async () => {
    let now = 1000;
    const store = new MemorySessionStore(() => now);
    await store.putSession('id', SESSION, 500);
    now = 1499;
    assert.ok(await store.getSession('id'));
    now = 1500;
    assert.equal(await store.getSession('id'), undefined);
  });

  it('Redis: the key is the SHA-256 of the id, with the TTL set; the id itself is stored nowhere', async () => {
    const redis = createRedisClient((await sharedRedis()).url);
    try {
      const prefix = randomPrefix();
      const id = newToken();
      await new RedisSessionStore(redis, prefix).putSession(id, SESSION, 60_000);
      const keys = await redis.keys(`{${prefix}}:*`);
      assert.deepEqual(keys, [`{${prefix}}:console:session:${storeKey(id)}`]);
      const ttl = await redis.pttl(keys[0] as string);
      assert.ok(ttl > 0 && ttl <= 60_000);
      assert.ok(!(await redis.get(keys[0] as string))?.includes(id));
    } finally {
      redis.disconnect();
    }
  });
});
