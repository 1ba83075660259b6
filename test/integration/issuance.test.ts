import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import type { JSONWebKeySet } from 'jose';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import { fromTimestamp } from '../../src/server/broker-proto.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { sharedRedis } from '../support/redis-server.js';

const REASON = 'x-svid-broker-reason';
const FIELD = 'x-svid-broker-field';
const POLICIES = 'x-svid-broker-policies';

/** Roles added beside the dev role token/demo (max 900 s, dev only, aud demo-api, scope demo:read). */
const EXTRA_ROLES = {
  // No policy permits it: default deny.
  'token/other': { audience: 'other-api', scope: 'other:read' },
  // Permitted for demo by the test policy, but restricted to staging: the shipped forbid decides in dev.
  'token/staging-only': { environments: ['staging'], audience: 'staging-api', scope: 'staging:read' },
  // Permitted for demo; a lease that runs out long before its task.
  'token/short': { maxTtlSeconds: 1, audience: 'short-api', scope: 'short:read' },
};

const TEST_POLICIES = `
@id("test-demo-staging-only")
permit (
  principal == Agent::"spiffe://example.org/agents/demo",
  action == Action::"IssueCredential",
  resource == Role::"token/staging-only"
);

@id("test-demo-short")
permit (
  principal == Agent::"spiffe://example.org/agents/demo",
  action == Action::"IssueCredential",
  resource == Role::"token/short"
);
`;

const TASK_MAX_TTL = 1800;

/** A stack trace in a message: "at fn (/path/file.ts:1:2)" or "at /path/file.js:1:2". */
const STACK_TRACE = /\bat (?:\S+ \()?(?:file:\/\/)?\/[^\s)]+\.[cm]?[jt]s:\d+/;

