/**
 * The BudgetStore contract, run against the Redis store (a real redis-server, fresh key prefix per
 * test) and the in-process store: both must give the same answers. Time is injected (`now`), so
 * windows and expiries are crossed without waiting.
 */
import { strict as assert } from 'node:assert';
import type { BudgetCheck, BudgetStore, ScopedLimits } from '../../../src/budgets/types.js';
import { isBrokerError } from '../../../src/errors.js';
import { memoryBudgets, redisBudgets, type BudgetHarness, type MakeBudgetHarness } from './budget-harness.js';

const GROUP = 'group:ci-agents';
const AGENT = 'agent:spiffe://example.org/agents/ci/runner-1';
const TASK = 'task:0190a7c2-task';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const OK: BudgetCheck = { ok: true };

let seq = 0;
const id = (kind: string): string => `${kind}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;

async function rejectsInvalid(promise: Promise<unknown>, field: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.equal(err.field, field);
    return true;
  });
}

export function describeBudgetStoreContract(name: string, makeHarness: MakeBudgetHarness): void {
  describe(`BudgetStore contract: ${name}`, () => {
    let h: BudgetHarness;
    let store: BudgetStore;
    let t: number;

    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
      t = Date.now();
    });
    afterEach(async () => {
      await h.close();
    });

    /** Reserves a new lease living an hour from `at`. */
    const credential = (scopes: ScopedLimits[], at: number, leaseId = id('lease')): Promise<BudgetCheck> =>
      store.reserveCredential(scopes, leaseId, at + HOUR, at);

    describe('credentialsPerMinute', () => {
      it('allows `max` credentials in any rolling 60 s window', async () => {
        const scopes = [{ scope: AGENT, limits: { credentialsPerMinute: 3 } }];
        assert.deepEqual(await credential(scopes, t), OK);
        assert.deepEqual(await credential(scopes, t + 10_000), OK);
        assert.deepEqual(await credential(scopes, t + 20_000), OK);
        const over = { ok: false, scope: AGENT, limit: 'credentialsPerMinute', current: 3, max: 3 };
        assert.deepEqual(await credential(scopes, t + 30_000), over);
        assert.deepEqual(await credential(scopes, t + 59_999), over);
        // The first issuance leaves the window 60 s after it was made; a refusal recorded nothing.
        assert.deepEqual(await credential(scopes, t + MINUTE), OK);
        assert.deepEqual(await credential(scopes, t + MINUTE + 1), { ...over, current: 3 });
        assert.deepEqual(await credential(scopes, t + 70_000), OK);
        assert.deepEqual(await credential(scopes, t + 80_000), OK);
        assert.deepEqual(await credential(scopes, t + 80_001), over);
      });

      it('is not given back by releaseLease: a credential issued counts for its minute', async () => {
        const scopes = [{ scope: AGENT, limits: { credentialsPerMinute: 1 } }];
        const lease = id('lease');
        assert.deepEqual(await credential(scopes, t, lease), OK);
        await store.releaseLease([AGENT], lease);
        assert.equal((await credential(scopes, t + 1)).ok, false);
      });
    });

    describe('activeLeases', () => {
      it('counts unexpired, unreleased leases; releaseLease and expiry free a place', async () => {
        const scopes = [{ scope: AGENT, limits: { activeLeases: 2 } }];
        const [l1, l2] = [id('lease'), id('lease')];
        assert.deepEqual(await store.reserveCredential(scopes, l1, t + 10_000, t), OK);
        assert.deepEqual(await store.reserveCredential(scopes, l2, t + 20_000, t), OK);
        const over = { ok: false, scope: AGENT, limit: 'activeLeases', current: 2, max: 2 };
        assert.deepEqual(await credential(scopes, t + 1), over);

        await store.releaseLease([AGENT], l1);
        await store.releaseLease([AGENT], l1); // idempotent
        await store.releaseLease([AGENT], 'never-reserved');
        const l3 = id('lease');
        assert.deepEqual(await store.reserveCredential(scopes, l3, t + 30_000, t + 2), OK);
        assert.deepEqual(await credential(scopes, t + 3), over);
        // l2 expires at t + 20 s: from then on it no longer counts, released or not.
        assert.deepEqual(await credential(scopes, t + 19_999), over);
        assert.deepEqual(await store.reserveCredential(scopes, id('lease'), t + 40_000, t + 20_000), OK);
        assert.deepEqual(await credential(scopes, t + 20_001), over);
      });
    });

    describe('openTasks', () => {
      it('counts unexpired, unreleased tasks; releaseTask and expiry free a place', async () => {
        const scopes = [{ scope: AGENT, limits: { openTasks: 1 } }];
        const task = id('task');
        assert.deepEqual(await store.reserveTask(scopes, task, t + 10_000, t), OK);
        const over = { ok: false, scope: AGENT, limit: 'openTasks', current: 1, max: 1 };
        assert.deepEqual(await store.reserveTask(scopes, id('task'), t + HOUR, t + 1), over);
        await store.releaseTask([AGENT], task);
        await store.releaseTask([AGENT], task);
        const next = id('task');
        assert.deepEqual(await store.reserveTask(scopes, next, t + 20_000, t + 2), OK);
        assert.deepEqual(await store.reserveTask(scopes, id('task'), t + HOUR, t + 19_999), over);
        assert.deepEqual(await store.reserveTask(scopes, id('task'), t + HOUR, t + 20_000), OK);
      });

      it('keeps tasks and leases apart: one never counts against the other', async () => {
        const both = [{ scope: AGENT, limits: { openTasks: 1, activeLeases: 1, credentialsPerMinute: 1 } }];
        const lease = id('lease');
        assert.deepEqual(await store.reserveTask(both, lease, t + HOUR, t), OK);
        assert.deepEqual(await store.reserveCredential(both, lease, t + HOUR, t), OK);
        await store.releaseTask([AGENT], lease);
        assert.equal((await store.reserveCredential(both, id('lease'), t + HOUR, t + MINUTE)).ok, false);
        assert.deepEqual(await store.reserveTask(both, id('task'), t + HOUR, t), OK);
      });
    });

    describe('several scopes', () => {
      const scopes = (taskLeases: number): ScopedLimits[] => [
        { scope: GROUP, limits: { credentialsPerMinute: 5, activeLeases: 5 } },
        { scope: AGENT, limits: { activeLeases: 4 } },
        { scope: TASK, limits: { activeLeases: taskLeases } },
      ];

      it('records in every scope only when all pass: a refused reservation consumes nothing anywhere', async () => {
        assert.deepEqual(await credential(scopes(1), t), OK);
        // The task scope is full: refused, and neither the group's rate nor the agent's leases move.
        for (let i = 0; i < 10; i++) {
          assert.deepEqual(await credential(scopes(1), t + i), {
            ok: false,
            scope: TASK,
            limit: 'activeLeases',
            current: 1,
            max: 1,
          });
        }
        // Had they moved, the group (5 per minute) or the agent (4 leases) would refuse before 4 more.
        for (let i = 0; i < 3; i++) assert.deepEqual(await credential(scopes(10), t + 100 + i), OK);
        assert.deepEqual(await credential(scopes(10), t + 200), {
          ok: false,
          scope: AGENT,
          limit: 'activeLeases',
          current: 4,
          max: 4,
        });
      });

      it('reports the first violation, in scope order and credentialsPerMinute before activeLeases', async () => {
        const full: ScopedLimits[] = [
          { scope: GROUP, limits: { credentialsPerMinute: 1, activeLeases: 1 } },
          { scope: AGENT, limits: { credentialsPerMinute: 1 } },
        ];
        assert.deepEqual(await credential(full, t), OK);
        const firstGroup = { ok: false, scope: GROUP, limit: 'credentialsPerMinute', current: 1, max: 1 };
        assert.deepEqual(await credential(full, t + 1), firstGroup);
        assert.deepEqual(await credential([...full].reverse(), t + 1), {
          ok: false,
          scope: AGENT,
          limit: 'credentialsPerMinute',
          current: 1,
          max: 1,
        });
        // A minute on, only the lease is left: activeLeases is the one exceeded.
        assert.deepEqual(await credential(full, t + MINUTE), {
          ok: false,
          scope: GROUP,
          limit: 'activeLeases',
          current: 1,
          max: 1,
        });
      });

      it('releases from every scope named', async () => {
        const lease = id('lease');
        const s = [
          { scope: GROUP, limits: { activeLeases: 1 } },
          { scope: TASK, limits: { activeLeases: 1 } },
        ];
        assert.deepEqual(await credential(s, t, lease), OK);
        await store.releaseLease([TASK], lease);
        assert.equal((await credential(s, t + 1)).ok, false);
        await store.releaseLease([GROUP, TASK], lease);
        assert.deepEqual(await credential(s, t + 2), OK);
      });

      it('keeps scopes with colons and SPIFFE IDs apart', async () => {
        const a = [{ scope: 'agent:spiffe://example.org/a', limits: { activeLeases: 1 } }];
        const b = [{ scope: 'agent:spiffe://example.org/a:b', limits: { activeLeases: 1 } }];
        assert.deepEqual(await credential(a, t), OK);
        assert.deepEqual(await credential(b, t), OK);
        assert.equal((await credential(a, t)).ok, false);
      });
    });

    describe('limits', () => {
      it('refuses everything at a limit of 0, and allows everything with no limits', async () => {
        assert.deepEqual(await credential([{ scope: AGENT, limits: { activeLeases: 0 } }], t), {
          ok: false,
          scope: AGENT,
          limit: 'activeLeases',
          current: 0,
          max: 0,
        });
        assert.equal(
          (await store.reserveTask([{ scope: AGENT, limits: { openTasks: 0 } }], id('task'), t + 1, t)).ok,
          false,
        );
        for (let i = 0; i < 5; i++) assert.deepEqual(await credential([{ scope: AGENT, limits: {} }], t), OK);
        assert.deepEqual(await credential([], t), OK);
        assert.deepEqual(
          await store.reserveTask([{ scope: AGENT, limits: { activeLeases: 0 } }], id('task'), t + 1, t),
          OK,
        );
      });

      it('refuses malformed input with INVALID_ARGUMENT naming the field', async () => {
        await rejectsInvalid(
          credential([{ scope: AGENT, limits: { activeLeases: -1 } }], t),
          'scopes[0].limits.activeLeases',
        );
        await rejectsInvalid(
          credential([{ scope: AGENT, limits: { credentialsPerMinute: 1.5 } }], t),
          'scopes[0].limits.credentialsPerMinute',
        );
        await rejectsInvalid(credential([{ scope: '', limits: { activeLeases: 1 } }], t), 'scopes[0].scope');
        await rejectsInvalid(store.reserveCredential([], id('lease'), t, t), 'leaseExpiresAt');
        await rejectsInvalid(store.reserveCredential([], '', t + 1, t), 'leaseId');
        await rejectsInvalid(store.reserveTask([], id('task'), t + 1, Number.NaN), 'now');
        await rejectsInvalid(store.releaseTask([''], id('task')), 'scopes[0]');
      });
    });

    it('enforces limits across replicas sharing the store', async () => {
      const replica = await h.replica();
      const scopes = [{ scope: GROUP, limits: { activeLeases: 2 } }];
      const lease = id('lease');
      assert.deepEqual(await store.reserveCredential(scopes, lease, t + HOUR, t), OK);
      assert.deepEqual(await replica.reserveCredential(scopes, id('lease'), t + HOUR, t), OK);
      assert.equal((await store.reserveCredential(scopes, id('lease'), t + HOUR, t)).ok, false);
      assert.equal((await replica.reserveCredential(scopes, id('lease'), t + HOUR, t)).ok, false);
      await replica.releaseLease([GROUP], lease);
      assert.deepEqual(await store.reserveCredential(scopes, id('lease'), t + HOUR, t), OK);
    });

    it('lets exactly `max` of 50 concurrent reservations through', async () => {
      const replicas = [store, await h.replica(), await h.replica()];
      const scopes = [
        { scope: GROUP, limits: { credentialsPerMinute: 100, activeLeases: 10 } },
        { scope: AGENT, limits: { credentialsPerMinute: 100 } },
      ];
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          (replicas[i % replicas.length] as BudgetStore).reserveCredential(scopes, id('lease'), t + HOUR, t),
        ),
      );
      assert.equal(results.filter((r) => r.ok).length, 10);
      // The 40 refused recorded nothing: the agent's rate counter holds exactly the 10 that passed.
      const probe = [{ scope: AGENT, limits: { credentialsPerMinute: 11 } }];
      assert.deepEqual(await credential(probe, t + 1), OK);
      assert.equal((await credential(probe, t + 2)).ok, false);
    });
  });
}

describeBudgetStoreContract('MemoryBudgetStore', memoryBudgets);
describeBudgetStoreContract('RedisBudgetStore', redisBudgets);
