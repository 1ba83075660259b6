/**
 * Two-phase leases and the orphan reconciler: a lease whose issuance never finished (the broker
 * was SIGKILLed between the lease write and the audit record, or the lease write landed after its
 * caller had given up) is `pending`, never `active`, and the reaper of a surviving broker revokes
 * it and records `lease.orphaned`.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { MemoryAuditSink } from '../../src/audit/memory-sink.js';
import type { AuditEventInput, AuditRecord } from '../../src/audit/types.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import type { Lease, LeaseStore } from '../../src/leases/types.js';
import { eventually, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { rawRedis } from '../support/lease-store-harness.js';
import { randomPrefix, sharedRedis } from '../support/redis-server.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** Starts test/support/stalling-broker.ts; its stdout lines arrive through `lines`. */
async function stallingChild(
  configFile: string,
): Promise<{ child: ChildProcess; port: number; next: () => Promise<string> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/stalling-broker.ts', configFile], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const queue: string[] = [];
  const waiters: Array<(line: string) => void> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter(line);
    else queue.push(line);
  });
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const queued = queue.shift();
      if (queued !== undefined) return resolve(queued);
      const timer = setTimeout(() => reject(new Error('no line from the child broker in 30 s')), 30_000);
      waiters.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const first = await next();
  const match = /^serving (\d+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line from the child broker: ${first}`);
  return { child, port: Number(match[1]), next };
}

const orphanedRecord = async (h: Harness, leaseId: string): Promise<Record<string, unknown> | undefined> =>
  (await readAudit(h.auditFile)).find((r) => r.type === 'lease.orphaned' && r.lease === leaseId);

describe('integration: orphaned leases', function () {
  this.timeout(90_000);

  describe('the broker killed between the lease write and the audit record', () => {
    let h: Harness;
    let child: ChildProcess | undefined;

    before(async () => {
      h = await startHarness({
        config: { reaper: { intervalMs: 100, batchSize: 100, orphanAfterMs: 2000 } },
      });
    });
    after(async () => {
      child?.kill('SIGKILL');
      await h?.close();
    });

    it("leaves a pending lease that the survivor's reaper revokes and records as lease.orphaned", async () => {
      const configFile = join(h.dir, 'stalling.json');
      writeFileSync(
        configFile,
        JSON.stringify(h.configFor(join(h.dir, 'policies'), join(h.dir, 'child.jsonl'))),
      );
      const started = await stallingChild(configFile);
      child = started.child;
      const demo = await h.clientsAt(`127.0.0.1:${started.port}`).client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'crash drill', ttl_seconds: 600 });
      const call = demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });

      const line = await started.next();
      const leaseId = /^lease-written (\S+)$/.exec(line)?.[1];
      assert.ok(leaseId, `unexpected line: ${line}`);
      child.kill('SIGKILL');
      assert.equal((await grpcError(call)).code, status.UNAVAILABLE, 'no credential left the killed broker');

      const atKill = await h.broker.store.getLease(leaseId);
      assert.equal(atKill?.state, 'pending', 'written, never activated');
      assert.equal(await orphanedRecord(h, leaseId), undefined);

      const record = await eventually(() => orphanedRecord(h, leaseId), 20_000);
      assert.equal(record.outcome, 'revoked');
      assert.equal(record.task, task.task_id);
      assert.equal(record.role, 'token/demo');
      const after = await h.broker.store.getLease(leaseId);
      assert.equal(after?.state, 'revoked');
      assert.equal(after?.revokeReason, 'orphaned');
      const denied = await h.broker.store.listRevokedUnexpired(Date.now(), 'token');
      assert.ok(
        denied.some((l) => l.id === leaseId),
        'its token is on the deny list verifiers read',
      );
      assert.equal(await h.broker.store.pendingLeaseCount(), 0);
    });
  });

  describe('a lease write that lands after its caller gave up', () => {
    let h: Harness;
    let pauseNextPut = false;
    const redisClients: Array<{ quit(): Promise<unknown> }> = [];

    /** The harness's Redis store, whose next putLease first pauses Redis writes past the command timeout. */
    function pausingStore(inner: LeaseStore, pause: () => Promise<unknown>): LeaseStore {
      return new Proxy(inner, {
        get(target, prop, receiver) {
          if (prop !== 'putLease') return Reflect.get(target, prop, receiver) as unknown;
          return async (...args: Parameters<LeaseStore['putLease']>) => {
            if (pauseNextPut) {
              pauseNextPut = false;
              await pause();
            }
            return target.putLease(...args);
          };
        },
      });
    }

    before(async () => {
      const server = await sharedRedis();
      const prefix = randomPrefix();
      const admin = await rawRedis(server.url);
      redisClients.push(admin);
      const store = new RedisLeaseStore(createRedisClient(server.url, { commandTimeoutMs: 500 }), { prefix });
      // DEBUG SLEEP is refused on hardened servers; CLIENT PAUSE WRITE holds every write (and every
      // script) for 3 s, so the put-lease times out at the broker and runs afterwards.
      const paused = pausingStore(store, () => admin.call('CLIENT', 'PAUSE', '3000', 'WRITE'));
      h = await startHarness({
        store: paused,
        redisPrefix: prefix,
        config: { reaper: { intervalMs: 100, batchSize: 100, orphanAfterMs: 6000 } },
      });
    });
    after(async () => {
      await h?.close();
      await Promise.all(redisClients.map((c) => c.quit().catch(() => undefined)));
    });

    it('lands as pending, never active, and is swept as an orphan', async () => {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'slow redis', ttl_seconds: 600 });
      pauseNextPut = true;
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.UNAVAILABLE);
      const failed = (await readAudit(h.auditFile)).find(
        (r) => r.type === 'credential.failed' && r.stage === 'lease_store',
      );
      const leaseId = failed?.lease as string | undefined;
      assert.ok(leaseId, 'the failure names the lease it tried to write');

      const landed: Lease = await eventually(async () => h.broker.store.getLease(leaseId), 10_000);
      assert.equal(landed.state, 'pending', 'the late write landed, but not as an active lease');

      const record = await eventually(() => orphanedRecord(h, leaseId), 20_000);
      assert.equal(record.outcome, 'revoked');
      assert.equal((await h.broker.store.getLease(leaseId))?.state, 'revoked');
      assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id, state: 'active' }), []);
    });
  });

  describe('a task that ends while its lease is pending', () => {
    let h: Harness;
    /** Ends the task behind the broker's back once the issuance record is written (before activation). */
    class EndTaskOnIssued extends MemoryAuditSink {
      override async write(event: AuditEventInput): Promise<AuditRecord> {
        const record = await super.write(event);
        if (event.type === 'credential.issued') {
          await h.broker.store.endTask(String(event.task), 'ended', 'ended meanwhile', Date.now());
        }
        return record;
      }
    }
    const audit = new EndTaskOnIssued();

    before(async () => {
      h = await startHarness({ audit });
    });
    after(() => h?.close());

    it('is never activated: the call is refused and the lease revoked, no credential leaves', async () => {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'race the end', ttl_seconds: 600 });
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.metadata['x-svid-broker-reason'], 'task_not_active');
      const issued = audit.records.find((r) => r.type === 'credential.issued');
      const leaseId = issued?.lease as string;
      assert.equal((await h.broker.store.getLease(leaseId))?.state, 'revoked');
      assert.ok(audit.records.some((r) => r.type === 'lease.revoked' && r.lease === leaseId));
      assert.ok(audit.records.some((r) => r.type === 'credential.denied' && r.task === task.task_id));
    });
  });
});
