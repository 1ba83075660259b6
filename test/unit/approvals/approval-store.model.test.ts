/**
 * The in-process approval store stands in for Redis in the dev stack, so it must answer exactly as
 * Redis does: random sequences of operations run against both, step by step, must give equal results.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import type { ApprovalState, ApprovalStore } from '../../../src/approvals/types.js';
import { isBrokerError } from '../../../src/errors.js';
import {
  ALICE,
  BOB,
  CAROL,
  makeRequest,
  memoryApprovals,
  redisApprovals,
  REQUESTER,
} from './approval-harness.js';

const DECIDERS = [REQUESTER, ALICE, BOB, CAROL];
const STATES: ApprovalState[] = ['pending', 'approved', 'denied', 'consumed', 'expired'];
const OTHER = 'spiffe://example.org/agent/other';

const pick = <T>(items: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...items);
const requestNo = fc.integer({ min: 0, max: 3 });
const digestNo = fc.integer({ min: 0, max: 1 });
/** Times on a coarse grid, so a clock landing exactly on an expiresAt (the boundary) is common. */
const ticks = (min: number, max: number): fc.Arbitrary<number> =>
  fc.integer({ min, max }).map((n) => n * 500);

const step = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('create' as const),
      request: requestNo,
      digest: digestNo,
      required: fc.integer({ min: 1, max: 3 }),
      ttl: ticks(1, 8),
      requester: pick([REQUESTER, OTHER]),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('decide' as const),
      request: requestNo,
      approver: pick(DECIDERS),
      approve: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('consume' as const), request: requestNo, digest: digestNo }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('get' as const), request: requestNo }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('find' as const), digest: digestNo }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('count' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('list' as const),
      state: fc.option(pick(STATES), { nil: undefined }),
      requester: fc.option(pick([REQUESTER, OTHER]), { nil: undefined }),
    }),
  },
);
type Step = { dt: number } & (typeof step extends fc.Arbitrary<infer S> ? S : never);
const steps = fc.array(
  fc.tuple(ticks(0, 2), step).map(([dt, s]): Step => ({ dt, ...s })),
  { minLength: 10, maxLength: 60 },
);

function apply(store: ApprovalStore, s: Step, now: number): Promise<unknown> {
  const id = (n: number): string => `apr-${n}`;
  const digest = (n: number): string => `digest-${n}`;
  switch (s.op) {
    case 'create':
      return store.create(
        makeRequest(now, {
          id: id(s.request),
          taskId: `task-${s.request}`,
          digest: digest(s.digest),
          required: s.required,
          requester: s.requester,
          expiresAt: now + s.ttl,
        }),
      );
    case 'decide':
      return store.decide(id(s.request), { approver: s.approver, approve: s.approve, reason: 'r', at: now });
    case 'consume':
      return store.consume(id(s.request), digest(s.digest), now);
    case 'get':
      return store.get(id(s.request), now);
    case 'find':
      return store.findOpenByDigest(digest(s.digest), now);
    case 'count':
      return store.countPending(now);
    case 'list': {
      const filter: { state?: ApprovalState; requester?: string } = {};
      if (s.state !== undefined) filter.state = s.state;
      if (s.requester !== undefined) filter.requester = s.requester;
      return store.list(filter, now);
    }
  }
}

async function outcome(run: () => Promise<unknown>): Promise<unknown> {
  try {
    return { value: await run() };
  } catch (err) {
    return { error: isBrokerError(err) ? `${err.code}/${err.reason}` : String(err) };
  }
}

describe('MemoryApprovalStore answers as RedisApprovalStore does (random operation sequences)', () => {
  it('gives equal results at every step', async function () {
    this.timeout(120_000);
    await fc.assert(
      fc.asyncProperty(steps, async (sequence) => {
        const [memory, redis] = await Promise.all([memoryApprovals(), redisApprovals()]);
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
