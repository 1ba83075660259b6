/**
 * The two-phase lease contract and the task version, run against both stores wired as main.ts
 * wires them (with the revocation queue orphan claims write to): a lease is written `pending`,
 * activated once, claimed as an orphan once, and a write that carries a stale task version is
 * refused without writing anything.
 */
import { strict as assert } from 'node:assert';
import type { Lease, Task } from '../../../src/leases/types.js';
import { makeLease, makeTask, wallNow } from '../../support/lease-store-harness.js';
import {
  memorySelection,
  redisSelection,
  type MakeSelectionHarness,
  type SelectionHarness,
} from '../../support/selection-harness.js';

function describeTwoPhase(name: string, make: MakeSelectionHarness): void {
  describe(`two-phase leases and task versions: ${name}`, () => {
    let h: SelectionHarness;
    let now: number;
    let task: Task;

    beforeEach(async () => {
      h = await make();
      now = wallNow();
      task = makeTask(now);
      await h.store.createTask(task);
    });
    afterEach(() => h.close());

    async function pendingLease(overrides: Partial<Lease> = {}, at = now): Promise<Lease> {
      const lease = makeLease(task, now, { state: 'pending', ...overrides });
      assert.equal(await h.store.putLease(lease, at), 'ok');
      return lease;
    }

    it('writes a pending lease apart from the active ones: listed and counted as pending only', async () => {
      const lease = await pendingLease();
      assert.equal((await h.store.getLease(lease.id))?.state, 'pending');
      assert.equal(await h.store.pendingLeaseCount(), 1);
      assert.deepEqual(await h.store.activeLeaseCounts(), {});
      assert.deepEqual(
        (await h.store.listLeases({ taskId: task.id, state: 'pending' })).map((l) => l.id),
        [lease.id],
      );
      assert.deepEqual(await h.store.listLeases({ taskId: task.id, state: 'active' }), []);
      const page = await h.store.scanLeases({ state: 'pending' }, undefined, 10);
      assert.deepEqual(
        page.leases.map((l) => l.id),
        [lease.id],
      );
      // The reaper's expiry claim only takes active leases; an old pending one is an orphan instead.
      assert.deepEqual(await h.store.claimExpiredLeases(lease.expiresAt + 1, 10), []);
    });

    it('activates a pending lease exactly once', async () => {
      const lease = await pendingLease();
      const [first, second] = await Promise.all([
        h.store.activateLease(lease.id, task.id, now + 1),
        h.store.activateLease(lease.id, task.id, now + 1),
      ]);
      assert.deepEqual([first, second].sort(), ['lease_not_pending', 'ok']);
      assert.equal((await h.store.getLease(lease.id))?.state, 'active');
      assert.equal(await h.store.pendingLeaseCount(), 0);
      assert.deepEqual(await h.store.activeLeaseCounts(), { token: 1 });
      assert.equal(await h.store.activateLease('no-such-lease', task.id, now), 'lease_not_found');
    });

    it('refuses to activate once the task ended or expired, leaving the lease pending', async () => {
      const lease = await pendingLease();
      assert.equal(await h.store.activateLease(lease.id, task.id, task.expiresAt), 'task_expired');
      await h.store.endTask(task.id, 'ended', 'done', now + 1);
      assert.equal(await h.store.activateLease(lease.id, task.id, now + 2), 'task_not_active');
      assert.equal((await h.store.getLease(lease.id))?.state, 'pending');
      assert.deepEqual(await h.store.activeLeaseCounts(), {});
    });

    it('ends a pending lease like an active one (onto the deny list, out of the pending set)', async () => {
      const lease = await pendingLease();
      const ended = await h.store.markLeaseEnded(lease.id, 'revoked', 'audit_unavailable', now + 1);
      assert.equal(ended?.state, 'revoked');
      assert.equal(await h.store.pendingLeaseCount(), 0);
      assert.deepEqual(
        (await h.store.listRevokedUnexpired(now + 2)).map((l) => l.id),
        [lease.id],
      );
      assert.equal(await h.store.activateLease(lease.id, task.id, now + 2), 'lease_not_pending');
    });

    it('bumps the task version on every write and refuses a write that carries a stale one', async () => {
      assert.equal((await h.store.taskLeaseSummary(task.id))?.version, 0);
      await pendingLease({ role: 'token/logs-read' });
      const seen = await h.store.taskLeaseSummary(task.id);
      assert.deepEqual(seen, { count: 1, roles: ['token/logs-read'], version: 1 });

      const stale = makeLease(task, now, { state: 'pending', role: 'token/secrets-read' });
      assert.equal(await h.store.putLease(stale, now, { expectVersion: 0 }), 'task_changed');
      assert.equal(await h.store.getLease(stale.id), undefined, 'nothing written');
      assert.deepEqual(await h.store.taskLeaseSummary(task.id), seen, 'tally and version unchanged');

      assert.equal(await h.store.putLease(stale, now, { expectVersion: 1 }), 'ok');
      assert.equal((await h.store.taskLeaseSummary(task.id))?.version, 2);
    });

    it('of concurrent writes that saw the same version, exactly one is recorded', async () => {
      const leases = Array.from({ length: 8 }, () => makeLease(task, now, { state: 'pending' }));
      const results = await Promise.all(leases.map((l) => h.store.putLease(l, now, { expectVersion: 0 })));
      assert.equal(results.filter((r) => r === 'ok').length, 1);
      assert.equal(results.filter((r) => r === 'task_changed').length, 7);
      assert.equal((await h.store.listLeases({ taskId: task.id })).length, 1);
    });

    it('refuses a stale version on a quarantined agent as quarantined (no retry would help)', async () => {
      await h.quarantines.put({
        pattern: task.agent,
        reason: 'test',
        by: 'spiffe://example.org/security/oncall',
        trigger: 'manual',
        createdAt: now,
        expiresAt: 0,
      });
      const lease = makeLease(task, now, { state: 'pending' });
      assert.equal(await h.store.putLease(lease, now, { expectVersion: 5 }), 'agent_quarantined');
    });

    it('claims orphans written before the cutoff once, deny-listed with a queued revocation', async () => {
      const old = await pendingLease({}, now - 120_000);
      const fresh = await pendingLease({}, now);
      const active = makeLease(task, now);
      assert.equal(await h.store.putLease(active, now - 120_000), 'ok');
      const claim = { reason: 'orphaned', at: now, runAt: now + 10_000 };

      const [a, b] = await Promise.all([
        h.store.claimOrphanedLeases(now - 60_000, 10, claim),
        h.store.claimOrphanedLeases(now - 60_000, 10, claim),
      ]);
      const claimed = [...a, ...b];
      assert.deepEqual(
        claimed.map((l) => l.id),
        [old.id],
        'only the old pending lease, once',
      );
      assert.equal(claimed[0]?.state, 'revoking');
      assert.equal(claimed[0]?.revokeReason, 'orphaned');
      assert.equal((await h.store.getLease(old.id))?.state, 'revoking');
      assert.deepEqual(
        (await h.store.listRevokedUnexpired(now)).map((l) => l.id),
        [old.id],
      );
      const job = await h.queue.get(old.id);
      assert.equal(job?.backendRef, old.backendRef);
      assert.equal(job?.reason, 'orphaned');
      assert.equal(await h.store.pendingLeaseCount(), 1, 'the fresh one is still pending');
      assert.equal(await h.store.activateLease(old.id, task.id, now), 'lease_not_pending');
      assert.equal(await h.store.activateLease(fresh.id, task.id, now), 'ok');
      assert.deepEqual(await h.store.claimOrphanedLeases(now + 1_000_000, 10, claim), []);
    });

    it('refuses a new lease in any other state than pending or active', async () => {
      await assert.rejects(h.store.putLease(makeLease(task, now, { state: 'revoked' }), now), /lease.state/);
      await assert.rejects(
        h.store.putLease(makeLease(task, now), now, { expectVersion: -1 }),
        /expectVersion/,
      );
    });
  });
}

describeTwoPhase('MemoryLeaseStore', memorySelection);
describeTwoPhase('RedisLeaseStore', redisSelection);
