/**
 * The in-process budget store stands in for Redis in the dev stack, so it must answer exactly as
 * Redis does: random sequences of operations run against both, step by step, must give equal results.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import type { BudgetStore, ScopedLimits } from '../../../src/budgets/types.js';
import { isBrokerError } from '../../../src/errors.js';
import { memoryBudgets, redisBudgets } from './budget-harness.js';

/** Small limits, so sequences hit them often; one scope with no limits at all. */
const SCOPES: ScopedLimits[] = [
  { scope: 'group:ci', limits: { credentialsPerMinute: 3, activeLeases: 2, openTasks: 1 } },
  { scope: 'agent:spiffe://example.org/a', limits: { activeLeases: 3, openTasks: 2 } },
  { scope: 'task:t-1', limits: { credentialsPerMinute: 2 } },
  { scope: 'agent:spiffe://example.org/free', limits: {} },
];

/** Times on a 10 s grid, so the 60 s window and expiries are crossed, and often hit exactly. */
const tens = (min: number, max: number): fc.Arbitrary<number> =>
  fc.integer({ min, max }).map((n) => n * 10_000);
const scopes = fc.shuffledSubarray(SCOPES);
const member = fc.integer({ min: 0, max: 5 });

const step = fc.oneof(
  fc.record({ op: fc.constant('reserveCredential' as const), scopes, member, ttl: tens(1, 8) }),
  fc.record({ op: fc.constant('reserveTask' as const), scopes, member, ttl: tens(1, 8) }),
  fc.record({ op: fc.constant('releaseLease' as const), scopes, member }),
  fc.record({ op: fc.constant('releaseTask' as const), scopes, member }),
);
type Step = { dt: number } & (typeof step extends fc.Arbitrary<infer S> ? S : never);
const steps = fc.array(
  fc.tuple(tens(0, 3), step).map(([dt, s]): Step => ({ dt, ...s })),
  { minLength: 10, maxLength: 60 },
);

function apply(store: BudgetStore, s: Step, now: number): Promise<unknown> {
  const id = `m-${s.member}`;
  switch (s.op) {
    case 'reserveCredential':
      return store.reserveCredential(s.scopes, id, now + s.ttl, now);
    case 'reserveTask':
      return store.reserveTask(s.scopes, id, now + s.ttl, now);
    case 'releaseLease':
      return store.releaseLease(
        s.scopes.map((x) => x.scope),
        id,
      );
    case 'releaseTask':
      return store.releaseTask(
        s.scopes.map((x) => x.scope),
        id,
      );
  }
}

async function outcome(run: () => Promise<unknown>): Promise<unknown> {
  try {
    return { value: await run() };
  } catch (err) {
    return { error: isBrokerError(err) ? `${err.code}/${err.reason}` : String(err) };
  }
}

describe('MemoryBudgetStore answers as RedisBudgetStore does (random operation sequences)', () => {
  it('gives equal results at every step', async function () {
    this.timeout(120_000);
    await fc.assert(
      fc.asyncProperty(steps, async (sequence) => {
        const [memory, redis] = await Promise.all([memoryBudgets(), redisBudgets()]);
        try {
          let now = Date.now();
          for (const [i, s] of sequence.entries()) {
            now += s.dt;
            const expected = await outcome(() => apply(redis.store, s, now));
            const actual = await outcome(() => apply(memory.store, s, now));
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
