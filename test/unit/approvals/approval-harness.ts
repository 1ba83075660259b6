/**
 * Builds approval and break-glass stores for the contract tests: each harness is an empty store,
 * plus `replica()` for another handle on the same data as a second broker replica would have (its
 * own Redis connection, same prefix).
 */
import type { Redis } from 'ioredis';
import { MemoryApprovalStore } from '../../../src/approvals/memory-approval-store.js';
import { MemoryBreakGlassStore } from '../../../src/approvals/memory-break-glass-store.js';
import { RedisApprovalStore } from '../../../src/approvals/redis-approval-store.js';
import { RedisBreakGlassStore } from '../../../src/approvals/redis-break-glass-store.js';
import type {
  ApprovalRequest,
  ApprovalStore,
  BreakGlassGrant,
  BreakGlassStore,
} from '../../../src/approvals/types.js';
import { createRedisClient } from '../../../src/leases/redis-lease-store.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

export interface StoreOptions {
  retentionSeconds?: number;
}

export interface Harness<S> {
  store: S;
  replica(): Promise<S>;
  close(): Promise<void>;
}

export type MakeHarness<S> = (opts?: StoreOptions) => Promise<Harness<S>>;

function memoryHarness<S>(make: (opts: StoreOptions) => S): MakeHarness<S> {
  return async (opts = {}) => {
    const store = make(opts);
    return { store, replica: async () => store, close: async () => undefined };
  };
}

/** Stores on the shared server under a fresh prefix, each on its own client; close() quits them all. */
function redisHarness<S>(make: (redis: Redis, prefix: string, opts: StoreOptions) => S): MakeHarness<S> {
  return async (opts = {}) => {
    const server = await sharedRedis();
    const prefix = randomPrefix();
    const clients: Redis[] = [];
    const open = async (): Promise<S> => {
      const redis = createRedisClient(server.url);
      clients.push(redis);
      await redis.ping();
      return make(redis, prefix, opts);
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
}

export const memoryApprovals = memoryHarness<ApprovalStore>((opts) => new MemoryApprovalStore(opts));
export const redisApprovals = redisHarness<ApprovalStore>(
  (redis, prefix, opts) => new RedisApprovalStore(redis, { prefix, ...opts }),
);
export const memoryBreakGlass = memoryHarness<BreakGlassStore>((opts) => new MemoryBreakGlassStore(opts));
export const redisBreakGlass = redisHarness<BreakGlassStore>(
  (redis, prefix, opts) => new RedisBreakGlassStore(redis, { prefix, ...opts }),
);

const rand = (): string => Math.random().toString(36).slice(2, 10);

export const REQUESTER = 'spiffe://example.org/agent/deployer';
export const ALICE = 'spiffe://example.org/human/alice';
export const BOB = 'spiffe://example.org/human/bob';
export const CAROL = 'spiffe://example.org/human/carol';

export function makeRequest(now: number, overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: `apr-${rand()}`,
    digest: `digest-${rand()}`,
    requester: REQUESTER,
    taskId: `task-${rand()}`,
    role: 'token/deploy',
    environment: 'prod',
    ttlSeconds: 300,
    sensitivity: 'confidential',
    changeType: 'destructive',
    justification: 'roll back release 42',
    tool: 'kubectl',
    required: 1,
    policyIds: ['prod-destructive-needs-approval'],
    createdAt: now,
    expiresAt: now + 15 * 60_000,
    state: 'pending',
    approvals: [],
    ...overrides,
  };
}

export function makeGrant(now: number, overrides: Partial<BreakGlassGrant> = {}): BreakGlassGrant {
  return {
    id: `bg-${rand()}`,
    grantedBy: 'spiffe://example.org/human/oncall',
    agent: REQUESTER,
    roles: ['token/deploy', 'vault/db-admin'],
    reason: 'INC-1234: database down, restore from backup',
    createdAt: now,
    expiresAt: now + 30 * 60_000,
    uses: 0,
    reviewed: false,
    ...overrides,
  };
}
