/**
 * Every audit record type is written by the path that causes it, with the fields the catalogue's
 * example shows (src/audit/event-examples.ts). One broker is driven through the paths a client can
 * reach (tasks, credentials, approvals, break-glass, admin reads and refusals, quarantine, bulk
 * revocation, policy reload, failed authentication); the paths that need an outage, a crash, a
 * second replica or a cloud are proved by the integration test named in PROVED_ELSEWHERE, which
 * must exist and assert on that type. A type in the catalogue that neither proves fails the test.
 */
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { AUDIT_EVENT_EXAMPLES, CALL_FIELDS, ENVELOPE_FIELDS } from '../../src/audit/event-examples.js';
import { AUDIT_EVENT_TYPES, type AuditEventType } from '../../src/audit/event-types.js';
import { packageRoot } from '../../src/package-root.js';
import { grpcError, readAudit, startHarness, SECURITY, type Harness } from '../support/broker-harness.js';
import { startCloudBroker } from '../support/cloud-broker.js';

/**
 * The types this file cannot reach from a client in one broker, and the test that proves each:
 * that file must mention the type as a string literal in an assertion (checked below).
 */
export const PROVED_ELSEWHERE: Partial<Record<AuditEventType, string>> = {
  'task.failed': 'test/integration/failures.test.ts',
  'credential.failed': 'test/integration/failures.test.ts',
  'lease.expired': 'test/integration/issuance.test.ts',
  'lease.revoke_queued': 'test/integration/vault.test.ts',
  'lease.revoke_failed': 'test/integration/vault.test.ts',
  'lease.orphaned': 'test/integration/orphan-reconciler.test.ts',
  'access.evaluated': 'test/integration/authzen.test.ts',
  'budget.exceeded': 'test/integration/budgets.test.ts',
  'policy.reload_failed': 'test/integration/policy-reload.test.ts',
  'policy.synced': 'test/integration/incident.test.ts',
  'policy.directory_differs': 'test/integration/shared-state.test.ts',
  'replica.entry_refused': 'test/integration/shared-state.test.ts',
  'audit.recovered': 'test/integration/audit-disk-full.test.ts',
  'audit.repaired': 'test/integration/audit-disk-full.test.ts',
  'approval.reminder': 'test/integration/notifications.test.ts',
  'approval.expired': 'test/integration/notifications.test.ts',
  'task.delegated': 'test/integration/delegation.test.ts',
  'task.delegation_denied': 'test/integration/delegation.test.ts',
  'task.delegation_failed': 'test/integration/delegation.test.ts',
  'human.signed_in': 'test/integration/console.test.ts',
  'human.signed_out': 'test/integration/console.test.ts',
  'human.sign_in_failed': 'test/integration/console.test.ts',
};

/** Fields a record of `type` may carry that its example does not show. */
function undocumentedFields(type: AuditEventType, record: Record<string, unknown>): string[] {
  const { example, also = [] } = AUDIT_EVENT_EXAMPLES[type];
  return Object.keys(record).filter(
    (k) => !(k in example) && !also.includes(k) && !ENVELOPE_FIELDS.includes(k) && !CALL_FIELDS.includes(k),
  );
}

describe('integration: every audit event type, from the path that causes it', function () {
  this.timeout(60_000);
  const seen = new Map<string, Record<string, unknown>[]>();
  const collect = async (h: Harness): Promise<void> => {
    for (const r of await readAudit(h.auditFile)) {
      const list = seen.get(r.type as string) ?? [];
      list.push(r);
      seen.set(r.type as string, list);
    }
  };

  before(async () => {
    const h = await startHarness({ config: { approvals: { ttlSeconds: 900, pollMs: 50 } } });
    try {
      await drive(h);
      await collect(h);
    } finally {
      await h.close();
    }
    const cloud = await startCloudBroker();
    try {
      await driveCloud(cloud.h);
      await collect(cloud.h);
    } finally {
      await cloud.close();
    }
    // For whoever updates the examples: SVB_AUDIT_SAMPLES=FILE writes one record of each type seen.
    const dump = process.env.SVB_AUDIT_SAMPLES;
    if (dump)
      writeFileSync(dump, JSON.stringify(Object.fromEntries([...seen].map(([t, l]) => [t, l])), null, 2));
  });

  it('the catalogue and the examples list the same types', () => {
    assert.deepEqual(Object.keys(AUDIT_EVENT_EXAMPLES).sort(), Object.keys(AUDIT_EVENT_TYPES).sort());
  });

  it('every type is either written here or proved by the test named for it', () => {
    const missing = Object.keys(AUDIT_EVENT_TYPES).filter(
      (t) => !seen.has(t) && PROVED_ELSEWHERE[t as AuditEventType] === undefined,
    );
    assert.deepEqual(missing, [], `no path in this test or PROVED_ELSEWHERE writes: ${missing.join(', ')}`);
  });

  it('each test named in PROVED_ELSEWHERE exists and asserts on its type', () => {
    for (const [type, file] of Object.entries(PROVED_ELSEWHERE)) {
      const text = readFileSync(join(packageRoot(), file), 'utf8');
      assert.ok(text.includes(`'${type}'`), `${file} never names '${type}'`);
    }
  });

  it('every record written here carries only fields its example (or its `also` list) names', () => {
    const problems: string[] = [];
    for (const [type, records] of seen) {
      for (const r of records) {
        const extra = undocumentedFields(type as AuditEventType, r);
        if (extra.length) problems.push(`${type}: ${extra.join(', ')} not in its example`);
      }
    }
    assert.deepEqual([...new Set(problems)], []);
  });

  it('every field of an example is one a record of that type carried here (types written here)', () => {
    const problems: string[] = [];
    for (const [type, records] of seen) {
      const written = new Set(records.flatMap((r) => Object.keys(r)));
      const { example } = AUDIT_EVENT_EXAMPLES[type as AuditEventType];
      for (const field of Object.keys(example)) {
        if (!written.has(field)) problems.push(`${type}.${field}`);
      }
    }
    assert.deepEqual(problems, [], 'example fields no record of that type carried in this run');
  });
});

