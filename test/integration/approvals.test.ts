import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import type { JSONWebKeySet } from 'jose';
import type { BrokerAdminClient, BrokerClient } from '../../src/client/broker-client.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import type { IssueCredentialRequestMsg } from '../../src/server/broker-proto.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  SECURITY,
  SECURITY_2,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';

const REASON = 'x-svid-broker-reason';
const AWAIT_MS = 8000;

describe('integration: approvals', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  let demoAdmin: BrokerAdminClient;
  let security: BrokerAdminClient;
  let security2: BrokerAdminClient;
  let other: BrokerAdminClient;

  before(async () => {
    h = await startHarness({ config: { approvals: { ttlSeconds: 900, pollMs: 50 } } });
    [demo, demoAdmin, security, security2, other] = await Promise.all([
      h.client('demo'),
      h.adminClient('demo'),
      h.adminClient('security'),
      h.adminClient('security2'),
      h.adminClient('other'),
    ]);
  });
  after(async () => {
    await h?.close();
  });

  const prodTask = async (client: BrokerClient = demo): Promise<string> =>
    (await client.beginTask({ environment: 'prod', intent: 'deploy the release' })).task_id;

  const deploy = (taskId: string, extra: Partial<IssueCredentialRequestMsg> = {}) =>
    ({
      task_id: taskId,
      role: 'token/deploy',
      change_type: 'destructive',
      justification: 'roll out v2',
      ...extra,
    }) satisfies Partial<IssueCredentialRequestMsg>;

  const verifyDeployToken = async (token: string, harness: Harness = h): Promise<void> => {
    const jwks = (await harness.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
    const { claims } = await verifyAccessToken(token, { jwks, issuer: BROKER_ID, audience: 'deploy-api' });
    assert.equal(claims.sub, DEMO_AGENT);
  };

  it('a destructive prod request goes pending, is approved by security, issues once, then needs a new approval', async () => {
    const taskId = await prodTask();
    const pending = await demo.issueCredential(deploy(taskId));
    assert.equal(pending.status, 'PENDING_APPROVAL');
    assert.match(pending.approval_id, /^[0-9a-f-]{36}$/);
    assert.equal(pending.approvals_required, 1);
    assert.equal(pending.approvals_received, 0);
    assert.equal(pending.credential, null);
    assert.equal(pending.lease_id, '');
    assert.ok(pending.policy_ids.includes('prod-destructive-needs-approval'), pending.policy_ids.join());
    const id = pending.approval_id;

    const requested = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'approval.requested' && r.approval === id,
    );
    assert.equal(requested.length, 1);
    assert.equal(requested[0]?.agent, DEMO_AGENT);
    assert.equal(requested[0]?.approvals_required, 1);

    // The same request while pending: the same approval, not a second one.
    const again = await demo.issueCredential(deploy(taskId));
    assert.equal(again.status, 'PENDING_APPROVAL');
    assert.equal(again.approval_id, id);
    assert.equal(
      (await readAudit(h.auditFile)).filter((r) => r.type === 'approval.requested' && r.task === taskId)
        .length,
      1,
    );

    // The requester can never approve its own request.
    const self = await grpcError(demoAdmin.decideApproval({ approval_id: id, approve: true, reason: 'me' }));
    assert.equal(self.code, status.PERMISSION_DENIED);
    assert.equal(self.metadata[REASON], 'self_approval');
    // An agent outside the security group is refused by policy.
    const outsider = await grpcError(other.decideApproval({ approval_id: id, approve: true, reason: 'ok' }));
    assert.equal(outsider.code, status.PERMISSION_DENIED);
    const refused = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'approval.decision_refused' && r.approval === id,
    );
    assert.deepEqual(
      refused.map((r) => r.refusal),
      ['self_approval', 'policy'],
    );

    const decided = await security.decideApproval({
      approval_id: id,
      approve: true,
      reason: 'release window',
    });
    assert.equal(decided.outcome, 'approved');
    assert.equal(decided.approval?.state, 'approved');
    assert.deepEqual(
      decided.approval?.approvals.map((a) => a.approver),
      [SECURITY],
    );

    const issued = await demo.issueCredential(deploy(taskId));
    assert.equal(issued.status, 'ISSUED');
    assert.equal(issued.role, 'token/deploy');
    assert.equal(issued.break_glass, false);
    assert.equal(issued.credential?.kind, 'jwt');
    await verifyDeployToken(issued.credential?.token ?? '');
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.equal(record?.approval, id);
    assert.deepEqual(record?.approvers, [SECURITY]);
    assert.equal(record?.change_type, 'destructive');

    // Single use: the identical request asks again, under a new id.
    const third = await demo.issueCredential(deploy(taskId));
    assert.equal(third.status, 'PENDING_APPROVAL');
    assert.notEqual(third.approval_id, id);
    assert.equal(third.credential, null);
    // The spent approval cannot be decided again.
    const spent = await grpcError(
      security.decideApproval({ approval_id: id, approve: true, reason: 'again' }),
    );
    assert.equal(spent.code, status.FAILED_PRECONDITION);
  });

  it('an approval is bound to the exact request: a changed TTL needs a new one', async () => {
    const taskId = await prodTask();
    const at300 = await demo.issueCredential(deploy(taskId, { ttl_seconds: 300 }));
    assert.equal(at300.status, 'PENDING_APPROVAL');
    await security.decideApproval({ approval_id: at300.approval_id, approve: true, reason: 'ok' });

    const at600 = await demo.issueCredential(deploy(taskId, { ttl_seconds: 600 }));
    assert.equal(at600.status, 'PENDING_APPROVAL');
    assert.notEqual(at600.approval_id, at300.approval_id);
    assert.equal(at600.credential, null);

    // The ttl-300 approval is still there, unused.
    const approved = await security.listApprovals({ state: 'approved' });
    assert.ok(approved.approvals.some((a) => a.approval_id === at300.approval_id));
    const issued = await demo.issueCredential(deploy(taskId, { ttl_seconds: 300 }));
    assert.equal(issued.status, 'ISSUED');
    assert.equal(issued.ttl_seconds, 300);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.equal(record?.approval, at300.approval_id);
  });

  it('AwaitApproval delivers the credential once approved, and the reason when denied', async () => {
    const taskId = await prodTask();
    const pending = await demo.issueCredential(deploy(taskId, { justification: 'await me' }));
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const progress: string[] = [];
    // A deadline, so a stream that never ends fails here instead of at the mocha timeout.
    const waiting = demo.awaitApproval(
      pending.approval_id,
      (p) => progress.push(`${p.state} ${p.approvals_received}/${p.approvals_required}`),
      AWAIT_MS,
    );
    await new Promise((r) => setTimeout(r, 150));
    await security.decideApproval({ approval_id: pending.approval_id, approve: true, reason: 'go' });
    const issued = await waiting;
    assert.equal(issued.status, 'ISSUED');
    assert.equal(issued.task_id, taskId);
    await verifyDeployToken(issued.credential?.token ?? '');
    // The request pending, then approved ahead of the credential (the stream's last message).
    assert.deepEqual(progress, ['pending 0/1', 'approved 1/1']);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.equal(record?.approval, pending.approval_id);

    const toDeny = await demo.issueCredential(deploy(taskId, { justification: 'deny me' }));
    assert.equal(toDeny.status, 'PENDING_APPROVAL');
    const denied = grpcError(demo.awaitApproval(toDeny.approval_id, undefined, AWAIT_MS));
    await new Promise((r) => setTimeout(r, 150));
    const decision = await security.decideApproval({
      approval_id: toDeny.approval_id,
      approve: false,
      reason: 'not during the freeze',
    });
    assert.equal(decision.outcome, 'denied');
    const err = await denied;
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.match(err.details, /not during the freeze/);
    assert.match(err.details, new RegExp(SECURITY));
    assert.equal(err.metadata[REASON], 'approval_denied');
    // A denial closes that request; asking again opens a new one for humans to decide.
    const reopened = await demo.issueCredential(deploy(taskId, { justification: 'deny me' }));
    assert.equal(reopened.status, 'PENDING_APPROVAL');
    assert.notEqual(reopened.approval_id, toDeny.approval_id);
  });

  it('N-of-M: token/admin in prod needs two distinct approvers', async () => {
    const taskId = await prodTask();
    const req = { task_id: taskId, role: 'token/admin', change_type: 'admin', justification: 'rotate keys' };
    const pending = await demo.issueCredential(req);
    assert.equal(pending.status, 'PENDING_APPROVAL');
    assert.equal(pending.approvals_required, 2);
    assert.ok(pending.policy_ids.includes('prod-admin-role-needs-two-approvals'), pending.policy_ids.join());
    const id = pending.approval_id;

    const first = await security.decideApproval({ approval_id: id, approve: true, reason: 'one' });
    assert.equal(first.outcome, 'recorded');
    assert.equal(first.approval?.state, 'pending');
    assert.equal(first.approval?.approvals.length, 1);
    // Not yet: the request is still pending.
    const still = await demo.issueCredential(req);
    assert.equal(still.status, 'PENDING_APPROVAL');
    assert.equal(still.approval_id, id);
    assert.equal(still.approvals_received, 1);

    const dup = await grpcError(security.decideApproval({ approval_id: id, approve: true, reason: 'twice' }));
    assert.equal(dup.code, status.FAILED_PRECONDITION);
    assert.equal(dup.metadata[REASON], 'duplicate_approver');

    const second = await security2.decideApproval({ approval_id: id, approve: true, reason: 'two' });
    assert.equal(second.outcome, 'approved');
    assert.deepEqual(second.approval?.approvals.map((a) => a.approver).sort(), [SECURITY_2, SECURITY].sort());

    const issued = await demo.issueCredential(req);
    assert.equal(issued.status, 'ISSUED');
    assert.equal(issued.role, 'token/admin');
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.deepEqual((record?.approvers as string[]).sort(), [SECURITY_2, SECURITY].sort());
  });

  it('ListApprovals shows security the pending requests and an outsider none', async () => {
    const taskId = await prodTask();
    const pending = await demo.issueCredential(deploy(taskId, { justification: 'list me' }));
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const listed = await security.listApprovals({});
    const mine = listed.approvals.find((a) => a.approval_id === pending.approval_id);
    assert.ok(mine, 'the pending request is listed');
    assert.equal(mine.state, 'pending');
    assert.equal(mine.requester, DEMO_AGENT);
    assert.equal(mine.role, 'token/deploy');
    assert.equal(mine.justification, 'list me');
    assert.equal(mine.approvals_required, 1);
    assert.ok(listed.approvals.every((a) => a.state === 'pending'));
    assert.deepEqual((await other.listApprovals({})).approvals, []);
    const bad = await grpcError(security.listApprovals({ state: 'bogus' }));
    assert.equal(bad.code, status.INVALID_ARGUMENT);
  });

  it('two brokers sharing Redis: requested on A, approved on B, issued on A', async () => {
    const b = await startHarness({ redisPrefix: h.redisPrefix });
    try {
      const securityB = await b.adminClient('security');
      const taskId = await prodTask();
      const pending = await demo.issueCredential(deploy(taskId, { justification: 'across replicas' }));
      assert.equal(pending.status, 'PENDING_APPROVAL');
      assert.ok(
        (await securityB.listApprovals({})).approvals.some((a) => a.approval_id === pending.approval_id),
      );
      const decided = await securityB.decideApproval({
        approval_id: pending.approval_id,
        approve: true,
        reason: 'approved on B',
      });
      assert.equal(decided.outcome, 'approved');
      const issued = await demo.issueCredential(deploy(taskId, { justification: 'across replicas' }));
      assert.equal(issued.status, 'ISSUED');
      await verifyDeployToken(issued.credential?.token ?? '');
      assert.ok((await readAudit(b.auditFile)).some((r) => r.type === 'approval.approved'));
    } finally {
      await b.close();
    }
  });
});

