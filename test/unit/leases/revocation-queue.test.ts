/**
 * The revocation queue contract on both queues (Redis: a real redis-server, fresh key prefix per
 * test), and the RevocationWorker on top: backoff, giving up into revoke_failed with an audit
 * event, resuming after a restart, and jobs of a crashed worker coming back.
 */
import { strict as assert } from 'node:assert';
import type { Redis } from 'ioredis';
import type { CredentialBackend, RevokeTarget } from '../../../src/credentials/backend.js';
import { isBrokerError, unavailable } from '../../../src/errors.js';
import { MemoryLeaseStore } from '../../../src/leases/memory-lease-store.js';
import { MemoryRevocationQueue } from '../../../src/leases/memory-revocation-queue.js';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../../src/leases/redis-revocation-queue.js';
import type { RevocationJob, RevocationQueue } from '../../../src/leases/revocation-queue.js';
import {
  revocationBackoff,
  RevocationWorker,
  type RevocationAuditEvent,
  type RevocationWorkerOptions,
} from '../../../src/leases/revocation-worker.js';
import type { Lease, LeaseStore } from '../../../src/leases/types.js';
import { makeLease, makeTask } from '../../support/lease-store-harness.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

const VISIBILITY_MS = 1000;

interface QueueHarness {
  queue: RevocationQueue;
  store: LeaseStore;
  /** Another handle on the same queue and store, as a second replica (or a restarted broker) has. */
  replica(): Promise<{ queue: RevocationQueue; store: LeaseStore }>;
  close(): Promise<void>;
}

type MakeQueueHarness = () => Promise<QueueHarness>;

const memoryQueueHarness: MakeQueueHarness = async () => {
  const queue = new MemoryRevocationQueue({ visibilityTimeoutMs: VISIBILITY_MS });
  // Wired as main.ts wires it: bulk revocations and orphan claims queue their jobs here.
  const store = new MemoryLeaseStore({ revocations: queue });
  return {
    queue,
    store,
    replica: async () => ({ queue, store }),
    close: async () => {
      await queue.close();
      await store.close();
    },
  };
};

const redisQueueHarness: MakeQueueHarness = async () => {
  const server = await sharedRedis();
  const prefix = randomPrefix();
  const clients: Redis[] = [];
  const stores: RedisLeaseStore[] = [];
  const open = async (): Promise<{ queue: RevocationQueue; store: LeaseStore }> => {
    const redis = createRedisClient(server.url);
    clients.push(redis);
    // The queue shares the store's client, as main.ts wires it; the store owns (and quits) it.
    const store = new RedisLeaseStore(redis, { prefix });
    stores.push(store);
    await store.ping();
    return { queue: new RedisRevocationQueue(redis, { prefix, visibilityTimeoutMs: VISIBILITY_MS }), store };
  };
  const first = await open();
  return {
    ...first,
    replica: open,
    close: async () => {
      await Promise.all(stores.map((s) => s.close()));
    },
  };
};

function job(leaseId: string, overrides: Partial<RevocationJob> = {}): RevocationJob {
  return {
    leaseId,
    backend: 'fake',
    backendRef: `ref-${leaseId}`,
    expiresAt: Date.now() + 600_000,
    reason: 'task_ended',
    attempts: 1,
    ...overrides,
  };
}

/** A backend whose revoke fails `failRevokes` times, then succeeds; it records every target. */
const FAKE_VALID_UNTIL = Date.UTC(2030, 0, 1);

class FakeBackend implements CredentialBackend {
  readonly name = 'fake';
  failRevokes = 0;
  /** Its credentials can only be let expire, at FAKE_VALID_UNTIL. */
  expiresOnly = false;
  revocability(): 'revocable' | 'expires_only' {
    return this.expiresOnly ? 'expires_only' : 'revocable';
  }
  validUntil(): number | undefined {
    return this.expiresOnly ? FAKE_VALID_UNTIL : undefined;
  }
  readonly revoked: RevokeTarget[] = [];
  calls = 0;
  validateRole(): string[] {
    return [];
  }
  async issue(): Promise<never> {
    throw new Error('not used');
  }
  async revoke(target: RevokeTarget): Promise<void> {
    this.calls++;
    if (this.failRevokes > 0) {
      this.failRevokes--;
      throw unavailable('vault_unavailable', 'Vault is unavailable (connection refused)');
    }
    this.revoked.push(target);
  }
}

