/**
 * The in-process store stands in for Redis in the dev stack, so it must answer exactly as Redis
 * does: random sequences of operations run against both, step by step, must give equal results.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isBrokerError } from '../../../src/errors.js';
import type { LeaseFilter, LeaseStore } from '../../../src/leases/types.js';
import {
  makeLease,
  makeTask,
  memoryHarness,
  redisHarness,
  wallNow,
} from '../../support/lease-store-harness.js';

const AGENTS = ['spiffe://example.org/agent/a', 'spiffe://example.org/agent/b'];
const ENVS = ['staging', 'prod'];
const BACKENDS = ['token', 'vault'];
const LEASE_END = ['revoking', 'revoked', 'expired', 'revoke_failed'] as const;
const REVOKE_OUTCOMES = ['revoked', 'revoke_failed'] as const;
const TASK_END = ['ended', 'expired'] as const;

const pick = <T>(items: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...items);
const taskNo = fc.integer({ min: 0, max: 2 });
const leaseNo = fc.integer({ min: 0, max: 5 });
/** Times on a coarse grid, so a clock landing exactly on an expiresAt (the boundary) is common. */
const ticks = (max: number): fc.Arbitrary<number> => fc.integer({ min: 0, max }).map((n) => n * 500);

const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ weight, arbitrary });

/** Weighted towards writes, so sequences build up tasks and leases worth reading and ending. */
const step = fc.oneof(
  w(
    3,
    fc.record({
      op: fc.constant('createTask' as const),
      task: taskNo,
      agent: pick(AGENTS),
      env: pick(ENVS),
      ttl: ticks(10).map((t) => t + 500),
    }),
  ),
  w(
    5,
    fc.record({
      op: fc.constant('putLease' as const),
      lease: leaseNo,
      task: taskNo,
      backend: pick(BACKENDS),
      ttl: ticks(12),
    }),
  ),
  w(2, fc.record({ op: fc.constant('markLeaseEnded' as const), lease: leaseNo, state: pick(LEASE_END) })),
  w(
    2,
    fc.record({
      op: fc.constant('markRevokeOutcome' as const),
      lease: leaseNo,
      outcome: pick(REVOKE_OUTCOMES),
    }),
  ),
  w(1, fc.record({ op: fc.constant('endTask' as const), task: taskNo, state: pick(TASK_END) })),
  w(2, fc.record({ op: fc.constant('claimExpiredLeases' as const), limit: fc.integer({ min: 0, max: 3 }) })),
  w(1, fc.record({ op: fc.constant('claimExpiredTasks' as const), limit: fc.integer({ min: 0, max: 3 }) })),
  w(
    2,
    fc.record({
      op: fc.constant('listLeases' as const),
      agent: fc.option(pick(AGENTS), { nil: undefined }),
      task: fc.option(taskNo, { nil: undefined }),
      env: fc.option(pick(ENVS), { nil: undefined }),
      state: fc.option(pick(['active', ...LEASE_END] as const), { nil: undefined }),
    }),
  ),
  w(
    1,
    fc.record({
      op: fc.constant('listRevokedUnexpired' as const),
      backend: fc.option(pick(BACKENDS), { nil: undefined }),
    }),
  ),
  w(
    1,
    fc.record({
      op: fc.constant('listRevokedTokens' as const),
      skew: fc.integer({ min: 0, max: 3 }),
      limit: fc.integer({ min: 1, max: 4 }),
      fromSecond: fc.boolean(),
    }),
  ),
  w(1, fc.record({ op: fc.constant('countActiveTasks' as const), agent: pick(AGENTS) })),
  w(1, fc.record({ op: fc.constant('get' as const), lease: leaseNo, task: taskNo })),
);
type Step = { dt: number } & (typeof step extends fc.Arbitrary<infer S> ? S : never);
/** Every step first moves the clock forward by `dt`, so `now` never goes back (as in the broker). */
const steps = fc.array(
  fc.tuple(ticks(2), step).map(([dt, s]): Step => ({ dt, ...s })),
  { minLength: 10, maxLength: 60 },
);

async function apply(store: LeaseStore, s: Step, now: number, base: number): Promise<unknown> {
  const taskId = (n: number): string => `task-${n}`;
  switch (s.op) {
    case 'createTask':
      return store.createTask(
        makeTask(now, { id: taskId(s.task), agent: s.agent, environment: s.env, expiresAt: now + s.ttl }),
      );
    case 'putLease': {
      const task = makeTask(base, {
        id: taskId(s.task),
        agent: AGENTS[s.task % 2],
        environment: ENVS[s.task % 2],
      });
      const lease = makeLease(task, now, {
        id: `lease-${s.lease}`,
        backend: s.backend,
        role: `${s.backend}/r`,
        backendRef: `ref-${s.lease}`,
        expiresAt: now + s.ttl,
      });
      return store.putLease(lease, now);
    }
    case 'markLeaseEnded':
      return store.markLeaseEnded(`lease-${s.lease}`, s.state, 'why', now);
    case 'markRevokeOutcome':
      return store.markRevokeOutcome(`lease-${s.lease}`, s.outcome, 'outcome', now);
    case 'endTask':
      return store.endTask(taskId(s.task), s.state, 'why', now);
    case 'claimExpiredLeases':
      return store.claimExpiredLeases(now, s.limit);
    case 'claimExpiredTasks':
      return store.claimExpiredTasks(now, s.limit);
    case 'listLeases': {
      const filter: LeaseFilter = {};
      if (s.agent !== undefined) filter.agent = s.agent;
      if (s.task !== undefined) filter.taskId = taskId(s.task);
      if (s.env !== undefined) filter.environment = s.env;
      if (s.state !== undefined) filter.state = s.state;
      return store.listLeases(filter);
    }
    case 'listRevokedUnexpired':
      return store.listRevokedUnexpired(now, s.backend);
    case 'listRevokedTokens': {
      // The first page, or the page after its first entry (a cursor as /v1/revoked hands it out).
      const first = await store.listRevokedTokens(now - s.skew, { limit: s.limit });
      const after = first[0];
      if (!s.fromSecond || !after) return first;
      return [first, await store.listRevokedTokens(now - s.skew, { after, limit: s.limit })];
    }
    case 'countActiveTasks':
      return store.countActiveTasks(s.agent, now);
    case 'get':
      return [await store.getLease(`lease-${s.lease}`), await store.getTask(taskId(s.task))];
  }
}

async function outcome(run: () => Promise<unknown>): Promise<unknown> {
  try {
    return { value: await run() };
  } catch (err) {
    return { error: isBrokerError(err) ? `${err.code}/${err.reason}` : String(err) };
  }
}

describe('MemoryLeaseStore answers as RedisLeaseStore does (random operation sequences)', () => {
  it('gives equal results at every step', async function () {
    this.timeout(120_000);
    await fc.assert(
      fc.asyncProperty(steps, async (sequence) => {
        const [memory, redis] = await Promise.all([memoryHarness(), redisHarness()]);
        try {
          const base = wallNow();
          let now = base;
          for (const [i, s] of sequence.entries()) {
            now += s.dt;
            const expected = await outcome(() => apply(redis.store, s, now, base));
            const actual = await outcome(() => apply(memory.store, s, now, base));
            assert.deepEqual(actual, expected, `step ${i} (${s.op}) differs`);
          }
        } finally {
          await Promise.all([memory.close(), redis.close()]);
        }
      }),
      { numRuns: 100 },
    );
  });
});
