/**
 * Separation of duties and what admin calls leave behind: an approval is bound to the tool that
 * will use the credential; an approval that no longer meets a raised `@approvals` is never spent;
 * refused admin calls are audited (`admin.denied`) and count as quarantine strikes; successful
 * admin reads are audited (`admin.read`).
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { BrokerAdminClient, BrokerClient } from '../../src/client/broker-client.js';
import type { IssueCredentialRequestMsg } from '../../src/server/broker-proto.js';
import {
  OTHER_AGENT,
  SECURITY,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';

const REASON = 'x-svid-broker-reason';

describe('integration: separation of duties', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  let security: BrokerAdminClient;

  before(async () => {
    h = await startHarness({
      config: {
        approvals: { ttlSeconds: 900, pollMs: 50 },
        quarantine: {
          triggers: { denials: { count: 3, windowSeconds: 60, ttlSeconds: 0, revokeActive: false } },
        },
      },
    });
    [demo, security] = await Promise.all([h.client('demo'), h.adminClient('security')]);
  });
  after(async () => {
    await h?.close();
  });

  const deploy = (taskId: string, extra: Partial<IssueCredentialRequestMsg> = {}) =>
    ({
      task_id: taskId,
      role: 'token/deploy',
      change_type: 'destructive',
      justification: 'roll out v2',
      tool: 'kubectl',
      ...extra,
    }) satisfies Partial<IssueCredentialRequestMsg>;

  const approvedRequest = async (): Promise<{ taskId: string; approvalId: string }> => {
    const taskId = (await demo.beginTask({ environment: 'prod', intent: 'deploy' })).task_id;
    const pending = await demo.issueCredential(deploy(taskId));
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const decided = await security.decideApproval({
      approval_id: pending.approval_id,
      approve: true,
      reason: 'release window',
    });
    assert.equal(decided.outcome, 'approved');
    return { taskId, approvalId: pending.approval_id };
  };

  it('an approval is bound to the tool: the same request from another tool needs its own', async () => {
    const { taskId, approvalId } = await approvedRequest();
    const otherTool = await demo.issueCredential(deploy(taskId, { tool: 'curl' }));
    assert.equal(otherTool.status, 'PENDING_APPROVAL', 'approved for kubectl, not for curl');
    assert.notEqual(otherTool.approval_id, approvalId);
    assert.equal(otherTool.credential, null);
    const issued = await demo.issueCredential(deploy(taskId));
    assert.equal(issued.status, 'ISSUED', 'the approved tool still gets it');
  });

  it('raising @approvals: an approved-but-unspent request is not issued on the old approval', async () => {
    const { taskId, approvalId } = await approvedRequest();
    const file = join(h.dir, 'policies', 'approvals.cedar');
    const original = readFileSync(file, 'utf8');
    assert.match(original, /@approvals\("1"\)/);
    writeFileSync(file, original.replace('@approvals("1")', '@approvals("2")'));
    try {
      assert.equal(h.broker.reloadPolicy().ok, true);
      const again = await demo.issueCredential(deploy(taskId));
      assert.equal(again.status, 'PENDING_APPROVAL');
      assert.equal(again.approvals_required, 2);
      assert.notEqual(again.approval_id, approvalId, 'a new approval, with the new number');
      assert.equal(again.credential, null);
      const records = await readAudit(h.auditFile);
      const requested = records.find(
        (r) => r.type === 'approval.requested' && r.approval === again.approval_id,
      );
      assert.equal(requested?.supersedes, approvalId, 'the audit trail says which approval it replaces');
      assert.ok(!records.some((r) => r.type === 'credential.issued' && r.approval === approvalId));
      // Waiting on the old approval does not issue either.
      const waited = await grpcError(demo.awaitApproval(approvalId, () => undefined, 8000));
      assert.equal(waited.code, status.FAILED_PRECONDITION);
      assert.equal(waited.metadata[REASON], 'approval_required_again');
    } finally {
      writeFileSync(file, original);
      assert.equal(h.broker.reloadPolicy().ok, true);
    }
  });

  it('successful admin reads are audited as admin.read', async () => {
    const { task_id } = await demo.beginTask({ environment: 'dev', intent: 'something to list' });
    const lease = await demo.issueCredential({ task_id, role: 'token/demo' });
    const listed = await security.listLeases({ selector: { task_id } });
    assert.equal(listed.leases.length, 1);
    await security.getLease(lease.lease_id);
    await security.listApprovals({});
    await security.listQuarantines();
    await security.listBreakGlass();
    const reads = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'admin.read' && r.agent === SECURITY,
    );
    const byMethod = new Map(reads.map((r) => [r.method, r]));
    assert.deepEqual(byMethod.get('ListLeases')?.selector, { task_id });
    assert.equal(byMethod.get('ListLeases')?.count, 1);
    assert.equal(byMethod.get('GetLease')?.lease, lease.lease_id);
    for (const m of ['ListApprovals', 'ListQuarantines', 'ListBreakGlass']) {
      assert.ok(byMethod.has(m), `${m} is audited`);
    }
  });

  it('refused admin calls are audited as admin.denied and count as quarantine strikes', async () => {
    const other = await h.adminClient('other');
    const listing = await grpcError(other.listLeases({ selector: { agent: OTHER_AGENT } }));
    assert.equal(listing.code, status.PERMISSION_DENIED);
    const quarantines = await grpcError(other.listQuarantines());
    assert.equal(quarantines.code, status.PERMISSION_DENIED);
    const denied = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'admin.denied' && r.agent === OTHER_AGENT,
    );
    assert.deepEqual(
      denied.map((r) => [r.method, r.action, r.reason]),
      [
        ['ListLeases', 'ListLeases', 'default_deny'],
        ['ListQuarantines', 'ListQuarantines', 'default_deny'],
      ],
    );
    // The third refusal in the window trips the denials trigger: the identity is quarantined.
    const third = await grpcError(other.getLease('00000000-0000-4000-8000-000000000000'));
    assert.equal(third.code, status.PERMISSION_DENIED);
    const set = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'quarantine.set' && r.pattern === OTHER_AGENT,
    );
    assert.equal(set?.trigger, 'denials');
    const after = await grpcError(other.listLeases({ selector: { agent: OTHER_AGENT } }));
    assert.equal(after.metadata[REASON], 'quarantined');
    const refusedQuarantined = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'admin.denied' && r.agent === OTHER_AGENT && r.reason === 'quarantined',
    );
    assert.deepEqual(
      refusedQuarantined.map((r) => r.method),
      ['ListLeases'],
      'a quarantined identity’s admin call is audited too',
    );
    await security.releaseQuarantine({ agent: OTHER_AGENT, reason: 'test over' });
  });
});