describe('integration: issuance', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  const errorDetails: string[] = [];

  const failing = async (p: Promise<unknown>): Promise<Awaited<ReturnType<typeof grpcError>>> => {
    const err = await grpcError(p);
    errorDetails.push(err.details);
    return err;
  };

  const jwks = async (): Promise<JSONWebKeySet> => {
    const res = await h.httpJson('/.well-known/jwks.json');
    assert.equal(res.status, 200);
    return res.body as JSONWebKeySet;
  };

  before(async () => {
    h = await startHarness({
      config: { roles: EXTRA_ROLES, tasks: { defaultTtlSeconds: 900, maxTtlSeconds: TASK_MAX_TTL } },
      extraPolicies: TEST_POLICIES,
    });
    demo = await h.client('demo');
  });
  after(async () => h?.close());

  describe('issue over mTLS', () => {
    it('returns a token that verifies against the JWKS with the expected claims, a lease and audit records', async () => {
      const task = await demo.beginTask({
        environment: 'dev',
        intent: 'read the demo api',
        ttl_seconds: 1200,
      });
      assert.equal(task.agent, DEMO_AGENT);
      assert.equal(task.environment, 'dev');
      assert.equal(task.state, 'active');
      const taskExp = fromTimestamp(task.expires_at);

      const before = Date.now();
      // More than the role max (900): bounded to the role max.
      const issued = await demo.issueCredential({
        task_id: task.task_id,
        role: 'token/demo',
        ttl_seconds: 5000,
      });
      assert.equal(issued.ttl_seconds, 900);
      assert.equal(issued.role, 'token/demo');
      assert.equal(issued.task_id, task.task_id);
      assert.equal(issued.environment, 'dev');
      assert.deepEqual(issued.policy_ids, ['demo-agent-token-demo-dev']);
      const token = issued.credential?.token ?? '';
      assert.equal(issued.credential?.kind, 'jwt');
      assert.equal(issued.credential?.metadata.aud, 'demo-api');
      assert.equal(issued.credential?.metadata.scope, 'demo:read');

      const { claims, kid } = await verifyAccessToken(token, {
        jwks: await jwks(),
        issuer: BROKER_ID,
        audience: 'demo-api',
      });
      assert.equal(kid, issued.credential?.metadata.kid);
      assert.equal(claims.iss, BROKER_ID);
      assert.equal(claims.sub, DEMO_AGENT);
      assert.equal(claims.aud, 'demo-api');
      assert.equal(claims.scope, 'demo:read');
      assert.equal(claims.task, task.task_id);
      assert.equal(claims.env, 'dev');
      assert.equal(claims.role, 'token/demo');
      assert.equal(claims.jti, issued.lease_id);
      assert.equal(claims.exp - claims.iat, 900);
      assert.ok(claims.iat >= Math.floor(before / 1000) - 1 && claims.iat <= Math.ceil(Date.now() / 1000));
      assert.ok(claims.exp * 1000 <= taskExp, 'token outlives its task');
      assert.equal(fromTimestamp(issued.expires_at), claims.exp * 1000);
      // Another audience is refused by a verifier.
      await assert.rejects(
        verifyAccessToken(token, { jwks: await jwks(), issuer: BROKER_ID, audience: 'other-api' }),
        /access token rejected/,
      );

      const lease = await h.broker.store.getLease(issued.lease_id);
      assert.ok(lease, 'lease recorded');
      assert.equal(lease.agent, DEMO_AGENT);
      assert.equal(lease.taskId, task.task_id);
      assert.equal(lease.environment, 'dev');
      assert.equal(lease.role, 'token/demo');
      assert.equal(lease.backend, 'token');
      assert.equal(lease.state, 'active');
      assert.equal(lease.backendRef, claims.jti);
      assert.equal(lease.expiresAt, claims.exp * 1000);

      const audit = await readAudit(h.auditFile);
      const begun = audit.find((r) => r.type === 'task.begun' && r.task === task.task_id);
      assert.ok(begun, 'task.begun audited');
      assert.equal(begun.agent, DEMO_AGENT);
      assert.equal(begun.environment, 'dev');
      assert.equal(begun.ttl_seconds, 1200);
      assert.equal(begun.auth_method, 'x509');
      const rec = audit.find((r) => r.type === 'credential.issued' && r.lease === issued.lease_id);
      assert.ok(rec, 'credential.issued audited');
      assert.equal(rec.agent, DEMO_AGENT);
      assert.equal(rec.role, 'token/demo');
      assert.equal(rec.environment, 'dev');
      assert.equal(rec.task, task.task_id);
      assert.equal(rec.ttl_seconds, 900);
      assert.deepEqual(rec.policy_ids, ['demo-agent-token-demo-dev']);
      assert.match(String(rec.policy_digest), /\S{16,}/);
      const auditText = await readFile(h.auditFile, 'utf8');
      assert.ok(!auditText.includes(token), 'the token is in the audit file');
      assert.ok(
        !auditText.includes(token.split('.')[2] as string),
        'the token signature is in the audit file',
      );
      assert.ok(!h.logs.text().includes(token), 'the token is in the logs');
    });

    it('bounds the credential to a short task', async () => {
      const task = await demo.beginTask({ environment: 'dev', ttl_seconds: 30 });
      const taskExp = fromTimestamp(task.expires_at);
      const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.ok(issued.ttl_seconds <= 30 && issued.ttl_seconds >= 28, `ttl ${issued.ttl_seconds}`);
      const { claims } = await verifyAccessToken(issued.credential?.token ?? '', {
        jwks: await jwks(),
        issuer: BROKER_ID,
        audience: 'demo-api',
      });
      assert.ok(claims.exp * 1000 <= taskExp, 'token outlives its task');
      assert.ok(claims.exp - claims.iat <= 30);
      const lease = await h.broker.store.getLease(issued.lease_id);
      assert.ok(lease && lease.expiresAt <= taskExp);
    });

    it('caps the task TTL at tasks.maxTtlSeconds and applies the default', async () => {
      const long = await demo.beginTask({ environment: 'dev', ttl_seconds: 7200 });
      const created = fromTimestamp(long.created_at);
      assert.equal(fromTimestamp(long.expires_at) - created, TASK_MAX_TTL * 1000);
      const stored = await h.broker.store.getTask(long.task_id);
      assert.equal(stored?.expiresAt, fromTimestamp(long.expires_at));
      const dflt = await demo.beginTask({ environment: 'dev' });
      assert.equal(fromTimestamp(dflt.expires_at) - fromTimestamp(dflt.created_at), 900 * 1000);
    });
  });

  describe('JWT-SVID', () => {
    it('issues without a client certificate', async () => {
      const client = await h.jwtClient('demo');
      const task = await client.beginTask({ environment: 'dev' });
      assert.equal(task.agent, DEMO_AGENT);
      const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      const { claims } = await verifyAccessToken(issued.credential?.token ?? '', {
        jwks: await jwks(),
        issuer: BROKER_ID,
        audience: 'demo-api',
      });
      assert.equal(claims.sub, DEMO_AGENT);
      const audit = await readAudit(h.auditFile);
      const rec = audit.find((r) => r.type === 'credential.issued' && r.lease === issued.lease_id);
      assert.equal(rec?.auth_method, 'jwt');
    });

    it('refuses a JWT-SVID for another audience', async () => {
      const client = await h.jwtClient('demo', 'spiffe://example.org/not-the-broker');
      const err = await failing(client.beginTask({ environment: 'dev' }));
      assert.equal(err.code, status.UNAUTHENTICATED);
      const audit = await readAudit(h.auditFile);
      assert.ok(audit.some((r) => r.type === 'auth.denied' && r.method === 'BeginTask'));
    });
  });

  describe('EndTask', () => {
    it('revokes the leases, lists them as revoked, audits, and refuses a second end or new issuance', async () => {
      const task = await demo.beginTask({ environment: 'dev' });
      const a = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      const b = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo', ttl_seconds: 60 });
      const expOf = async (token: string): Promise<number> =>
        (await verifyAccessToken(token, { jwks: await jwks(), issuer: BROKER_ID, audience: 'demo-api' }))
          .claims.exp;
      const expA = await expOf(a.credential?.token ?? '');
      const expB = await expOf(b.credential?.token ?? '');

      const res = await demo.endTask({ task_id: task.task_id, reason: 'done' });
      assert.equal(res.task?.state, 'ended');
      assert.deepEqual(
        [...res.revoked].sort((x, y) => x.lease_id.localeCompare(y.lease_id)),
        [
          { lease_id: a.lease_id, role: 'token/demo', state: 'revoked' },
          { lease_id: b.lease_id, role: 'token/demo', state: 'revoked' },
        ].sort((x, y) => x.lease_id.localeCompare(y.lease_id)),
      );
      for (const id of [a.lease_id, b.lease_id]) {
        const lease = await h.broker.store.getLease(id);
        assert.equal(lease?.state, 'revoked');
        assert.equal(lease?.revokeReason, 'task_ended');
      }
      assert.equal((await h.broker.store.getTask(task.task_id))?.state, 'ended');

      const revoked = await h.httpJson('/v1/revoked');
      assert.equal(revoked.status, 200);
      const body = revoked.body as {
        revoked: Array<{ jti: string; exp: number }>;
        next_cursor: string | null;
      };
      const list = body.revoked;
      assert.equal(list.find((r) => r.jti === a.lease_id)?.exp, expA);
      assert.equal(list.find((r) => r.jti === b.lease_id)?.exp, expB);
      assert.ok(list.every((r) => Object.keys(r).sort().join() === 'exp,jti'));
      assert.equal(body.next_cursor, null);
      // A verifier that consults the list refuses the token.
      await assert.rejects(
        verifyAccessToken(a.credential?.token ?? '', {
          jwks: await jwks(),
          issuer: BROKER_ID,
          audience: 'demo-api',
          revokedJtis: new Set(list.map((r) => r.jti)),
        }),
        /revoked/,
      );

      const audit = await readAudit(h.auditFile);
      for (const id of [a.lease_id, b.lease_id]) {
        const rec = audit.find((r) => r.type === 'lease.revoked' && r.lease === id);
        assert.ok(rec, `lease.revoked for ${id}`);
        assert.equal(rec.task, task.task_id);
        assert.equal(rec.reason, 'task_ended');
      }
      const ended = audit.find((r) => r.type === 'task.ended' && r.task === task.task_id);
      assert.ok(ended, 'task.ended audited');
      assert.equal(ended.reason, 'done');
      assert.deepEqual([...(ended.revoked_leases as string[])].sort(), [a.lease_id, b.lease_id].sort());

      const again = await failing(demo.endTask({ task_id: task.task_id }));
      assert.equal(again.code, status.FAILED_PRECONDITION);
      assert.equal(again.metadata[REASON], 'task_ended');
      const issue = await failing(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(issue.code, status.FAILED_PRECONDITION);
      assert.equal(issue.metadata[REASON], 'task_ended');
    });
  });

  describe('ownership', () => {
    it("refuses another agent's IssueCredential, EndTask and GetTask on demo's task", async () => {
      const task = await demo.beginTask({ environment: 'dev' });
      const other = await h.client('other');
      const calls = [
        other.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
        other.endTask({ task_id: task.task_id }),
        other.getTask({ task_id: task.task_id }),
      ];
      for (const call of calls) {
        const err = await failing(call);
        assert.equal(err.code, status.FAILED_PRECONDITION);
        assert.equal(err.metadata[REASON], 'task_not_yours');
      }
      // Untouched: still demo's, still active, no lease.
      const stored = await demo.getTask({ task_id: task.task_id });
      assert.equal(stored.state, 'active');
      assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id }), []);
    });
  });

  describe('errors', () => {
    let taskId: string;
    before(async () => {
      taskId = (await demo.beginTask({ environment: 'dev' })).task_id;
    });

    it('INVALID_ARGUMENT naming the field', async () => {
      const cases: Array<[Promise<unknown>, string]> = [
        [demo.beginTask({ environment: 'qa' }), 'environment'],
        [demo.beginTask({ environment: '' }), 'environment'],
        [demo.issueCredential({ task_id: taskId, role: 'demo' }), 'role'],
        [demo.issueCredential({ task_id: taskId, role: 'Token/demo!' }), 'role'],
        [demo.issueCredential({ task_id: taskId, role: 'token/nope' }), 'role'],
        [demo.issueCredential({ task_id: taskId, role: 'token/demo', sensitivity: 'secret' }), 'sensitivity'],
        [demo.issueCredential({ task_id: taskId, role: 'token/demo', change_type: 'delete' }), 'change_type'],
        [demo.issueCredential({ task_id: 'not-a-task', role: 'token/demo' }), 'task_id'],
        [demo.getTask({ task_id: 'abc' }), 'task_id'],
        [demo.endTask({ task_id: '' }), 'task_id'],
      ];
      for (const [call, field] of cases) {
        const err = await failing(call);
        assert.equal(err.code, status.INVALID_ARGUMENT, `${field}: ${err.details}`);
        assert.equal(err.metadata[FIELD], field);
        assert.ok(err.details.startsWith(`${field}: `), err.details);
      }
      const unknownEnv = await failing(demo.beginTask({ environment: 'qa' }));
      assert.match(unknownEnv.details, /unknown environment \(configured: dev, staging, prod\)/);
      const unknownRole = await failing(demo.issueCredential({ task_id: taskId, role: 'token/nope' }));
      assert.match(unknownRole.details, /unknown role "token\/nope"/);
      // Nothing was issued for the task.
      assert.deepEqual(await h.broker.store.listLeases({ taskId }), []);
    });

    it('INVALID_ARGUMENT naming the free-text field that carries a control or bidi character', async () => {
      // A newline, a C1 control or a bidi override would let an agent draw a fake row in an
      // approver's table; every field an agent writes in its own words is checked.
      const issue = (extra: Record<string, string>): Promise<unknown> =>
        demo.issueCredential({ task_id: taskId, role: 'token/demo', ...extra });
      const cases: Array<[Promise<unknown>, string]> = [
        [demo.beginTask({ environment: 'dev', intent: 'deploy\nAPPROVED' }), 'intent'],
        [demo.beginTask({ environment: 'dev', labels: { ticket: 'INC-1\u202e' } }), 'labels.ticket'],
        [
          issue({ justification: 'routine\n0190  approved  spiffe://example.org/agents/demo' }),
          'justification',
        ],
        [issue({ justification: 'look \u2066right\u2069' }), 'justification'],
        [issue({ tool: 'kubectl\u0085' }), 'tool'],
        [issue({ tool: 'kubectl\u200f' }), 'tool'],
        [demo.endTask({ task_id: taskId, reason: 'done\r\nforged' }), 'reason'],
      ];
      for (const [call, field] of cases) {
        const err = await failing(call);
        assert.equal(err.code, status.INVALID_ARGUMENT, `${field}: ${err.details}`);
        assert.equal(err.metadata[FIELD], field);
        assert.match(err.details, /must not contain control or bidi characters/);
      }
      assert.deepEqual(await h.broker.store.listLeases({ taskId }), []);
      assert.equal((await demo.getTask({ task_id: taskId })).state, 'active');
    });

    it('NOT_FOUND for an unknown task', async () => {
      for (const call of [
        demo.issueCredential({ task_id: randomUUID(), role: 'token/demo' }),
        demo.getTask({ task_id: randomUUID() }),
        demo.endTask({ task_id: randomUUID() }),
      ]) {
        const err = await failing(call);
        assert.equal(err.code, status.NOT_FOUND);
        assert.equal(err.metadata[REASON], 'task_not_found');
      }
    });

    it('PERMISSION_DENIED by default deny when no policy permits the role', async () => {
      const err = await failing(demo.issueCredential({ task_id: taskId, role: 'token/other' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /default deny/);
      assert.equal(err.metadata[REASON], 'default_deny');
      assert.equal(err.metadata[POLICIES], undefined);
      const audit = await readAudit(h.auditFile);
      const rec = audit.find(
        (r) => r.type === 'credential.denied' && r.role === 'token/other' && r.task === taskId,
      );
      assert.ok(rec, 'credential.denied audited');
      assert.equal(rec.decision, 'deny');
      assert.deepEqual(rec.policy_ids, []);
    });

    it('PERMISSION_DENIED naming the forbid and its reason when a role is used outside its environments', async () => {
      const err = await failing(demo.issueCredential({ task_id: taskId, role: 'token/staging-only' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /"forbid-role-outside-its-environments"/);
      assert.match(err.details, /role is not allowed in this environment/);
      assert.equal(err.metadata[POLICIES], 'forbid-role-outside-its-environments');
      assert.equal(err.metadata[REASON], 'policy_denied');
      const audit = await readAudit(h.auditFile);
      const rec = audit.find((r) => r.type === 'credential.denied' && r.role === 'token/staging-only');
      assert.deepEqual(rec?.policy_ids, ['forbid-role-outside-its-environments']);
      assert.deepEqual(rec?.policy_reasons, ['role is not allowed in this environment']);
      // The test permit does work where the forbid does not apply.
      const staging = await demo.beginTask({ environment: 'staging' });
      const ok = await demo.issueCredential({ task_id: staging.task_id, role: 'token/staging-only' });
      assert.deepEqual(ok.policy_ids, ['test-demo-staging-only']);
      assert.equal(ok.credential?.metadata.aud, 'staging-api');
    });

    it('PERMISSION_DENIED for BeginTask in an environment no policy permits', async () => {
      // Only the demo agent may work in prod (begin-task-demo-prod); any other agent is default-denied.
      const other = await h.client('other');
      const err = await failing(other.beginTask({ environment: 'prod' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
      assert.match(err.details, /default deny/);
    });

    it('no error detail carries a stack trace', () => {
      assert.ok(errorDetails.length >= 20, `only ${errorDetails.length} errors collected`);
      for (const details of errorDetails) {
        assert.ok(details.length > 0);
        assert.doesNotMatch(details, STACK_TRACE);
        assert.doesNotMatch(details, /\n\s+at /);
        assert.doesNotMatch(details, /node_modules|\/src\/|\.ts:\d/);
      }
    });
  });

  describe('expiry', () => {
    it('expires a task at its TTL, revokes its lease, and refuses issuance afterwards', async () => {
      const shortTask = await demo.beginTask({ environment: 'dev', ttl_seconds: 2 });
      const inTask = await demo.issueCredential({ task_id: shortTask.task_id, role: 'token/demo' });
      assert.ok(inTask.ttl_seconds <= 2);
      // In parallel: a lease whose own TTL (role max 1 s) ends long before its task.
      const longTask = await demo.beginTask({ environment: 'dev' });
      const short = await demo.issueCredential({
        task_id: longTask.task_id,
        role: 'token/short',
        ttl_seconds: 600,
      });
      assert.equal(short.ttl_seconds, 1);

      const task = await eventually(async () => {
        const t = await h.broker.store.getTask(shortTask.task_id);
        return t?.state === 'expired' ? t : undefined;
      }, 6000);
      assert.equal(task.endReason, 'expired');
      const lease = await eventually(async () => {
        const l = await h.broker.store.getLease(inTask.lease_id);
        return l && l.state !== 'active' ? l : undefined;
      });
      assert.ok(['revoked', 'expired'].includes(lease.state), lease.state);
      const ended = await eventually(async () =>
        (await readAudit(h.auditFile)).find((r) => r.type === 'task.ended' && r.task === shortTask.task_id),
      );
      assert.equal(ended.reason, 'expired');
      assert.equal(ended.agent, DEMO_AGENT);

      const err = await failing(demo.issueCredential({ task_id: shortTask.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.FAILED_PRECONDITION);
      const got = await failing(demo.getTask({ task_id: shortTask.task_id }));
      assert.equal(got.code, status.FAILED_PRECONDITION);

      const shortLease = await eventually(async () => {
        const l = await h.broker.store.getLease(short.lease_id);
        return l?.state === 'expired' ? l : undefined;
      });
      assert.equal(shortLease.taskId, longTask.task_id);
      const expired = await eventually(async () =>
        (await readAudit(h.auditFile)).find((r) => r.type === 'lease.expired' && r.lease === short.lease_id),
      );
      assert.equal(expired.role, 'token/short');
      assert.equal(expired.task, longTask.task_id);
      // Its task lives on.
      assert.equal((await demo.getTask({ task_id: longTask.task_id })).state, 'active');
    });
  });
});

describe('integration: reaper after a restart', function () {
  this.timeout(30_000);
  const harnesses: Harness[] = [];
  after(async () => {
    for (const x of harnesses) await x.close();
  });

  it('a new broker on the same Redis prefix expires what ran out while no broker ran', async () => {
    const first = await startHarness();
    harnesses.push(first);
    const demo = await first.client('demo');
    const task = await demo.beginTask({ environment: 'dev', ttl_seconds: 2 });
    const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    await first.broker.close();

    const taskExp = fromTimestamp(task.expires_at);
    await new Promise((r) => setTimeout(r, Math.max(0, taskExp - Date.now()) + 300));

    // Nothing reaped it while no broker ran.
    const redis = createRedisClient((await sharedRedis()).url);
    const peek = new RedisLeaseStore(redis, { prefix: first.redisPrefix });
    try {
      assert.equal((await peek.getTask(task.task_id))?.state, 'active');
      assert.equal((await peek.getLease(issued.lease_id))?.state, 'active');
    } finally {
      await peek.close();
    }

    const second = await startHarness({ redisPrefix: first.redisPrefix });
    harnesses.push(second);
    const expiredTask = await eventually(async () => {
      const t = await second.broker.store.getTask(task.task_id);
      return t?.state === 'expired' ? t : undefined;
    });
    assert.equal(expiredTask.agent, DEMO_AGENT);
    const lease = await eventually(async () => {
      const l = await second.broker.store.getLease(issued.lease_id);
      // `revoking` is the step between: wait for where the revocation ends.
      return l && l.state !== 'active' && l.state !== 'revoking' ? l : undefined;
    });
    assert.ok(['revoked', 'expired'].includes(lease.state), lease.state);
    const audit = await eventually(async () => {
      const records = await readAudit(second.auditFile);
      return records.some((r) => r.type === 'task.ended' && r.task === task.task_id) ? records : undefined;
    });
    const ended = audit.find((r) => r.type === 'task.ended' && r.task === task.task_id);
    assert.equal(ended?.reason, 'expired');
    assert.ok(
      audit.some(
        (r) => (r.type === 'lease.expired' || r.type === 'lease.revoked') && r.lease === issued.lease_id,
      ),
      'lease end audited by the new broker',
    );
  });
});
