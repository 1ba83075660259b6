/**
 * LeaseReaper against real stores (Redis and in-process) with a fake backend that records what
 * it was asked to revoke.
 */
import { strict as assert } from 'node:assert';
import { MemoryLeaseStore } from '../../../src/leases/memory-lease-store.js';
import { LeaseReaper, type LeaseReaperOptions, type ReaperLogger } from '../../../src/leases/reaper.js';
import type { Lease, LeaseStore, Task } from '../../../src/leases/types.js';
import {
  makeLease,
  makeTask,
  memoryHarness,
  redisHarness,
  wallNow,
  type MakeHarness,
  type StoreHarness,
} from '../../support/lease-store-harness.js';

/** Records revocations; can fail or stall for chosen leases. */
class FakeBackend {
  readonly revoked: string[] = [];
  readonly failFor = new Set<string>();
  delayMs = 0;
  started = 0;

  revoke = async (lease: Lease): Promise<void> => {
    this.started++;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failFor.has(lease.id)) throw new Error(`backend refused ${lease.id}`);
    this.revoked.push(lease.id);
  };
}

class RecordingLogger implements ReaperLogger {
  readonly entries: { level: string; obj: object; msg: string }[] = [];
  info(obj: object, msg: string): void {
    this.entries.push({ level: 'info', obj, msg });
  }
  warn(obj: object, msg: string): void {
    this.entries.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg: string): void {
    this.entries.push({ level: 'error', obj, msg });
  }
}

