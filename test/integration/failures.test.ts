/**
 * Failure paths end to end: Redis going away and coming back, the audit trail failing, a lease
 * write failing after the backend minted, and callers that cannot authenticate. Every one must
 * fail closed (no credential leaves the broker), be audited where it can be, and tell the caller
 * why without leaking a stack trace or a file path.
 */
// @peculiar/x509 needs reflect-metadata loaded before it is evaluated; keep this import first.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import {
  Metadata,
  credentials as grpcCredentials,
  status,
  type Client,
  type ServiceError,
} from '@grpc/grpc-js';
import { KeyUsageFlags } from '@peculiar/x509';
import { MemoryAuditSink } from '../../src/audit/memory-sink.js';
import { BrokerClient } from '../../src/client/broker-client.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import { unavailable } from '../../src/errors.js';
import type { X509Svid } from '../../src/identity/types.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { MemoryLeaseStore } from '../../src/leases/memory-lease-store.js';
import type {
  ActivateLeaseResult,
  CreateChildResult,
  Lease,
  LeaseFilter,
  LeasePage,
  LeaseSelector,
  LeaseStore,
  PutLeaseOptions,
  PutLeaseResult,
  RevocationOutcome,
  RevocationPage,
  RevokedToken,
  Task,
  TaskLeaseSummary,
} from '../../src/leases/types.js';
import { loadBrokerProto } from '../../src/server/broker-proto.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { startRedisServer, type RunningRedis } from '../support/redis-server.js';

