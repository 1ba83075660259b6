/**
 * The LeaseStore contract, run against every store: the Redis store (a real redis-server, fresh
 * key prefix per test) and the in-process store must give the same answers.
 */
import { strict as assert } from 'node:assert';
import { isBrokerError } from '../../../src/errors.js';
import type { Lease, LeaseStore, RevokedToken, Task } from '../../../src/leases/types.js';
import {
  makeLease,
  makeTask,
  memoryHarness,
  redisHarness,
  wallNow,
  type MakeHarness,
  type StoreHarness,
} from '../../support/lease-store-harness.js';

const AGENT_A = 'spiffe://example.org/agent/a';
const AGENT_B = 'spiffe://example.org/agent/b';

async function rejectsWith(promise: Promise<unknown>, code: string, reason?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (reason !== undefined) assert.equal(err.reason, reason);
    return true;
  });
}

const ids = (records: { id: string }[]): string[] => records.map((r) => r.id).sort();

export function describeLeaseStoreContract(name: string, makeHarness: MakeHarness): void {
  describe(`LeaseStore contract: ${name}`, () => {
    let h: StoreHarness;
    let store: LeaseStore;
    let now: number;

    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
      now = wallNow();
    });
    afterEach(async () => {
      await h.close();
    });

    async function activeTask(overrides: Partial<Task> = {}): Promise<Task> {
      const task = makeTask(now, overrides);
      await store.createTask(task);
      return task;
    }

    async function activeLease(task: Task, overrides: Partial<Lease> = {}): Promise<Lease> {
      const lease = makeLease(task, now, overrides);
      assert.equal(await store.putLease(lease, now), 'ok');
      return lease;
    }

    describe('tasks', () => {
      it('stores a task and reads it back unchanged', async () => {
        const task = await activeTask({ labels: { ticket: 'OPS-7', team: 'db' } });
        assert.deepEqual(await store.getTask(task.id), task);
        assert.equal(await store.getTask('no-such-task'), undefined);
      });

      it('tallies the leases of a task, every state counted, roles distinct and sorted', async () => {
        const task = await activeTask();
        assert.deepEqual(await store.taskLeaseSummary(task.id), { count: 0, roles: [], version: 0 });
        const first = await activeLease(task, { role: 'vault/db' });
        await activeLease(task, { role: 'token/demo' });
        await activeLease(task, { role: 'vault/db' });
        await store.markLeaseEnded(first.id, 'revoked', 'test', now + 1);
        assert.deepEqual(await store.taskLeaseSummary(task.id), {
          count: 3,
          roles: ['token/demo', 'vault/db'],
          version: 3,
        });
        const other = await activeTask();
        assert.deepEqual(await store.taskLeaseSummary(other.id), { count: 0, roles: [], version: 0 });
        assert.equal(await store.taskLeaseSummary('no-such-task'), undefined);
      });

      it('reads a task with its summary in one call, as getTask and taskLeaseSummary give them', async () => {
        const task = await activeTask({ labels: { ticket: 'OPS-7' } });
        await activeLease(task, { role: 'vault/db' });
        assert.deepEqual(await store.getTaskWithSummary(task.id), {
          task: await store.getTask(task.id),
          summary: await store.taskLeaseSummary(task.id),
        });
        assert.equal(await store.getTaskWithSummary('no-such-task'), undefined);
      });

      it('refuses a second task with the same id, keeping the first', async () => {
        const task = await activeTask();
        await rejectsWith(
          store.createTask({ ...task, intent: 'other' }),
          'FAILED_PRECONDITION',
          'task_exists',
        );
        assert.equal((await store.getTask(task.id))?.intent, task.intent);
      });

      it('refuses a new task that is not active or has a non-integer time', async () => {
        await rejectsWith(store.createTask(makeTask(now, { state: 'ended' })), 'INVALID_ARGUMENT');
        await rejectsWith(store.createTask(makeTask(now, { expiresAt: now + 0.5 })), 'INVALID_ARGUMENT');
      });

      it('ends an active task once, recording state, reason and time', async () => {
        const task = await activeTask();
        const ended = await store.endTask(task.id, 'ended', 'agent finished', now + 5);
        assert.deepEqual(ended, { ...task, state: 'ended', endReason: 'agent finished', endedAt: now + 5 });
        assert.deepEqual(await store.getTask(task.id), ended);
        assert.equal(await store.endTask(task.id, 'expired', 'again', now + 6), undefined);
        assert.equal(await store.endTask('no-such-task', 'ended', 'x', now), undefined);
      });

      it('hands a task to exactly one of 20 concurrent endTask callers', async () => {
        const task = await activeTask();
        const replicas = await Promise.all([1, 2, 3].map(() => h.replica()));
        const all = [store, ...replicas];
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (all[i % all.length] as LeaseStore).endTask(
              task.id,
              i % 2 ? 'ended' : 'expired',
              `caller-${i}`,
              now + i,
            ),
          ),
        );
        const winners = results.filter((r) => r !== undefined);
        assert.equal(winners.length, 1);
        assert.deepEqual(await store.getTask(task.id), winners[0]);
      });

      it('counts an agent’s active, unexpired tasks', async () => {
        const a1 = await activeTask({ agent: AGENT_A });
        await activeTask({ agent: AGENT_A, expiresAt: now + 1000 });
        const a3 = await activeTask({ agent: AGENT_A });
        await activeTask({ agent: AGENT_B, expiresAt: now + 2 * 60 * 60_000 });
        assert.equal(await store.countActiveTasks(AGENT_A, now), 3);
        // A task past its expiresAt no longer counts, even before a reaper claims it.
        assert.equal(await store.countActiveTasks(AGENT_A, now + 1000), 2);
        await store.endTask(a1.id, 'ended', 'done', now);
        assert.equal(await store.countActiveTasks(AGENT_A, now), 2);
        await store.claimExpiredTasks(a3.expiresAt, 10);
        assert.equal(await store.countActiveTasks(AGENT_A, now), 0);
        assert.equal(await store.countActiveTasks(AGENT_B, now), 1);
        assert.equal(await store.countActiveTasks('spiffe://example.org/agent/none', now), 0);
      });
    });

    describe('putLease', () => {
      it('writes an active lease of an active task', async () => {
        const task = await activeTask();
        const lease = await activeLease(task);
        assert.deepEqual(await store.getLease(lease.id), lease);
        assert.equal(await store.getLease('no-such-lease'), undefined);
      });

      it('answers task_not_found for an unknown task', async () => {
        const lease = makeLease(makeTask(now), now);
        assert.equal(await store.putLease(lease, now), 'task_not_found');
        assert.equal(await store.getLease(lease.id), undefined);
      });

      it('answers task_not_active once the task ended', async () => {
        const task = await activeTask();
        await store.endTask(task.id, 'ended', 'done', now);
        const lease = makeLease(task, now);
        assert.equal(await store.putLease(lease, now), 'task_not_active');
        assert.equal(await store.getLease(lease.id), undefined);
      });

      it('answers task_expired from the task’s expiresAt on, even before a reaper ran', async () => {
        const task = await activeTask({ expiresAt: now + 1000 });
        const lease = makeLease(task, now, { expiresAt: task.expiresAt });
        assert.equal(await store.putLease(lease, now + 1000), 'task_expired');
        assert.equal(await store.putLease(lease, now + 999), 'ok');
      });

      it('answers lease_exceeds_task for a lease outliving its task', async () => {
        const task = await activeTask();
        const lease = makeLease(task, now, { expiresAt: task.expiresAt + 1 });
        assert.equal(await store.putLease(lease, now), 'lease_exceeds_task');
        assert.equal(await store.getLease(lease.id), undefined);
        assert.equal(await store.putLease({ ...lease, expiresAt: task.expiresAt }, now), 'ok');
      });

      it('refuses to overwrite an existing lease, so a revoked one cannot come back', async () => {
        const task = await activeTask();
        const lease = await activeLease(task);
        await store.markLeaseEnded(lease.id, 'revoked', 'incident', now + 1);
        await rejectsWith(store.putLease(lease, now + 2), 'FAILED_PRECONDITION', 'lease_exists');
        assert.equal((await store.getLease(lease.id))?.state, 'revoked');
      });

      it('refuses a lease that is not active', async () => {
        const task = await activeTask();
        await rejectsWith(
          store.putLease(makeLease(task, now, { state: 'revoked' }), now),
          'INVALID_ARGUMENT',
        );
      });
    });

    describe('listLeases', () => {
      let a1: Lease, a2: Lease, a3: Lease, b1: Lease;
      let taskA: Task, taskA2: Task, taskB: Task;

      beforeEach(async () => {
        taskA = await activeTask({ agent: AGENT_A, environment: 'staging' });
        taskA2 = await activeTask({ agent: AGENT_A, environment: 'prod' });
        taskB = await activeTask({ agent: AGENT_B, environment: 'staging' });
        a1 = await activeLease(taskA, { expiresAt: now + 3000 });
        a2 = await activeLease(taskA, { expiresAt: now + 1000 });
        a3 = await activeLease(taskA2, { expiresAt: now + 2000 });
        b1 = await activeLease(taskB, { expiresAt: now + 4000 });
        await store.markLeaseEnded(a1.id, 'revoked', 'incident', now + 10);
      });

      it('filters by agent, task and environment, in expiresAt order', async () => {
        assert.deepEqual(
          (await store.listLeases({ agent: AGENT_A })).map((l) => l.id),
          [a2.id, a3.id, a1.id],
        );
        assert.deepEqual(
          (await store.listLeases({ taskId: taskA.id })).map((l) => l.id),
          [a2.id, a1.id],
        );
        assert.deepEqual(
          (await store.listLeases({ environment: 'staging' })).map((l) => l.id),
          [a2.id, a1.id, b1.id],
        );
        assert.deepEqual(
          (await store.listLeases({ environment: 'prod' })).map((l) => l.id),
          [a3.id],
        );
        assert.deepEqual(await store.listLeases({ agent: 'spiffe://example.org/agent/none' }), []);
      });

      it('filters by state and combines filters', async () => {
        assert.deepEqual(ids(await store.listLeases({ state: 'active' })), ids([a2, a3, b1]));
        assert.deepEqual(ids(await store.listLeases({ state: 'revoked' })), [a1.id]);
        assert.deepEqual(ids(await store.listLeases({ agent: AGENT_A, state: 'active' })), ids([a2, a3]));
        assert.deepEqual(ids(await store.listLeases({ agent: AGENT_B, environment: 'prod' })), []);
        assert.deepEqual(ids(await store.listLeases({ taskId: taskB.id, agent: AGENT_B })), [b1.id]);
        assert.deepEqual(ids(await store.listLeases({ environment: 'staging', state: 'revoked' })), [a1.id]);
      });

      it('lists every lease without a filter, with their current state', async () => {
        const all = await store.listLeases({});
        assert.deepEqual(ids(all), ids([a1, a2, a3, b1]));
        assert.equal(all.find((l) => l.id === a1.id)?.state, 'revoked');
        assert.deepEqual(
          all.find((l) => l.id === b1.id),
          b1,
        );
      });
    });

    describe('markLeaseEnded', () => {
      for (const state of ['revoking', 'revoked', 'expired', 'revoke_failed'] as const) {
        it(`moves an active lease to ${state} once`, async () => {
          const lease = await activeLease(await activeTask());
          const ended = await store.markLeaseEnded(lease.id, state, 'why', now + 7);
          assert.deepEqual(ended, { ...lease, state, revokeReason: 'why', revokedAt: now + 7 });
          assert.deepEqual(await store.getLease(lease.id), ended);
          assert.equal(await store.markLeaseEnded(lease.id, 'revoked', 'again', now + 8), undefined);
          assert.deepEqual(await store.getLease(lease.id), ended);
        });
      }

      it('answers undefined for an unknown lease', async () => {
        assert.equal(await store.markLeaseEnded('no-such-lease', 'revoked', 'x', now), undefined);
      });

      it('hands a lease to exactly one of 20 concurrent callers', async () => {
        const lease = await activeLease(await activeTask());
        const replicas = await Promise.all([1, 2, 3].map(() => h.replica()));
        const all = [store, ...replicas];
        const states = ['revoking', 'revoked', 'expired', 'revoke_failed'] as const;
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (all[i % all.length] as LeaseStore).markLeaseEnded(
              lease.id,
              states[i % states.length] as (typeof states)[number],
              `caller-${i}`,
              now + i,
            ),
          ),
        );
        const winners = results.filter((r) => r !== undefined);
        assert.equal(winners.length, 1);
        assert.deepEqual(await store.getLease(lease.id), winners[0]);
      });
    });

    describe('markRevokeOutcome', () => {
      async function revokingLease(overrides: Partial<Lease> = {}): Promise<Lease> {
        const lease = await activeLease(await activeTask(), overrides);
        const revoking = await store.markLeaseEnded(lease.id, 'revoking', 'task_ended', now + 1);
        assert.deepEqual(revoking, {
          ...lease,
          state: 'revoking',
          revokeReason: 'task_ended',
          revokedAt: now + 1,
        });
        return lease;
      }

      for (const outcome of ['revoked', 'revoke_failed'] as const) {
        it(`moves a revoking lease to ${outcome} once`, async () => {
          const lease = await revokingLease();
          const done = await store.markRevokeOutcome(lease.id, outcome, 'task_ended', now + 9);
          assert.deepEqual(done, {
            ...lease,
            state: outcome,
            revokeReason: 'task_ended',
            revokedAt: now + 9,
          });
          assert.deepEqual(await store.getLease(lease.id), done);
          assert.equal(await store.markRevokeOutcome(lease.id, 'revoked', 'again', now + 10), undefined);
          assert.equal(await store.markLeaseEnded(lease.id, 'revoked', 'again', now + 10), undefined);
          assert.deepEqual(await store.getLease(lease.id), done);
        });
      }

      it('answers undefined for a lease that is not revoking, changing nothing', async () => {
        const task = await activeTask();
        const active = await activeLease(task);
        assert.equal(await store.markRevokeOutcome(active.id, 'revoked', 'x', now + 2), undefined);
        assert.deepEqual(await store.getLease(active.id), active);
        for (const state of ['revoked', 'expired', 'revoke_failed'] as const) {
          const lease = await activeLease(task);
          const ended = await store.markLeaseEnded(lease.id, state, 'why', now + 1);
          assert.equal(await store.markRevokeOutcome(lease.id, 'revoke_failed', 'x', now + 2), undefined);
          assert.deepEqual(await store.getLease(lease.id), ended);
        }
        assert.equal(await store.markRevokeOutcome('no-such-lease', 'revoked', 'x', now), undefined);
      });

      it('refuses an outcome other than revoked or revoke_failed', async () => {
        const lease = await revokingLease();
        await rejectsWith(
          store.markRevokeOutcome(lease.id, 'expired' as 'revoked', 'x', now + 2),
          'INVALID_ARGUMENT',
        );
        assert.equal((await store.getLease(lease.id))?.state, 'revoking');
      });

      it('hands a revoking lease to exactly one of 20 concurrent callers', async () => {
        const lease = await revokingLease();
        const replicas = await Promise.all([1, 2, 3].map(() => h.replica()));
        const all = [store, ...replicas];
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (all[i % all.length] as LeaseStore).markRevokeOutcome(
              lease.id,
              i % 2 ? 'revoked' : 'revoke_failed',
              `caller-${i}`,
              now + i,
            ),
          ),
        );
        const winners = results.filter((r) => r !== undefined);
        assert.equal(winners.length, 1);
        assert.deepEqual(await store.getLease(lease.id), winners[0]);
      });

      it('a revoking lease has left the active index: not listed as active, never claimed as expired', async () => {
        const lease = await revokingLease({ expiresAt: now + 1000 });
        assert.deepEqual(await store.listLeases({ state: 'active' }), []);
        assert.deepEqual(ids(await store.listLeases({ state: 'revoking' })), [lease.id]);
        assert.deepEqual(await store.claimExpiredLeases(now + 5000, 10), []);
        assert.equal((await store.getLease(lease.id))?.state, 'revoking');
      });

      it('keeps a lease on the deny list from revoking on, whatever the outcome', async () => {
        const task = await activeTask();
        const toRevoked = await activeLease(task, { expiresAt: now + 5000 });
        const toFailed = await activeLease(task, {
          expiresAt: now + 5000,
          backend: 'vault',
          role: 'vault/db',
        });
        const pending = await activeLease(task, { expiresAt: now + 1000 });
        for (const l of [toRevoked, toFailed, pending]) {
          await store.markLeaseEnded(l.id, 'revoking', 'task_ended', now + 1);
        }
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 2)), ids([toRevoked, toFailed, pending]));
        await store.markRevokeOutcome(toRevoked.id, 'revoked', 'task_ended', now + 3);
        await store.markRevokeOutcome(toFailed.id, 'revoke_failed', 'task_ended', now + 3);
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 4)), ids([toRevoked, toFailed, pending]));
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 4, 'vault')), [toFailed.id]);
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 1000)), ids([toRevoked, toFailed]));
      });
    });

    describe('claimExpiredLeases', () => {
      it('claims active leases with expiresAt <= now, moving them to expired', async () => {
        const task = await activeTask();
        const due = await activeLease(task, { expiresAt: now + 1000 });
        const onTheDot = await activeLease(task, { expiresAt: now + 2000 });
        const later = await activeLease(task, { expiresAt: now + 2001 });
        const revoked = await activeLease(task, { expiresAt: now + 500 });
        await store.markLeaseEnded(revoked.id, 'revoked', 'incident', now + 1);

        const claimed = await store.claimExpiredLeases(now + 2000, 10);
        assert.deepEqual(
          claimed.sort((a, b) => a.expiresAt - b.expiresAt),
          [due, onTheDot].map((l) => ({
            ...l,
            state: 'expired',
            revokeReason: 'expired',
            revokedAt: now + 2000,
          })),
        );
        assert.equal((await store.getLease(later.id))?.state, 'active');
        assert.equal((await store.getLease(revoked.id))?.state, 'revoked');
        assert.deepEqual(await store.claimExpiredLeases(now + 2000, 10), []);
      });

      it('claims at most `limit` per call, oldest first', async () => {
        const task = await activeTask();
        const leases = [];
        for (let i = 0; i < 5; i++) leases.push(await activeLease(task, { expiresAt: now + 100 * (5 - i) }));
        const first = await store.claimExpiredLeases(now + 1000, 2);
        assert.deepEqual(ids(first), ids([leases[4] as Lease, leases[3] as Lease]));
        assert.equal((await store.claimExpiredLeases(now + 1000, 10)).length, 3);
        assert.deepEqual(await store.claimExpiredLeases(now + 1000, 0), []);
      });

      it('hands each expired lease to exactly one of several concurrent claimers', async () => {
        const tasks = [await activeTask(), await activeTask({ agent: AGENT_B })];
        const expired: Lease[] = [];
        for (let i = 0; i < 30; i++) {
          expired.push(await activeLease(tasks[i % 2] as Task, { expiresAt: now + 100 + (i % 7) }));
        }
        const live = [];
        for (let i = 0; i < 5; i++)
          live.push(await activeLease(tasks[0] as Task, { expiresAt: now + 60_000 }));

        const replicas = await Promise.all([1, 2, 3, 4].map(() => h.replica()));
        const claimers = [store, ...replicas].map(async (s) => {
          const mine: Lease[] = [];
          for (;;) {
            const batch = await s.claimExpiredLeases(now + 1000, 3);
            if (batch.length === 0) return mine;
            mine.push(...batch);
          }
        });
        const claimed = (await Promise.all(claimers)).flat();
        assert.equal(claimed.length, 30, 'no lease claimed twice');
        assert.deepEqual(ids(claimed), ids(expired));
        for (const l of live) assert.equal((await store.getLease(l.id))?.state, 'active');
      });
    });

    describe('claimExpiredTasks', () => {
      it('claims active tasks with expiresAt <= now once, moving them to expired', async () => {
        const due = await activeTask({ expiresAt: now + 1000 });
        const later = await activeTask({ expiresAt: now + 5000 });
        const ended = await activeTask({ expiresAt: now + 500 });
        await store.endTask(ended.id, 'ended', 'done', now + 1);

        const claimed = await store.claimExpiredTasks(now + 1000, 10);
        assert.deepEqual(claimed, [{ ...due, state: 'expired', endReason: 'expired', endedAt: now + 1000 }]);
        assert.deepEqual(await store.getTask(due.id), claimed[0]);
        assert.equal((await store.getTask(later.id))?.state, 'active');
        assert.equal((await store.getTask(ended.id))?.state, 'ended');
        assert.deepEqual(await store.claimExpiredTasks(now + 1000, 10), []);
        assert.equal(await store.putLease(makeLease(due, now), now), 'task_not_active');
      });

      it('hands each expired task to exactly one of several concurrent claimers', async () => {
        const expired: Task[] = [];
        for (let i = 0; i < 12; i++) expired.push(await activeTask({ expiresAt: now + 10 + i }));
        const replicas = await Promise.all([1, 2].map(() => h.replica()));
        const claimers = [store, ...replicas].map(async (s) => {
          const mine: Task[] = [];
          for (;;) {
            const batch = await s.claimExpiredTasks(now + 1000, 2);
            if (batch.length === 0) return mine;
            mine.push(...batch);
          }
        });
        const claimed = (await Promise.all(claimers)).flat();
        assert.equal(claimed.length, 12);
        assert.deepEqual(ids(claimed), ids(expired));
      });
    });

    describe('listRevokedUnexpired', () => {
      it('lists revoked leases still within their lifetime, optionally for one backend', async () => {
        const task = await activeTask();
        const revokedLong = await activeLease(task, { expiresAt: now + 5000 });
        const revokedShort = await activeLease(task, { expiresAt: now + 1000 });
        const revokedVault = await activeLease(task, {
          expiresAt: now + 5000,
          backend: 'vault',
          role: 'vault/db',
        });
        const expired = await activeLease(task, { expiresAt: now + 5000 });
        const failed = await activeLease(task, { expiresAt: now + 5000 });
        await activeLease(task, { expiresAt: now + 5000 }); // active: never on the list
        for (const l of [revokedLong, revokedShort, revokedVault]) {
          await store.markLeaseEnded(l.id, 'revoked', 'incident', now + 1);
        }
        await store.markLeaseEnded(expired.id, 'expired', 'expired', now + 1);
        await store.markLeaseEnded(failed.id, 'revoke_failed', 'backend down', now + 1);

        assert.deepEqual(
          ids(await store.listRevokedUnexpired(now + 2)),
          ids([revokedLong, revokedShort, revokedVault]),
        );
        assert.deepEqual(
          ids(await store.listRevokedUnexpired(now + 2, 'token')),
          ids([revokedLong, revokedShort]),
        );
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 2, 'vault')), [revokedVault.id]);
        // From its expiresAt on, a revoked credential is dead anyway and drops off the list.
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 1000)), ids([revokedLong, revokedVault]));
        assert.deepEqual(ids(await store.listRevokedUnexpired(now + 5000)), []);
        // The record itself stays listable for the incident.
        assert.equal((await store.getLease(revokedShort.id))?.state, 'revoked');
      });
    });

    describe('listRevokedTokens', () => {
      /** Every page of the token deny list, `limit` at a time, as /v1/revoked hands them out. */
      async function allPages(since: number, limit: number): Promise<RevokedToken[][]> {
        const pages: RevokedToken[][] = [];
        let after: RevokedToken | undefined;
        for (;;) {
          const page = await store.listRevokedTokens(since, { ...(after ? { after } : {}), limit });
          if (page.length > 0) pages.push(page);
          if (page.length < limit) return pages;
          after = page[page.length - 1];
        }
      }
      const entry = (l: Lease): RevokedToken => ({ jti: l.backendRef, expiresAt: l.expiresAt });
      const byExpiry = (a: RevokedToken, b: RevokedToken): number =>
        a.expiresAt - b.expiresAt || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0);

      it('lists the jtis of token leases put on the deny list, by expiry, whichever path put them there', async () => {
        const task = await activeTask();
        const revoked = await activeLease(task, { expiresAt: now + 5000 });
        const revoking = await activeLease(task, { expiresAt: now + 3000 });
        const failed = await activeLease(task, { expiresAt: now + 4000 });
        const bulk = await activeLease(task, { expiresAt: now + 2000, role: 'token/bulk' });
        const vault = await activeLease(task, { expiresAt: now + 5000, backend: 'vault', role: 'vault/db' });
        const expired = await activeLease(task, { expiresAt: now + 5000 });
        const ended = await activeLease(task, { expiresAt: now + 5000 });
        await activeLease(task, { expiresAt: now + 5000 }); // active: never listed
        await store.markLeaseEnded(revoked.id, 'revoked', 'incident', now + 1);
        await store.markLeaseEnded(revoking.id, 'revoking', 'task_ended', now + 1);
        await store.markLeaseEnded(failed.id, 'revoking', 'task_ended', now + 1);
        await store.markRevokeOutcome(failed.id, 'revoke_failed', 'gave up', now + 2);
        await store.markLeaseEnded(vault.id, 'revoked', 'incident', now + 1);
        await store.markLeaseEnded(expired.id, 'expired', 'expired', now + 1);
        await store.markLeaseEnded(ended.id, 'revoke_failed', 'backend down', now + 1);
        const run = store.revokeSelected(
          { role: 'token/bulk' },
          { reason: 'INC', at: now + 1, runAt: now, pageSize: 10 },
        );
        for await (const page of run) assert.ok(page.scanned >= 0);

        const want = [bulk, revoking, failed, revoked].map(entry);
        assert.deepEqual(await store.listRevokedTokens(now, { limit: 100 }), want);
        // Listed until `since` (the caller's now minus the verifiers' clock skew) passes their expiry.
        assert.deepEqual(await store.listRevokedTokens(now + 3000, { limit: 100 }), [
          entry(failed),
          entry(revoked),
        ]);
        assert.deepEqual(await store.listRevokedTokens(now + 5000, { limit: 100 }), []);
        // Pruned for good: an earlier `since` does not bring them back.
        assert.deepEqual(await store.listRevokedTokens(now, { limit: 100 }), []);
      });

      it('pages neither repeat nor skip entries, ties on expiry included', async () => {
        const task = await activeTask();
        const leases: Lease[] = [];
        for (let i = 0; i < 11; i++) {
          leases.push(await activeLease(task, { expiresAt: now + 1000 + 100 * (i % 3) }));
        }
        for (const l of leases) await store.markLeaseEnded(l.id, 'revoked', 'incident', now + 1);
        const want = leases.map(entry).sort(byExpiry);
        for (const limit of [1, 2, 4, 11, 50]) {
          const pages = await allPages(now, limit);
          assert.deepEqual(pages.flat(), want, `limit ${limit}`);
          assert.ok(pages.every((p) => p.length <= limit));
        }
      });

      it('a cursor whose entry was pruned continues after `since`', async () => {
        const task = await activeTask();
        const early = await activeLease(task, { expiresAt: now + 1000 });
        const late = await activeLease(task, { expiresAt: now + 9000 });
        for (const l of [early, late]) await store.markLeaseEnded(l.id, 'revoked', 'incident', now + 1);
        const [first] = await store.listRevokedTokens(now, { limit: 1 });
        assert.deepEqual(first, entry(early));
        const next = await store.listRevokedTokens(now + 2000, { after: first as RevokedToken, limit: 1 });
        assert.deepEqual(next, [entry(late)]);
      });
    });

    describe('retention', () => {
      let short: StoreHarness;
      beforeEach(async () => {
        short = await makeHarness({ retentionSeconds: 0 });
      });
      afterEach(async () => {
        await short.close();
      });

      it('drops ended records once expiresAt + retention has passed, and unlists them', async () => {
        const s = short.store;
        const task = makeTask(now - 60_000, { expiresAt: now + 60_000 });
        await s.createTask(task);
        const past = makeLease(task, now - 60_000, { expiresAt: now - 1000 });
        const future = makeLease(task, now - 60_000, { expiresAt: now + 60_000 });
        assert.equal(await s.putLease(past, now - 30_000), 'ok');
        assert.equal(await s.putLease(future, now - 30_000), 'ok');
        // Active records never expire on their own, however old.
        assert.equal((await s.getLease(past.id))?.state, 'active');

        assert.equal((await s.markLeaseEnded(past.id, 'revoked', 'incident', now))?.state, 'revoked');
        assert.equal((await s.markLeaseEnded(future.id, 'revoked', 'incident', now))?.state, 'revoked');
        assert.equal(await s.getLease(past.id), undefined);
        assert.equal((await s.getLease(future.id))?.state, 'revoked');
        assert.deepEqual(ids(await s.listLeases({ agent: task.agent })), [future.id]);
        assert.deepEqual(ids(await s.listLeases({})), [future.id]);
        assert.deepEqual(ids(await s.listRevokedUnexpired(now)), [future.id]);
      });

      it('keeps a revoking lease past expiresAt + retention until its outcome is set', async () => {
        const s = short.store;
        const task = makeTask(now - 60_000, { expiresAt: now + 60_000 });
        await s.createTask(task);
        const lease = makeLease(task, now - 60_000, { expiresAt: now - 1000 });
        assert.equal(await s.putLease(lease, now - 30_000), 'ok');
        assert.equal((await s.markLeaseEnded(lease.id, 'revoking', 'task_ended', now))?.state, 'revoking');
        assert.equal((await s.getLease(lease.id))?.state, 'revoking');
        assert.deepEqual(ids(await s.listLeases({ taskId: task.id })), [lease.id]);
        const done = await s.markRevokeOutcome(lease.id, 'revoked', 'task_ended', now + 1);
        assert.equal(done?.state, 'revoked', 'the caller still sees the record');
        assert.equal(await s.getLease(lease.id), undefined);
      });
    });

    it('rejects with UNAVAILABLE once closed', async () => {
      await store.close();
      await rejectsWith(store.ping(), 'UNAVAILABLE', 'lease_store_unavailable');
      await rejectsWith(store.getTask('x'), 'UNAVAILABLE', 'lease_store_unavailable');
    });
  });
}

describeLeaseStoreContract('MemoryLeaseStore', memoryHarness);
describeLeaseStoreContract('RedisLeaseStore', redisHarness);