const until = async (condition: () => boolean, timeoutMs = 5000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

function describeReaper(name: string, makeHarness: MakeHarness): void {
  describe(`LeaseReaper on ${name}`, () => {
    let h: StoreHarness;
    let now: number;
    let clock: number;
    let backend: FakeBackend;
    let expiredTasks: Task[];
    let logger: RecordingLogger;
    const reapers: LeaseReaper[] = [];

    beforeEach(async () => {
      h = await makeHarness();
      now = wallNow();
      clock = now;
      backend = new FakeBackend();
      expiredTasks = [];
      logger = new RecordingLogger();
    });
    afterEach(async () => {
      await Promise.all(reapers.splice(0).map((r) => r.stop()));
      await h.close();
    });

    function reaper(store: LeaseStore, overrides: Partial<LeaseReaperOptions> = {}): LeaseReaper {
      const r = new LeaseReaper({
        store,
        revoke: backend.revoke,
        onTaskExpired: async (task) => {
          expiredTasks.push(task);
        },
        intervalMs: 20,
        batchSize: 2,
        logger,
        now: () => clock,
        ...overrides,
      });
      reapers.push(r);
      return r;
    }

    async function seed(): Promise<{ task: Task; expired: Lease[]; live: Lease }> {
      const task = makeTask(now, { expiresAt: now + 60 * 60_000 });
      await h.store.createTask(task);
      const expired = [];
      for (let i = 0; i < 5; i++) {
        const lease = makeLease(task, now, { expiresAt: now + 1000 + i });
        assert.equal(await h.store.putLease(lease, now), 'ok');
        expired.push(lease);
      }
      const live = makeLease(task, now, { expiresAt: now + 30 * 60_000 });
      assert.equal(await h.store.putLease(live, now), 'ok');
      return { task, expired, live };
    }

    it('revokes each expired lease exactly once, even with two replicas sweeping', async () => {
      const { expired, live } = await seed();
      clock = now + 2000;
      const [a, b] = [reaper(h.store), reaper(await h.replica())];
      const first = a.sweepOnce();
      assert.equal(a.sweepOnce(), first, 'a second call joins the sweep in flight');
      const results = await Promise.all([first, b.sweepOnce()]);
      await Promise.all([a.sweepOnce(), b.sweepOnce()]);

      assert.deepEqual([...backend.revoked].sort(), expired.map((l) => l.id).sort());
      assert.equal(
        results.reduce((n, r) => n + r.leasesExpired, 0),
        5,
      );
      for (const l of expired) assert.equal((await h.store.getLease(l.id))?.state, 'expired');
      assert.equal((await h.store.getLease(live.id))?.state, 'active');
      assert.deepEqual(expiredTasks, []);
    });

    it('claims each orphan (pending past orphans.afterMs) once across replicas; fresh pending ones wait', async () => {
      const task = makeTask(now, { expiresAt: now + 60 * 60_000 });
      await h.store.createTask(task);
      const orphans: Lease[] = [];
      for (let i = 0; i < 3; i++) {
        const lease = makeLease(task, now, { state: 'pending' });
        assert.equal(await h.store.putLease(lease, now), 'ok');
        orphans.push(lease);
      }
      const fresh = makeLease(task, now, { state: 'pending' });
      assert.equal(await h.store.putLease(fresh, now + 50_000), 'ok');
      const handed: string[] = [];
      const orphanOpts = {
        afterMs: 30_000,
        retryAfterMs: 1000,
        onOrphaned: async (leases: Lease[]) => {
          handed.push(...leases.map((l) => l.id));
        },
      };
      clock = now + 60_000;
      const [a, b] = [
        reaper(h.store, { orphans: orphanOpts }),
        reaper(await h.replica(), { orphans: orphanOpts }),
      ];
      const results = await Promise.all([a.sweepOnce(), b.sweepOnce()]);
      assert.deepEqual(handed.sort(), orphans.map((l) => l.id).sort());
      assert.equal(
        results.reduce((n, r) => n + r.leasesOrphaned, 0),
        3,
      );
      for (const l of orphans) assert.equal((await h.store.getLease(l.id))?.state, 'revoking');
      assert.equal((await h.store.getLease(fresh.id))?.state, 'pending');
      assert.deepEqual(backend.revoked, [], 'orphans are not expired leases');
    });

    it('counts a failed orphan callback and keeps sweeping', async () => {
      const task = makeTask(now, { expiresAt: now + 60 * 60_000 });
      await h.store.createTask(task);
      assert.equal(await h.store.putLease(makeLease(task, now, { state: 'pending' }), now), 'ok');
      clock = now + 60_000;
      const result = await reaper(h.store, {
        orphans: {
          afterMs: 30_000,
          retryAfterMs: 1000,
          onOrphaned: async () => {
            throw new Error('backend down');
          },
        },
      }).sweepOnce();
      assert.deepEqual(result, { tasksExpired: 0, leasesExpired: 0, leasesOrphaned: 1, failures: 1 });
      assert.ok(logger.entries.some((e) => e.msg === 'revoking orphaned leases failed'));
    });

    it('hands an expired task to onTaskExpired once', async () => {
      const due = makeTask(now, { expiresAt: now + 1000 });
      const later = makeTask(now, { expiresAt: now + 60_000 });
      await h.store.createTask(due);
      await h.store.createTask(later);
      clock = now + 1000;
      const result = await reaper(h.store).sweepOnce();
      await reaper(await h.replica()).sweepOnce();

      assert.deepEqual(result, { tasksExpired: 1, leasesExpired: 0, leasesOrphaned: 0, failures: 0 });
      assert.deepEqual(expiredTasks, [
        { ...due, state: 'expired', endReason: 'expired', endedAt: now + 1000 },
      ]);
      assert.equal((await h.store.getTask(later.id))?.state, 'active');
    });

    it('keeps revoking the others when one revoke fails, and logs the failure', async () => {
      const { expired } = await seed();
      const failing = expired[2] as Lease;
      backend.failFor.add(failing.id);
      clock = now + 2000;
      const result = await reaper(h.store).sweepOnce();

      assert.deepEqual(result, { tasksExpired: 0, leasesExpired: 5, leasesOrphaned: 0, failures: 1 });
      assert.deepEqual(
        [...backend.revoked].sort(),
        expired
          .filter((l) => l !== failing)
          .map((l) => l.id)
          .sort(),
      );
      const warning = logger.entries.find((e) => e.level === 'warn');
      assert.equal(warning?.msg, 'revoking an expired lease failed');
      assert.equal((warning?.obj as { leaseId?: string }).leaseId, failing.id);
    });

    it('after a restart, a new reaper revokes what expired while nothing ran', async () => {
      const { expired } = await seed();
      const before = reaper(h.store);
      assert.deepEqual(await before.sweepOnce(), {
        tasksExpired: 0,
        leasesExpired: 0,
        leasesOrphaned: 0,
        failures: 0,
      });
      await before.stop();

      // Down for a while: the leases and the task expire with nobody watching.
      clock = now + 2 * 60 * 60_000;
      const after = reaper(await h.replica(), { batchSize: 4 });
      const result = await after.sweepOnce();
      assert.deepEqual(result, { tasksExpired: 1, leasesExpired: 6, leasesOrphaned: 0, failures: 0 });
      assert.equal(backend.revoked.length, 6);
      for (const l of expired) assert.ok(backend.revoked.includes(l.id));
      assert.equal(expiredTasks.length, 1);
    });

    it('sweeps on start and on every interval; stop() waits for the sweep in flight', async () => {
      const { expired } = await seed();
      clock = now + 2000;
      backend.delayMs = 100;
      const r = reaper(h.store, { batchSize: 10 });
      r.start();
      await until(() => backend.started > 0);
      await r.stop();
      // Every revoke of the claimed batch finished before stop() resolved.
      assert.equal(backend.revoked.length, expired.length);
      assert.deepEqual(
        logger.entries.filter((e) => e.level === 'info').map((e) => e.obj),
        [{ tasksExpired: 0, leasesExpired: 5, leasesOrphaned: 0, failures: 0 }],
      );

      // Stopped: a lease expiring now stays for the next reaper.
      const task = (await h.store.listLeases({ state: 'expired' }))[0]?.taskId ?? '';
      const late = makeLease((await h.store.getTask(task)) as Task, now, { expiresAt: now + 3000 });
      assert.equal(await h.store.putLease(late, now), 'ok');
      clock = now + 4000;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await h.store.getLease(late.id))?.state, 'active');

      // Started again: picks it up on the first sweep.
      backend.delayMs = 0;
      r.start();
      await until(() => backend.revoked.includes(late.id));
    });
  });
}