/** Drives one broker through every path a client can reach; refusals are expected. */
async function drive(h: Harness): Promise<void> {
  const [demo, other, demoAdmin, security, security2] = await Promise.all([
    h.client('demo'),
    h.client('other'),
    h.adminClient('demo'),
    h.adminClient('security'),
    h.adminClient('security2'),
  ]);
  // Tasks and credentials: begun, roles listed, issued, denied, ended (lease revoked).
  const task = await demo.beginTask({ environment: 'dev', intent: 'catalogue', context: { tool_name: 'x' } });
  await demo.listRoles(task.task_id);
  const issued = await demo.issueCredential({
    task_id: task.task_id,
    role: 'token/demo',
    context: { plan: 'p' },
  });
  await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/nope' }));
  await grpcError(demo.beginTask({ environment: 'qa' }));
  // Approvals: requested, approved, denied, a refused decision (self-approval).
  const prod = await demo.beginTask({ environment: 'prod', intent: 'deploy' });
  const deploy = { task_id: prod.task_id, role: 'token/deploy', change_type: 'destructive' };
  const p1 = await demo.issueCredential({ ...deploy, justification: 'one' });
  await grpcError(demoAdmin.decideApproval({ approval_id: p1.approval_id, approve: true, reason: 'me' }));
  await security.decideApproval({ approval_id: p1.approval_id, approve: true, reason: 'ok' });
  await demo.issueCredential({ ...deploy, justification: 'one' });
  const p2 = await demo.issueCredential({ ...deploy, justification: 'two' });
  await security.decideApproval({ approval_id: p2.approval_id, approve: false, reason: 'no' });
  // Break-glass: granted, denied (self-grant), reviewed by another.
  const otherId = `spiffe://example.org/agents/other`;
  const grant = await security.breakGlass({
    agent: otherId,
    roles: ['token/logs-read'],
    reason: 'INC-1',
    ttl_seconds: 60,
  });
  await grpcError(
    security.breakGlass({ agent: SECURITY, roles: ['token/logs-read'], reason: 'me', ttl_seconds: 60 }),
  );
  await grpcError(
    security.breakGlass({ agent: otherId, roles: ['token/customer-data'], reason: 'x', ttl_seconds: 60 }),
  );
  await security2.reviewBreakGlass({ grant_id: grant.grant_id, note: 'fine' });
  // Admin: reads, a refusal (demo is no admin), a dry run and a revocation by selector.
  await security.listLeases({ selector: { agent: otherId } });
  await security.getLease(issued.lease_id);
  await grpcError(demoAdmin.listLeases({ selector: { agent: otherId } }));
  const selector = { task_id: prod.task_id };
  await security.revokeLeases({ selector, reason: 'drill', dry_run: true });
  await security.revokeLeases({ selector, reason: 'drill' });
  // Quarantine: set and released.
  const q = await security.quarantine({ agent: otherId, reason: 'INC-2' });
  assert.ok(q.quarantine);
  await security.releaseQuarantine({ agent: otherId, reason: 'cleared' });
  // The task ends: its lease is revoked.
  await demo.endTask({ task_id: task.task_id, reason: 'done' });
  // A policy reload (a new file in the policy directory), and a refused authentication.
  writeFileSync(
    join(h.dir, 'policies', 'added.cedar'),
    '@id("added") forbid (principal, action, resource) when { false };\n',
  );
  assert.ok(h.broker.reloadPolicy().ok);
  const bad = await h.client('demo', { auth: { kind: 'jwt', token: () => 'not-a-jwt-at-all' } });
  assert.equal((await grpcError(bad.beginTask({ environment: 'dev' }))).code, status.UNAUTHENTICATED);
  await other.beginTask({ environment: 'dev' });
}

/** The AWS incident lever: a session that cannot be revoked, the deny policy, and its refusal. */
async function driveCloud(h: Harness): Promise<void> {
  const demo = await h.client('demo');
  const security = await h.adminClient('security');
  const task = await demo.beginTask({ environment: 'dev', intent: 'cloud' });
  await demo.issueCredential({ task_id: task.task_id, role: 'aws/deploy', ttl_seconds: 900 });
  await security.revokeLeases({
    selector: { role: 'aws/deploy' },
    reason: 'leaked',
    deny_older_sessions: true,
  });
  const refused = await grpcError(
    security.revokeLeases({
      selector: { role: 'github/repo-writer' },
      reason: 'x',
      deny_older_sessions: true,
    }),
  );
  assert.equal(refused.code, status.INVALID_ARGUMENT);
}