/** A stack frame line, or something that looks like a source location. */
const STACK_FRAME = /\n\s+at |^\s*at [\w.<>]+ \(/m;
/** A filesystem path (not the path of a SPIFFE ID or URL, which follows `//host`). */
const FILE_PATH = /(?<![:/\w.-])\/(?:[\w.@-]+\/)+[\w.@-]+|\.(?:ts|js|mjs|cjs):\d+|node_modules|file:\/\//;

const checkedDetails: string[] = [];

/** The call fails with `code`, and its details carry no stack frame or file path. */
async function failsWith(
  p: Promise<unknown>,
  code: status,
): Promise<{ code: number; details: string; metadata: Record<string, string> }> {
  const err = await grpcError(p);
  assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
  assert.equal(typeof err.details, 'string');
  assert.ok(err.details.length > 0, 'an error must say why');
  assert.doesNotMatch(err.details, STACK_FRAME, `stack trace in details: ${err.details}`);
  assert.doesNotMatch(err.details, FILE_PATH, `file path in details: ${err.details}`);
  checkedDetails.push(err.details);
  return err;
}

/** A lease store that records created tasks and can be told to fail lease writes. */
class FlakyLeaseStore implements LeaseStore {
  readonly durable = true;
  readonly createdTasks: string[] = [];
  failPuts = false;
  putAttempts = 0;
  constructor(private readonly inner: LeaseStore = new MemoryLeaseStore()) {}
  async createTask(task: Task): Promise<void> {
    await this.inner.createTask(task);
    this.createdTasks.push(task.id);
  }
  getTask(id: string): Promise<Task | undefined> {
    return this.inner.getTask(id);
  }
  createChildTask(task: Task, now: number): Promise<CreateChildResult> {
    return this.inner.createChildTask(task, now);
  }
  listChildTasks(parentId: string): Promise<string[]> {
    return this.inner.listChildTasks(parentId);
  }
  listActiveTasks(agent: string): Promise<Task[]> {
    return this.inner.listActiveTasks(agent);
  }
  endTask(id: string, state: 'ended' | 'expired', reason: string, at: number): Promise<Task | undefined> {
    return this.inner.endTask(id, state, reason, at);
  }
  countActiveTasks(agent: string, now: number): Promise<number> {
    return this.inner.countActiveTasks(agent, now);
  }
  async putLease(lease: Lease, now: number, opts?: PutLeaseOptions): Promise<PutLeaseResult> {
    this.putAttempts++;
    if (this.failPuts) throw unavailable('lease_store_unavailable', 'lease store unavailable');
    return this.inner.putLease(lease, now, opts);
  }
  activateLease(id: string, taskId: string, now: number): Promise<ActivateLeaseResult> {
    return this.inner.activateLease(id, taskId, now);
  }
  claimOrphanedLeases(
    writtenBefore: number,
    limit: number,
    opts: { reason: string; at: number; runAt: number },
  ): Promise<Lease[]> {
    return this.inner.claimOrphanedLeases(writtenBefore, limit, opts);
  }
  pendingLeaseCount(): Promise<number> {
    return this.inner.pendingLeaseCount();
  }
  getLease(id: string): Promise<Lease | undefined> {
    return this.inner.getLease(id);
  }
  getTaskWithSummary(id: string): Promise<{ task: Task; summary: TaskLeaseSummary } | undefined> {
    return this.inner.getTaskWithSummary(id);
  }
  taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary | undefined> {
    return this.inner.taskLeaseSummary(taskId);
  }
  listLeases(filter: LeaseFilter): Promise<Lease[]> {
    return this.inner.listLeases(filter);
  }
  markLeaseEnded(
    id: string,
    state: 'revoking' | 'revoked' | 'expired' | 'revoke_failed',
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    return this.inner.markLeaseEnded(id, state, reason, at);
  }
  markRevokeOutcome(
    id: string,
    outcome: 'revoked' | 'revoke_failed',
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    return this.inner.markRevokeOutcome(id, outcome, reason, at);
  }
  claimExpiredLeases(now: number, limit: number): Promise<Lease[]> {
    return this.inner.claimExpiredLeases(now, limit);
  }
  claimExpiredTasks(now: number, limit: number): Promise<Task[]> {
    return this.inner.claimExpiredTasks(now, limit);
  }
  listRevokedUnexpired(now: number, backend?: string): Promise<Lease[]> {
    return this.inner.listRevokedUnexpired(now, backend);
  }
  listRevokedTokens(since: number, page: { after?: RevokedToken; limit: number }): Promise<RevokedToken[]> {
    return this.inner.listRevokedTokens(since, page);
  }
  scanLeases(selector: LeaseSelector, cursor: string | undefined, pageSize: number): Promise<LeasePage> {
    return this.inner.scanLeases(selector, cursor, pageSize);
  }
  revokeSelected(
    selector: LeaseSelector,
    opts: { reason: string; at: number; runAt: number; pageSize: number },
  ): AsyncGenerator<RevocationPage> {
    return this.inner.revokeSelected(selector, opts);
  }
  completeRevocations(outcomes: readonly RevocationOutcome[], at: number): Promise<Lease[]> {
    return this.inner.completeRevocations(outcomes, at);
  }
  activeLeaseCounts(): Promise<Record<string, number>> {
    return this.inner.activeLeaseCounts();
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

type Audit = Array<Record<string, unknown>>;
const ofType = (records: Audit, type: string): Audit => records.filter((r) => r.type === type);

describe('integration: failures', function () {
  this.timeout(20_000);

  describe('Redis stopped mid-run', () => {
    let redis: RunningRedis;
    let h: Harness;
    before(async () => {
      redis = await startRedisServer();
      h = await startHarness({
        config: { redis: { url: redis.url, prefix: `t${randomBytes(6).toString('hex')}`, store: 'redis' } },
      });
    });
    after(async () => {
      await h?.close();
      await redis?.stop();
    });

    it('fails closed with UNAVAILABLE while Redis is down, loses nothing, and recovers', async () => {
      const client = await h.client('demo');
      const task = await client.beginTask({ environment: 'dev', intent: 'outage' });
      const before = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.ok(before.credential?.token);
      assert.equal((await h.httpJson('/readyz')).status, 200);

      redis.kill();

      // IssueCredential on an existing task: the task read itself fails.
      let started = Date.now();
      const issueErr = await failsWith(
        client.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
        status.UNAVAILABLE,
      );
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      assert.match(issueErr.details, /lease store/);
      assert.equal(issueErr.metadata['x-svid-broker-reason'], 'lease_store_unavailable');

      // A new task cannot be recorded either.
      started = Date.now();
      const beginErr = await failsWith(client.beginTask({ environment: 'dev' }), status.UNAVAILABLE);
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
      assert.equal(beginErr.metadata['x-svid-broker-reason'], 'lease_store_unavailable');

      const down = await h.httpJson('/readyz');
      assert.equal(down.status, 503);
      assert.equal((down.body as { status: string }).status, 'not ready');

      // Only the credential issued before the outage was ever recorded as issued.
      const audit = await readAudit(h.auditFile);
      assert.deepEqual(
        ofType(audit, 'credential.issued').map((r) => r.lease),
        [before.lease_id],
      );
      assert.equal(ofType(audit, 'task.begun').length, 1);
      // ...and both refused attempts were recorded as failures, with the reason.
      const failedIssue = ofType(audit, 'credential.failed').at(-1);
      assert.equal(failedIssue?.code, 'UNAVAILABLE');
      assert.equal(failedIssue?.reason, 'lease_store_unavailable');
      assert.equal(failedIssue?.role, 'token/demo');
      const failedBegin = ofType(audit, 'task.failed').at(-1);
      assert.equal(failedBegin?.reason, 'lease_store_unavailable');
      assert.equal(failedBegin?.environment, 'dev');

      await redis.restart();
      await eventually(async () => (await h.httpJson('/readyz')).status === 200, 10_000);

      // Nothing written before the outage was lost.
      const lease = await h.broker.store.getLease(before.lease_id);
      assert.equal(lease?.state, 'active');
      assert.equal(lease?.taskId, task.task_id);
      assert.equal((await h.broker.store.getTask(task.task_id))?.state, 'active');

      // And issuance works again, on the old task and on a new one.
      const after = await eventually(() =>
        client.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
      );
      assert.ok(after.credential?.token);
      const task2 = await client.beginTask({ environment: 'dev' });
      assert.ok(
        (await client.issueCredential({ task_id: task2.task_id, role: 'token/demo' })).credential?.token,
      );
      const leases = await h.broker.store.listLeases({ taskId: task.task_id });
      assert.deepEqual(leases.map((l) => l.id).sort(), [before.lease_id, after.lease_id].sort());
    });
  });

  describe('audit trail failing', () => {
    let sink: MemoryAuditSink;
    let store: FlakyLeaseStore;
    let h: Harness;
    before(async () => {
      sink = new MemoryAuditSink();
      store = new FlakyLeaseStore();
      h = await startHarness({ audit: sink, store });
    });
    after(async () => h?.close());

    it('refuses IssueCredential with UNAVAILABLE and revokes the lease it created', async () => {
      const client = await h.client('demo');
      const task = await client.beginTask({ environment: 'dev', intent: 'audit' });
      const ok = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.ok(ok.credential?.token);
      const recorded = sink.records.length;

      sink.failWrites(new Error('disk full'));
      const err = await failsWith(
        client.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
        status.UNAVAILABLE,
      );
      assert.match(err.details, /audit trail/);
      assert.equal(err.metadata['x-svid-broker-reason'], 'audit_unavailable');
      assert.doesNotMatch(err.details, /disk full/);
      assert.equal(sink.records.length, recorded, 'nothing was recorded');

      const leases = await h.broker.store.listLeases({ taskId: task.task_id });
      assert.equal(leases.length, 2);
      const failed = leases.find((l) => l.id !== ok.lease_id);
      assert.ok(failed);
      assert.equal(failed.state, 'revoked');
      assert.equal(failed.revokeReason, 'audit_unavailable');
      const active = await h.broker.store.listLeases({ taskId: task.task_id, state: 'active' });
      assert.deepEqual(
        active.map((l) => l.id),
        [ok.lease_id],
      );
      // The token that was minted but never handed out is on the denylist verifiers fetch.
      const revoked = await h.httpJson('/v1/revoked');
      const jtis = (revoked.body as { revoked: Array<{ jti: string }> }).revoked.map((r) => r.jti);
      assert.ok(jtis.includes(failed.backendRef), 'the unreturned token is denylisted');
    });

    it('refuses BeginTask with UNAVAILABLE and leaves the task unusable', async () => {
      const client = await h.client('demo');
      const created = store.createdTasks.length;
      const err = await failsWith(
        client.beginTask({ environment: 'dev', intent: 'unrecorded' }),
        status.UNAVAILABLE,
      );
      assert.match(err.details, /audit trail/);
      assert.equal(store.createdTasks.length, created + 1, 'the store saw the task');
      const taskId = store.createdTasks.at(-1) as string;
      const task = await h.broker.store.getTask(taskId);
      assert.equal(task?.state, 'ended');
      assert.equal(task?.endReason, 'audit_unavailable');
      const puts = store.putAttempts;
      const use = await failsWith(
        client.issueCredential({ task_id: taskId, role: 'token/demo' }),
        status.FAILED_PRECONDITION,
      );
      assert.equal(use.metadata['x-svid-broker-reason'], 'task_ended');
      assert.equal(store.putAttempts, puts, 'no lease was attempted for the unrecorded task');
    });
  });

  describe('lease write failing after the backend issued', () => {
    let store: FlakyLeaseStore;
    let h: Harness;
    before(async () => {
      store = new FlakyLeaseStore();
      h = await startHarness({ store });
    });
    after(async () => h?.close());

    it('returns UNAVAILABLE, no credential, and the lease id is active nowhere', async () => {
      const client = await h.client('demo');
      const task = await client.beginTask({ environment: 'dev', intent: 'lease write' });
      store.failPuts = true;
      const err = await failsWith(
        client.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
        status.UNAVAILABLE,
      );
      assert.equal(err.metadata['x-svid-broker-reason'], 'lease_store_unavailable');
      assert.equal(store.putAttempts, 1, 'the backend minted and the lease write was attempted');

      const audit = await readAudit(h.auditFile);
      const failed = ofType(audit, 'credential.failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0]?.stage, 'lease_store');
      assert.equal(failed[0]?.task, task.task_id);
      assert.equal(failed[0]?.agent, DEMO_AGENT);
      assert.equal(ofType(audit, 'credential.issued').length, 0);
      const leaseId = failed[0]?.lease as string;
      assert.match(leaseId, /^[0-9a-f-]{36}$/);

      assert.equal(await h.broker.store.getLease(leaseId), undefined);
      assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id }), []);
      assert.ok(!(await h.broker.store.listLeases({ state: 'active' })).some((l) => l.id === leaseId));

      // The store recovers: the next request goes through.
      store.failPuts = false;
      const ok = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.ok(ok.credential?.token);
      assert.notEqual(ok.lease_id, leaseId);
    });
  });

  describe('unauthenticated callers', () => {
    let h: Harness;
    const opened: Array<{ close(): void }> = [];
    before(async () => {
      h = await startHarness();
    });
    after(async () => {
      for (const c of opened) c.close();
      await h?.close();
    });

    const clientWithSvid = (svid: X509Svid): BrokerClient => {
      const client = new BrokerClient({
        address: h.address,
        svid,
        serverBundle: h.ca.x509Bundle(),
        brokerId: BROKER_ID,
      });
      opened.push(client);
      return client;
    };

    const lastDenial = async (): Promise<Record<string, unknown>> => {
      const denied = ofType(await readAudit(h.auditFile), 'auth.denied');
      assert.ok(denied.length > 0, 'an auth.denied record was written');
      return denied.at(-1) as Record<string, unknown>;
    };

    it('refuses a caller with no client certificate and no bearer token', async () => {
      const { Client } = loadBrokerProto();
      const roots = Buffer.from(derToPem(h.ca.rootDer));
      const raw = new Client(
        h.address,
        grpcCredentials.createSsl(roots, null, null, { checkServerIdentity: () => undefined }),
        {
          'grpc.ssl_target_name_override': 'svid-broker',
        },
      ) as unknown as Client & {
        BeginTask(req: object, md: Metadata, opts: object, cb: (err: ServiceError | null) => void): void;
      };
      opened.push(raw);
      const call = new Promise<void>((resolve, reject) =>
        raw.BeginTask({ environment: 'dev' }, new Metadata(), { deadline: Date.now() + 5000 }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      const err = await failsWith(call, status.UNAUTHENTICATED);
      assert.equal(err.metadata['x-svid-broker-reason'], 'no_credentials');
      const denial = await lastDenial();
      assert.equal(denial.reason, 'no_credentials');
      assert.equal(denial.method, 'BeginTask');
      assert.equal(denial.agent, '');
    });

    it('refuses a bearer JWT-SVID signed by a key the bundle does not hold', async () => {
      const rogue = await LocalCa.create('example.org');
      // The rogue CA's own kid: not in the example.org bundle.
      const unknownKid = await h.ca.mintJwtSvid(DEMO_AGENT, BROKER_ID, { signWith: rogue });
      const c1 = await h.client('demo', { auth: { kind: 'jwt', token: () => unknownKid } });
      const e1 = await failsWith(c1.beginTask({ environment: 'dev' }), status.UNAUTHENTICATED);
      assert.equal(e1.metadata['x-svid-broker-reason'], 'unknown_kid');
      const d1 = await lastDenial();
      assert.equal(d1.reason, 'unknown_kid');
      assert.equal(d1.agent, '', 'an unverified sub is never recorded as the agent');

      // The trusted kid, a rogue signature.
      const forgedSig = await h.ca.mintJwtSvid(DEMO_AGENT, BROKER_ID, { signWith: rogue, kid: h.ca.jwtKid });
      const c2 = await h.client('demo', { auth: { kind: 'jwt', token: () => forgedSig } });
      const e2 = await failsWith(c2.beginTask({ environment: 'dev' }), status.UNAUTHENTICATED);
      assert.equal(e2.metadata['x-svid-broker-reason'], 'bad_signature');
      assert.equal((await lastDenial()).reason, 'bad_signature');
    });

    it('refuses an expired client X.509-SVID', async () => {
      const expired = await h.ca.issueX509Svid(DEMO_AGENT, {
        notBefore: new Date(Date.now() - 2 * 3600_000),
        notAfter: new Date(Date.now() - 60_000),
      });
      const client = clientWithSvid(expired);
      // The broker requests but does not require a client certificate, so the handshake completes
      // and the chain check refuses it, with a reason the audit trail can record.
      const err = await failsWith(client.beginTask({ environment: 'dev' }), status.UNAUTHENTICATED);
      assert.match(err.details, /expired/);
      assert.equal(err.metadata['x-svid-broker-reason'], 'svid_expired');
      const denial = await lastDenial();
      assert.equal(denial.reason, 'svid_expired');
      assert.equal(denial.method, 'BeginTask');
    });

    it('refuses a client certificate whose key usage breaks the SVID rules', async () => {
      const signer = await h.ca.issueX509Svid(DEMO_AGENT, {
        keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign,
      });
      const e1 = await failsWith(
        clientWithSvid(signer).beginTask({ environment: 'dev' }),
        status.UNAUTHENTICATED,
      );
      assert.equal(e1.metadata['x-svid-broker-reason'], 'bad_key_usage');
      assert.equal((await lastDenial()).reason, 'bad_key_usage');

      const notCritical = await h.ca.issueX509Svid(DEMO_AGENT, { keyUsageCritical: false });
      const e2 = await failsWith(
        clientWithSvid(notCritical).beginTask({ environment: 'dev' }),
        status.UNAUTHENTICATED,
      );
      assert.equal(e2.metadata['x-svid-broker-reason'], 'bad_key_usage');

      const ca = await h.ca.issueX509Svid(DEMO_AGENT, { isCa: true });
      const e3 = await failsWith(
        clientWithSvid(ca).beginTask({ environment: 'dev' }),
        status.UNAUTHENTICATED,
      );
      assert.equal(e3.metadata['x-svid-broker-reason'], 'leaf_is_ca');

      // A well-formed SVID from the same CA is accepted: the refusals were about the rules.
      const good = await h.ca.issueX509Svid(DEMO_AGENT);
      const task = await clientWithSvid(good).beginTask({ environment: 'dev' });
      assert.equal(task.agent, DEMO_AGENT);
    });
  });

  describe('error details', () => {
    it('carried no stack frame or file path in any case above', () => {
      // Each case asserted its own; this guards against the cases silently not running.
      assert.ok(checkedDetails.length >= 12, `only ${checkedDetails.length} error details were checked`);
      for (const d of checkedDetails) {
        assert.doesNotMatch(d, STACK_FRAME);
        assert.doesNotMatch(d, FILE_PATH);
      }
    });
  });
});
