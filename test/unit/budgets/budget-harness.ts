/**
 * Builds budget stores for the contract tests: an empty store, plus `replica()` for another store
 * on the same data as a second broker replica would have (its own Redis client, same prefix).
 */
import type { Redis } from 'ioredis';
import { MemoryBudgetStore } from '../../../src/budgets/memory-budget-store.js';
import { RedisBudgetStore } from '../../../src/budgets/redis-budget-store.js';
import type { BudgetStore } from '../../../src/budgets/types.js';
import { createRedisClient } from '../../../src/leases/redis-lease-store.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

export interface BudgetHarness {
  store: BudgetStore;
  replica(): Promise<BudgetStore>;
  close(): Promise<void>;
}

export type MakeBudgetHarness = () => Promise<BudgetHarness>;

export const memoryBudgets: MakeBudgetHarness = async () => {
  const store = new MemoryBudgetStore();
  return { store, replica: async () => store, close: async () => undefined };
};

/** Stores on the shared server under a fresh prefix, each on its own client; close() quits them all. */
export const redisBudgets: MakeBudgetHarness = async () => {
  const server = await sharedRedis();
  const prefix = randomPrefix();
  const clients: Redis[] = [];
  const open = async (): Promise<BudgetStore> => {
    const redis = createRedisClient(server.url);
    clients.push(redis);
    await redis.ping();
    return new RedisBudgetStore(redis, { prefix });
  };
  const store = await open();
  return {
    store,
    replica: open,
    close: async () => {
      await Promise.all(clients.map((c) => c.quit()));
    },
  };
};
