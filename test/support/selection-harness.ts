/**
 * Lease stores wired as main.ts wires them: with the revocation queue their bulk revocations and
 * orphan claims write jobs to, and the quarantines put-lease checks (in Redis, found through the
 * shared key prefix). Used by the selection and two-phase contract tests.
 */
import { MemoryLeaseStore } from '../../src/leases/memory-lease-store.js';
import { MemoryRevocationQueue } from '../../src/leases/memory-revocation-queue.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../src/leases/redis-revocation-queue.js';
import type { RevocationQueue } from '../../src/leases/revocation-queue.js';
import type { LeaseStore } from '../../src/leases/types.js';
import { MemoryQuarantineStore } from '../../src/quarantine/memory-quarantine-store.js';
import { RedisQuarantineStore } from '../../src/quarantine/redis-quarantine-store.js';
import type { QuarantineStore } from '../../src/quarantine/types.js';
import { randomPrefix, sharedRedis } from './redis-server.js';

export interface SelectionHarness {
  store: LeaseStore;
  /** The queue revokeSelected writes its jobs to. */
  queue: RevocationQueue;
  /** The quarantines put-lease checks. */
  quarantines: QuarantineStore;
  close(): Promise<void>;
}

export type MakeSelectionHarness = () => Promise<SelectionHarness>;

export const memorySelection: MakeSelectionHarness = async () => {
  const queue = new MemoryRevocationQueue();
  const quarantines = new MemoryQuarantineStore();
  const store = new MemoryLeaseStore({
    revocations: queue,
    quarantined: (agent, now) => quarantines.matchSync(agent, now) !== undefined,
  });
  return {
    store,
    queue,
    quarantines,
    close: async () => {
      await store.close();
      await queue.close();
    },
  };
};

export const redisSelection: MakeSelectionHarness = async () => {
  const server = await sharedRedis();
  const prefix = randomPrefix();
  const store = new RedisLeaseStore(createRedisClient(server.url), { prefix });
  // The queue and the quarantine store find the lease store's keys through the prefix alone.
  const side = createRedisClient(server.url);
  const queue = new RedisRevocationQueue(side, { prefix });
  const quarantines = new RedisQuarantineStore(side, { prefix });
  await Promise.all([store.ping(), quarantines.ping()]);
  return {
    store,
    queue,
    quarantines,
    close: async () => {
      await store.close();
      await side.quit();
    },
  };
};
