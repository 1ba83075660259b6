/**
 * Builds lease stores for tests: each harness is an empty store, plus `replica()` for another
 * handle on the same data as a second broker replica would have (its own Redis connection).
 */
import { Redis } from 'ioredis';
import { MemoryLeaseStore } from '../../src/leases/memory-lease-store.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import type { Lease, LeaseStore, Task } from '../../src/leases/types.js';
import { randomPrefix, sharedRedis } from './redis-server.js';

export interface StoreOptions {
  retentionSeconds?: number;
}

export interface StoreHarness {
  store: LeaseStore;
  replica(): Promise<LeaseStore>;
  close(): Promise<void>;
}

export type MakeHarness = (opts?: StoreOptions) => Promise<StoreHarness>;

export const memoryHarness: MakeHarness = async (opts = {}) => {
  const store = new MemoryLeaseStore(opts);
  return { store, replica: async () => store, close: () => store.close() };
};

/** A Redis store on the shared server under a fresh prefix; close() quits every client it made. */
export const redisHarness: MakeHarness = async (opts = {}) => {
  const server = await sharedRedis();
  const prefix = randomPrefix();
  const stores: RedisLeaseStore[] = [];
  const open = async (): Promise<RedisLeaseStore> => {
    const store = new RedisLeaseStore(createRedisClient(server.url), { prefix, ...opts });
    stores.push(store);
    await store.ping();
    return store;
  };
  const store = await open();
  return {
    store,
    replica: open,
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
};

/** A plain client for looking at keys behind the store's back. */
export async function rawRedis(url: string): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  return redis;
}

export function makeTask(now: number, overrides: Partial<Task> = {}): Task {
  return {
    id: `task-${Math.random().toString(36).slice(2, 10)}`,
    agent: 'spiffe://example.org/agent/a',
    environment: 'staging',
    intent: 'rotate the staging database password',
    labels: { ticket: 'OPS-1' },
    createdAt: now,
    expiresAt: now + 60 * 60_000,
    state: 'active',
    ...overrides,
  };
}

export function makeLease(task: Task, now: number, overrides: Partial<Lease> = {}): Lease {
  return {
    id: `lease-${Math.random().toString(36).slice(2, 10)}`,
    agent: task.agent,
    taskId: task.id,
    environment: task.environment,
    role: 'token/reader',
    backend: 'token',
    backendRef: `jti-${Math.random().toString(36).slice(2, 10)}`,
    issuedAt: now,
    expiresAt: now + 10 * 60_000,
    state: 'active',
    ...overrides,
  };
}

/** Epoch ms now, so the stores' retention (wall clock) keeps what the tests write. */
export function wallNow(): number {
  return Date.now();
}

/** Every key matching `match` on one server (SCAN, so it never blocks the server). */
export async function scanKeys(redis: Redis, match: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}