interface Logged {
  level: string;
  obj: object;
  msg: string;
}

function captureLogger(): { logger: RevocationWorkerOptions['logger']; lines: Logged[] } {
  const lines: Logged[] = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj, msg });
    };
  return { logger: { info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

function describeQueue(name: string, makeHarness: MakeQueueHarness, durable: boolean): void {
  describe(`RevocationQueue contract: ${name}`, () => {
    let h: QueueHarness;
    let queue: RevocationQueue;
    let now: number;

    beforeEach(async () => {
      h = await makeHarness();
      queue = h.queue;
      now = Date.now();
    });
    afterEach(async () => {
      await h.close();
    });

    it(`reports durable = ${durable}`, () => {
      assert.equal(queue.durable, durable);
    });

    it('hands out due jobs oldest first, leaving jobs not yet due', async () => {
      await queue.enqueue(job('c'), now + 300);
      await queue.enqueue(job('a'), now + 100);
      await queue.enqueue(job('b'), now + 200);
      await queue.enqueue(job('later'), now + 10_000);
      assert.equal(await queue.pending(), 4);
      assert.deepEqual(await queue.claimDue(now + 50, 10), []);
      const first = await queue.claimDue(now + 500, 2);
      assert.deepEqual(
        first.map((j) => j.leaseId),
        ['a', 'b'],
      );
      const rest = await queue.claimDue(now + 500, 10);
      assert.deepEqual(
        rest.map((j) => j.leaseId),
        ['c'],
      );
      assert.deepEqual(await queue.claimDue(now + 500, 10), [], 'claimed jobs are hidden');
      assert.deepEqual(await queue.claimDue(now + 500, 0), []);
      assert.equal(await queue.pending(), 4, 'claimed jobs are still pending until completed');
    });

    it('returns the job as queued, with a claim token', async () => {
      const queued = job('x', { attempts: 2, lastError: 'boom' });
      await queue.enqueue(queued, now);
      const [claimed] = await queue.claimDue(now, 10);
      assert.ok(claimed);
      const { claim, ...rest } = claimed;
      assert.deepEqual(rest, queued);
      assert.equal(typeof claim, 'string');
      assert.deepEqual(await queue.get('x'), { ...queued, claim, runAt: now + VISIBILITY_MS });
      assert.equal(await queue.get('nope'), undefined);
    });

    it('queues a lease once: a second enqueue keeps the first job', async () => {
      assert.equal(await queue.enqueue(job('x', { attempts: 1 }), now + 100), true);
      assert.equal(await queue.enqueue(job('x', { attempts: 5, reason: 'other' }), now), false);
      const kept = await queue.get('x');
      assert.equal(kept?.attempts, 1);
      assert.equal(kept?.reason, 'task_ended');
      assert.equal(kept?.runAt, now + 100);
      assert.equal(await queue.pending(), 1);
    });

    it('hands each due job to exactly one of several concurrent claimers', async () => {
      for (let i = 0; i < 30; i++) await queue.enqueue(job(`j${i}`), now + (i % 7));
      await queue.enqueue(job('future'), now + 60_000);
      const replicas = await Promise.all([1, 2, 3].map(() => h.replica()));
      const claimers = [h, ...replicas].map(async ({ queue: q }) => {
        const mine: string[] = [];
        for (;;) {
          const batch = await q.claimDue(now + 100, 3);
          if (batch.length === 0) return mine;
          mine.push(...batch.map((j) => j.leaseId));
        }
      });
      const claimed = (await Promise.all(claimers)).flat();
      assert.equal(claimed.length, 30, 'no job claimed twice');
      assert.equal(new Set(claimed).size, 30);
      assert.ok(!claimed.includes('future'));
    });

    it('gives a claimed job back after the visibility timeout, and only the newest claim may finish it', async () => {
      await queue.enqueue(job('x'), now);
      const [crashed] = await queue.claimDue(now, 10);
      assert.ok(crashed);
      assert.deepEqual(await queue.claimDue(now + VISIBILITY_MS - 1, 10), []);
      const [again] = await queue.claimDue(now + VISIBILITY_MS, 10);
      assert.equal(again?.leaseId, 'x');
      assert.notEqual(again?.claim, crashed.claim);
      // The first worker wakes up late: its claim is stale, so it cannot undo the second's work.
      assert.equal(await queue.retry('x', now + 5000, 9, 'late', crashed.claim), false);
      assert.equal(await queue.complete('x', crashed.claim), false);
      assert.equal((await queue.get('x'))?.attempts, 1);
      assert.equal(await queue.complete('x', again?.claim), true);
      assert.equal(await queue.pending(), 0);
      assert.equal(await queue.complete('x'), false);
    });

    it('reschedules on retry, recording attempts and the last error, and releases the claim', async () => {
      await queue.enqueue(job('x'), now);
      const [claimed] = await queue.claimDue(now, 10);
      assert.equal(await queue.retry('x', now + 400, 2, 'vault_unavailable: down', claimed?.claim), true);
      const queued = await queue.get('x');
      assert.equal(queued?.runAt, now + 400);
      assert.equal(queued?.attempts, 2);
      assert.equal(queued?.lastError, 'vault_unavailable: down');
      assert.equal(queued?.claim, undefined);
      assert.deepEqual(await queue.claimDue(now + 399, 10), []);
      const [next] = await queue.claimDue(now + 400, 10);
      assert.equal(next?.attempts, 2);
      assert.equal(next?.lastError, 'vault_unavailable: down');
      assert.equal(await queue.retry('nope', now, 1, 'x'), false);
    });

    it('bounds a stored error message', async () => {
      await queue.enqueue(job('x'), now);
      await queue.retry('x', now, 2, 'e'.repeat(5000));
      const stored = (await queue.get('x'))?.lastError ?? '';
      assert.ok(stored.length <= 501, `stored ${stored.length} chars`);
    });

    it('refuses malformed jobs and arguments', async () => {
      await rejectsWithCode(queue.enqueue(job(''), now), 'INVALID_ARGUMENT');
      await rejectsWithCode(queue.enqueue(job('x', { backend: '' }), now), 'INVALID_ARGUMENT');
      await rejectsWithCode(queue.enqueue(job('x', { attempts: -1 }), now), 'INVALID_ARGUMENT');
      await rejectsWithCode(queue.enqueue(job('x'), now + 0.5), 'INVALID_ARGUMENT');
      await rejectsWithCode(queue.claimDue(now, -1), 'INVALID_ARGUMENT');
      assert.equal(await queue.pending(), 0);
    });
  });
}

describeQueue('MemoryRevocationQueue', memoryQueueHarness, false);
describeQueue('RedisRevocationQueue', redisQueueHarness, true);

describe('revocationBackoff', () => {
  const opts = { baseDelayMs: 100, maxDelayMs: 5000 };

  it('doubles with every failure up to the cap, jitter within [half, full]', () => {
    const low = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => revocationBackoff(n, opts, () => 0));
    const high = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => revocationBackoff(n, opts, () => 0.999999));
    assert.deepEqual(low, [50, 100, 200, 400, 800, 1600, 2500, 2500]);
    assert.deepEqual(high, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    assert.equal(
      revocationBackoff(10_000, opts, () => 0.5),
      3750,
      'huge attempt counts stay capped',
    );
  });
});

function describeWorker(name: string, makeHarness: MakeQueueHarness, durable: boolean): void {
  describe(`RevocationWorker on ${name}`, () => {
    let h: QueueHarness;
    let backend: FakeBackend;
    let clock: number;
    let audit: RevocationAuditEvent[];
    let workers: RevocationWorker[];

    beforeEach(async () => {
      h = await makeHarness();
      backend = new FakeBackend();
      clock = Date.now();
      audit = [];
      workers = [];
    });
    afterEach(async () => {
      await Promise.all(workers.map((w) => w.stop()));
      await h.close();
    });

    function worker(
      overrides: Partial<RevocationWorkerOptions> = {},
      on: { queue: RevocationQueue; store: LeaseStore } = h,
    ): { worker: RevocationWorker; lines: Logged[] } {
      const { logger, lines } = captureLogger();
      const w = new RevocationWorker({
        queue: on.queue,
        store: on.store,
        backends: new Map([['fake', backend]]),
        audit: async (event) => {
          audit.push(event);
        },
        maxAttempts: 4,
        baseDelayMs: 100,
        maxDelayMs: 1000,
        intervalMs: 20,
        logger,
        now: () => clock,
        random: () => 0.5,
        ...overrides,
      });
      workers.push(w);
      return { worker: w, lines };
    }

    /** A lease moved to `revoking` with its job queued, as broker.revokeLease does after a failed inline revoke. */
    async function revokingLease(
      store: LeaseStore = h.store,
      queue: RevocationQueue = h.queue,
    ): Promise<Lease> {
      const task = makeTask(clock);
      await store.createTask(task);
      const lease = makeLease(task, clock, { backend: 'fake', role: 'fake/r' });
      assert.equal(await store.putLease(lease, clock), 'ok');
      assert.ok(await store.markLeaseEnded(lease.id, 'revoking', 'task_ended', clock));
      await queue.enqueue(
        {
          leaseId: lease.id,
          backend: 'fake',
          backendRef: lease.backendRef,
          expiresAt: lease.expiresAt,
          reason: 'task_ended',
          attempts: 1,
          lastError: 'vault_unavailable: first try',
        },
        clock,
      );
      return lease;
    }

    it('revokes a due job, marks the lease revoked, audits it and empties the queue', async () => {
      const lease = await revokingLease();
      const { worker: w } = worker();
      assert.deepEqual(await w.drainOnce(), {
        revoked: 1,
        notRevocable: 0,
        retried: 0,
        failed: 0,
        deferred: 0,
      });
      assert.deepEqual(backend.revoked, [
        { leaseId: lease.id, backendRef: lease.backendRef, expiresAt: lease.expiresAt },
      ]);
      const stored = await h.store.getLease(lease.id);
      assert.equal(stored?.state, 'revoked');
      assert.equal(stored?.revokeReason, 'task_ended');
      assert.equal(await h.queue.pending(), 0);
      assert.deepEqual(audit, [
        {
          type: 'lease.revoked',
          agent: lease.agent,
          lease: lease.id,
          task: lease.taskId,
          role: lease.role,
          environment: lease.environment,
          backend: 'fake',
          reason: 'task_ended',
          attempts: 2,
        },
      ]);
    });

    it('retries with growing delays, then succeeds after N failures', async () => {
      const lease = await revokingLease();
      backend.failRevokes = 2;
      const { worker: w } = worker({ maxAttempts: 5 });
      const start = clock;

      assert.equal((await w.drainOnce()).retried, 1);
      const first = await h.queue.get(lease.id);
      assert.equal(first?.attempts, 2);
      assert.equal(
        first?.runAt,
        start + revocationBackoff(2, { baseDelayMs: 100, maxDelayMs: 1000 }, () => 0.5),
      );
      assert.match(first?.lastError ?? '', /vault_unavailable/);
      assert.deepEqual((await w.drainOnce()).retried, 0, 'not due yet');

      clock = first?.runAt ?? 0;
      assert.equal((await w.drainOnce()).retried, 1);
      const second = await h.queue.get(lease.id);
      assert.equal(second?.attempts, 3);
      const firstDelay = (first?.runAt ?? 0) - start;
      const secondDelay = (second?.runAt ?? 0) - clock;
      assert.ok(secondDelay > firstDelay, `backoff grows: ${firstDelay} then ${secondDelay}`);

      clock = second?.runAt ?? 0;
      assert.equal((await w.drainOnce()).revoked, 1);
      assert.equal(backend.calls, 3);
      assert.equal((await h.store.getLease(lease.id))?.state, 'revoked');
      assert.equal(await h.queue.pending(), 0);
      assert.equal(audit[0]?.type, 'lease.revoked');
      assert.equal(audit[0]?.attempts, 4);
    });

    it('a retried revoke of an expire-only credential ends not_revocable with its real end, never revoked', async () => {
      const lease = await revokingLease();
      backend.failRevokes = 1;
      backend.expiresOnly = true;
      const role = {
        name: 'fake/r',
        backend: 'fake',
        maxTtlSeconds: 900,
        sensitivity: 'internal' as const,
        environments: [],
        description: '',
        settings: {},
      };
      const { worker: w } = worker({ maxAttempts: 5, roles: new Map([['fake/r', role]]) });
      assert.equal((await w.drainOnce()).retried, 1);
      clock += 10_000;
      assert.equal((await w.drainOnce()).notRevocable, 1);
      const stored = await h.store.getLease(lease.id);
      assert.equal(stored?.state, 'revoke_failed');
      assert.match(stored?.revokeReason ?? '', /^not_revocable: /);
      assert.deepEqual(
        audit.map((e) => [e.type, e.valid_until]),
        [['lease.not_revocable', new Date(FAKE_VALID_UNTIL).toISOString()]],
      );
      assert.equal(await h.queue.pending(), 0);
    });

    it('after maxAttempts marks the lease revoke_failed and audits attempts and the last error', async () => {
      const lease = await revokingLease();
      backend.failRevokes = 100;
      const { worker: w, lines } = worker({ maxAttempts: 3 });
      for (let i = 0; i < 10 && (await h.queue.pending()) > 0; i++) {
        await w.drainOnce();
        clock += 10_000;
      }
      assert.equal(backend.calls, 2, 'the inline attempt counts: 1 + 2 = maxAttempts');
      const stored = await h.store.getLease(lease.id);
      assert.equal(stored?.state, 'revoke_failed');
      assert.equal(await h.queue.pending(), 0);
      assert.deepEqual(audit, [
        {
          type: 'lease.revoke_failed',
          agent: lease.agent,
          lease: lease.id,
          task: lease.taskId,
          role: lease.role,
          environment: lease.environment,
          backend: 'fake',
          reason: 'task_ended',
          attempts: 3,
          // The reason code only: the backend's message (paths, Vault's text) goes to the log.
          error: 'vault_unavailable',
        },
      ]);
      assert.ok(lines.some((l) => l.level === 'error' && /revoke_failed/.test(l.msg)));
      assert.ok(lines.some((l) => JSON.stringify(l).includes('Vault is unavailable (connection refused)')));
      // Still refused downstream: the broker set out to revoke it.
      assert.deepEqual(
        (await h.store.listRevokedUnexpired(clock)).map((l) => l.id),
        [lease.id],
      );
    });

    it('ends a lease still active when its job runs (the broker died between queueing and marking it)', async () => {
      const task = makeTask(clock);
      await h.store.createTask(task);
      const lease = makeLease(task, clock, { backend: 'fake', role: 'fake/r' });
      assert.equal(await h.store.putLease(lease, clock), 'ok');
      await h.queue.enqueue(
        { ...job(lease.id), backendRef: lease.backendRef, expiresAt: lease.expiresAt, attempts: 0 },
        clock,
      );
      const { worker: w } = worker();
      assert.equal((await w.drainOnce()).revoked, 1);
      const ended = await h.store.getLease(lease.id);
      assert.equal(ended?.state, 'revoked');
      assert.equal(ended?.revokeReason, 'task_ended');
      assert.deepEqual(
        (await h.store.listRevokedUnexpired(clock)).map((l) => l.id),
        [lease.id],
      );
      assert.equal(audit[0]?.type, 'lease.revoked');
    });

    it('leaves a lease that already ended some other way as it is', async () => {
      const task = makeTask(clock);
      await h.store.createTask(task);
      const lease = makeLease(task, clock, { backend: 'fake', role: 'fake/r' });
      assert.equal(await h.store.putLease(lease, clock), 'ok');
      await h.store.markLeaseEnded(lease.id, 'expired', 'expired', clock);
      await h.queue.enqueue({ ...job(lease.id), backendRef: lease.backendRef }, clock);
      const { worker: w } = worker();
      assert.equal((await w.drainOnce()).revoked, 1, 'the backend revoke still runs');
      assert.equal((await h.store.getLease(lease.id))?.state, 'expired');
      assert.deepEqual(audit, []);
      assert.equal(await h.queue.pending(), 0);
    });

    it('retries a job whose backend is not configured rather than dropping it', async () => {
      const lease = await revokingLease();
      const { worker: w } = worker({ backends: new Map() });
      assert.equal((await w.drainOnce()).retried, 1);
      assert.match((await h.queue.get(lease.id))?.lastError ?? '', /not configured/);
    });

    it('keeps the job when the audit trail fails, so the revoke_failed event is not lost', async () => {
      const lease = await revokingLease();
      backend.failRevokes = 100;
      let auditDown = true;
      const { worker: w } = worker({
        maxAttempts: 2,
        audit: async (event) => {
          if (auditDown) throw new Error('audit sink down');
          audit.push(event);
        },
      });
      assert.equal((await w.drainOnce()).deferred, 1);
      assert.equal((await h.store.getLease(lease.id))?.state, 'revoking');
      assert.equal(await h.queue.pending(), 1);
      auditDown = false;
      clock += VISIBILITY_MS;
      assert.equal((await w.drainOnce()).failed, 1);
      assert.equal(audit.length, 1);
      assert.equal((await h.store.getLease(lease.id))?.state, 'revoke_failed');
    });

    it('picks up the job of a worker that crashed after claiming it, once the visibility timeout passes', async () => {
      const lease = await revokingLease();
      await h.queue.claimDue(clock, 10); // a worker claims... and dies
      const { worker: w } = worker();
      assert.equal((await w.drainOnce()).revoked, 0);
      clock += VISIBILITY_MS;
      assert.equal((await w.drainOnce()).revoked, 1);
      assert.equal((await h.store.getLease(lease.id))?.state, 'revoked');
    });

    it('two workers draining at once revoke each job once', async () => {
      const leases = [];
      for (let i = 0; i < 12; i++) leases.push(await revokingLease());
      const other = await h.replica();
      const [a, b] = [worker({ batchSize: 2 }).worker, worker({ batchSize: 3 }, other).worker];
      const results = await Promise.all([a.drainOnce(), b.drainOnce()]);
      assert.equal(results[0].revoked + results[1].revoked, 12);
      assert.equal(backend.calls, 12);
      for (const l of leases) assert.equal((await h.store.getLease(l.id))?.state, 'revoked');
    });

    it('start() drains at once and then on every interval; stop() waits for the drain in flight', async () => {
      await revokingLease();
      const { worker: w } = worker({ now: Date.now });
      w.start();
      for (let i = 0; i < 100 && (await h.queue.pending()) > 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(await h.queue.pending(), 0);
      clock = Date.now();
      const second = await revokingLease();
      for (let i = 0; i < 100 && (await h.queue.pending()) > 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal((await h.store.getLease(second.id))?.state, 'revoked');
      await w.stop();
    });

    if (durable) {
      it('resumes pending revocations after a restart (new queue and worker on the same prefix)', async () => {
        const lease = await revokingLease();
        backend.failRevokes = 1;
        const { worker: before } = worker();
        assert.equal((await before.drainOnce()).retried, 1);
        await before.stop();

        // The broker restarts: new Redis connection, new store, queue and worker, same prefix.
        const restarted = await h.replica();
        const { worker: after } = worker({}, restarted);
        clock += 10_000;
        assert.equal((await after.drainOnce()).revoked, 1);
        assert.equal((await restarted.store.getLease(lease.id))?.state, 'revoked');
        assert.equal(await restarted.queue.pending(), 0);
        assert.equal(audit[0]?.attempts, 3);
      });
    }

    describe('jobs a bulk revocation or an orphan claim queued (lease-based on Redis)', () => {
      const REASON = 'admin: incident 7';

      /** `count` active leases of one task, moved to `revoking` by one bulk revocation, due now. */
      async function bulkRevoked(count: number): Promise<Lease[]> {
        const task = makeTask(clock);
        await h.store.createTask(task);
        const leases = Array.from({ length: count }, () =>
          makeLease(task, clock, { backend: 'fake', role: 'fake/r' }),
        );
        for (const lease of leases) assert.equal(await h.store.putLease(lease, clock), 'ok');
        const run = h.store.revokeSelected(
          { taskId: task.id },
          { reason: REASON, at: clock, runAt: clock, pageSize: 100 },
        );
        for await (const _page of run);
        return leases;
      }

      const queuedJob = (lease: Lease, runAt: number) => ({
        leaseId: lease.id,
        backend: 'fake',
        backendRef: lease.backendRef,
        expiresAt: lease.expiresAt,
        reason: REASON,
        attempts: 0,
        runAt,
      });

      it('shows each job as built from its lease, then retries with attempts and the last error, then revokes', async () => {
        const leases = await bulkRevoked(3);
        for (const lease of leases) assert.deepEqual(await h.queue.get(lease.id), queuedJob(lease, clock));
        assert.equal(await h.queue.pending(), 3);

        backend.failRevokes = 1;
        const { worker: w } = worker();
        assert.deepEqual(await w.drainOnce(), {
          revoked: 2,
          notRevocable: 0,
          retried: 1,
          failed: 0,
          deferred: 0,
        });
        const left = await Promise.all(leases.map((l) => h.queue.get(l.id)));
        const retried = left.find((j) => j !== undefined);
        assert.equal(left.filter((j) => j !== undefined).length, 1, 'only the refused one is left');
        const refused = leases.find((l) => l.id === retried?.leaseId);
        assert.ok(retried && refused);
        assert.deepEqual(retried, {
          ...queuedJob(
            refused,
            clock + revocationBackoff(1, { baseDelayMs: 100, maxDelayMs: 1000 }, () => 0.5),
          ),
          attempts: 1,
          lastError: 'vault_unavailable: Vault is unavailable (connection refused)',
        });

        clock = retried.runAt;
        assert.equal((await w.drainOnce()).revoked, 1);
        for (const lease of leases) assert.equal((await h.store.getLease(lease.id))?.state, 'revoked');
        assert.equal(await h.queue.pending(), 0);
        assert.deepEqual(audit.map((e) => [e.type, e.reason, e.attempts]).sort(), [
          ['lease.revoked', REASON, 1],
          ['lease.revoked', REASON, 1],
          ['lease.revoked', REASON, 2],
        ]);
      });

      it('gives a claimed job back after the visibility timeout when its worker died, and revokes it once', async () => {
        const [lease] = await bulkRevoked(1);
        assert.ok(lease);
        const other = await h.replica();
        const [claimed] = await other.queue.claimDue(clock, 10); // a worker claims... and dies
        const { runAt: _runAt, ...expected } = queuedJob(lease, clock);
        assert.deepEqual(claimed, { ...expected, claim: claimed?.claim });
        const { worker: w } = worker();
        assert.equal((await w.drainOnce()).revoked, 0, 'hidden while claimed');
        clock += VISIBILITY_MS;
        assert.equal((await w.drainOnce()).revoked, 1);
        assert.equal(backend.calls, 1);
        assert.equal((await h.store.getLease(lease.id))?.state, 'revoked');
        assert.equal(await h.queue.pending(), 0);
      });

      it("records the broker's inline attempt (a retry without a claim) on the job", async () => {
        const [lease] = await bulkRevoked(1);
        assert.ok(lease);
        assert.equal(await h.queue.retry(lease.id, clock + 500, 1, 'vault_unavailable: down'), true);
        assert.deepEqual(await h.queue.get(lease.id), {
          ...queuedJob(lease, clock + 500),
          attempts: 1,
          lastError: 'vault_unavailable: down',
        });
        assert.deepEqual(await h.queue.claimDue(clock + 499, 10), []);
        assert.equal((await h.queue.claimDue(clock + 500, 10))[0]?.attempts, 1);
      });

      it('keeps the job on a second enqueue, and completes it only without a claim or with its own', async () => {
        const [lease] = await bulkRevoked(1);
        assert.ok(lease);
        assert.equal(await h.queue.enqueue({ ...job(lease.id), attempts: 5 }, clock + 9000), false);
        assert.deepEqual(await h.queue.get(lease.id), queuedJob(lease, clock));
        assert.equal(await h.queue.complete(lease.id, 'a-claim-never-handed-out'), false);
        assert.equal(await h.queue.pending(), 1);
        assert.equal(await h.queue.complete(lease.id), true);
        assert.equal(await h.queue.pending(), 0);
        assert.equal(await h.queue.get(lease.id), undefined);
      });

      it('revokes an orphan claimed by the reaper from the job built from its lease', async () => {
        const task = makeTask(clock);
        await h.store.createTask(task);
        const orphan = makeLease(task, clock, { backend: 'fake', role: 'fake/r', state: 'pending' });
        assert.equal(await h.store.putLease(orphan, clock - 120_000), 'ok');
        const claimed = await h.store.claimOrphanedLeases(clock - 60_000, 10, {
          reason: 'orphaned',
          at: clock,
          runAt: clock,
        });
        assert.deepEqual(
          claimed.map((l) => l.id),
          [orphan.id],
        );
        assert.deepEqual(await h.queue.get(orphan.id), {
          ...queuedJob({ ...orphan, state: 'active' }, clock),
          reason: 'orphaned',
        });
        const { worker: w } = worker();
        assert.equal((await w.drainOnce()).revoked, 1);
        assert.equal((await h.store.getLease(orphan.id))?.state, 'revoked');
        assert.equal(await h.queue.pending(), 0);
      });
    });

    it('refuses nonsensical options', () => {
      assert.throws(() => worker({ maxAttempts: 0 }), RangeError);
      assert.throws(() => worker({ baseDelayMs: 1000, maxDelayMs: 10 }), RangeError);
      assert.throws(() => worker({ intervalMs: -1 }), RangeError);
    });
  });
}

describeWorker('MemoryRevocationQueue', memoryQueueHarness, false);
describeWorker('RedisRevocationQueue', redisQueueHarness, true);