describe('integration: approval expiry', function () {
  this.timeout(20_000);
  let h: Harness;

  before(async () => {
    h = await startHarness({ config: { approvals: { ttlSeconds: 1, pollMs: 50 } } });
  });
  after(async () => {
    await h?.close();
  });

  it('an unanswered request expires: AwaitApproval ends FAILED_PRECONDITION, deciding it is refused', async () => {
    const [demo, security] = await Promise.all([h.client('demo'), h.adminClient('security')]);
    const { task_id } = await demo.beginTask({ environment: 'prod' });
    const pending = await demo.issueCredential({
      task_id,
      role: 'token/deploy',
      change_type: 'destructive',
    });
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const started = Date.now();
    const err = await grpcError(demo.awaitApproval(pending.approval_id, undefined, AWAIT_MS));
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.equal(err.metadata[REASON], 'approval_expired');
    assert.ok(Date.now() - started < 5000);

    const late = await grpcError(
      security.decideApproval({ approval_id: pending.approval_id, approve: true, reason: 'too late' }),
    );
    assert.equal(late.code, status.FAILED_PRECONDITION);
    assert.equal(late.metadata[REASON], 'approval_expired');
    // Expired is not approved: the same request opens a new approval.
    const again = await demo.issueCredential({ task_id, role: 'token/deploy', change_type: 'destructive' });
    assert.equal(again.status, 'PENDING_APPROVAL');
    assert.notEqual(again.approval_id, pending.approval_id);
  });
});