describeReaper('MemoryLeaseStore', memoryHarness);
describeReaper('RedisLeaseStore', redisHarness);

describe('LeaseReaper when the store fails', () => {
  it('logs the failed sweep and tries again on the next interval', async () => {
    let calls = 0;
    class DownStore extends MemoryLeaseStore {
      override async claimExpiredTasks(): Promise<Task[]> {
        calls++;
        throw new Error('store down');
      }
    }
    const failing = new DownStore();
    const logger = new RecordingLogger();
    const r = new LeaseReaper({
      store: failing,
      revoke: async () => undefined,
      onTaskExpired: async () => undefined,
      intervalMs: 10,
      batchSize: 5,
      logger,
    });
    await assert.rejects(r.sweepOnce(), /store down/);
    r.start();
    await until(() => calls >= 3);
    await r.stop();
    const afterStop = calls;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls, afterStop, 'no sweep after stop()');
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.msg === 'reaper sweep failed'));
  });

  it('refuses a non-positive interval or batch size', () => {
    const base = {
      store: new MemoryLeaseStore(),
      revoke: async () => undefined,
      onTaskExpired: async () => undefined,
      logger: new RecordingLogger(),
    };
    assert.throws(() => new LeaseReaper({ ...base, intervalMs: 0, batchSize: 1 }), RangeError);
    assert.throws(() => new LeaseReaper({ ...base, intervalMs: 10, batchSize: 0 }), RangeError);
  });
});
