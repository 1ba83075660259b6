/**
 * /metrics on the ops listener of a whole broker (real gRPC, real Redis): counters move with what
 * the audit trail records, gauges with the shared stores, and nothing secret is exposed.
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

/** Beside the dev roles: a role no policy permits (default deny). */
const EXTRA_ROLES = { 'token/other': { audience: 'other-api', scope: 'other:read' } };

type Labels = Record<string, string>;

/** The value of one series in an exposition, or undefined when it has none. */
function sample(text: string, name: string, labels: Labels = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Labels = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[l[1] as string] = l[2] as string;
    const same =
      Object.keys(got).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => got[k] === v);
    if (same) return m[3] === 'Nan' ? Number.NaN : Number(m[3]);
  }
  return undefined;
}

describe('integration: metrics', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;

  before(async () => {
    h = await startHarness({ config: { roles: EXTRA_ROLES } });
    demo = await h.client('demo');
  });
  after(async () => h?.close());

  const scrape = async (): Promise<string> => {
    const res = await fetch(`${h.httpBase}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return res.text();
  };

  it('counts issuance, denials and revocations, and reports pending approvals and active leases', async () => {
    const issued = { backend: 'token', role: 'token/demo' };
    const denied = { action: 'IssueCredential', reason: 'default_deny' };
    const revoked = { backend: 'token', outcome: 'revoked' };
    const start = await scrape();
    assert.equal(sample(start, 'svid_broker_credentials_issued_total', issued), 0);
    assert.equal(sample(start, 'svid_broker_revocations_total', revoked), 0);
    assert.equal(sample(start, 'svid_broker_denials_total', denied), undefined);
    assert.equal(sample(start, 'svid_broker_active_leases', { backend: 'token' }), 0);
    assert.equal(sample(start, 'svid_broker_pending_approvals'), 0);
    assert.equal(sample(start, 'svid_broker_pending_revocations'), 0);
    // Default process metrics are still there.
    assert.ok(sample(start, 'process_cpu_user_seconds_total') !== undefined);

    // Issue one credential.
    const task = await demo.beginTask({ environment: 'dev', intent: 'read the demo api' });
    const credential = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const token = credential.credential?.token ?? '';
    assert.ok(token.length > 20);
    const afterIssue = await scrape();
    assert.equal(sample(afterIssue, 'svid_broker_credentials_issued_total', issued), 1);
    assert.equal(sample(afterIssue, 'svid_broker_active_leases', { backend: 'token' }), 1);
    assert.equal(
      sample(afterIssue, 'svid_broker_requests_total', { method: 'IssueCredential', code: 'OK' }),
      1,
    );
    assert.equal(sample(afterIssue, 'svid_broker_request_seconds_count', { method: 'IssueCredential' }), 1);

    // Be denied once (no policy permits token/other).
    const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/other' }));
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.equal(sample(await scrape(), 'svid_broker_denials_total', denied), 1);

    // A destructive prod request waits for a human.
    const prod = await demo.beginTask({ environment: 'prod', intent: 'deploy the release' });
    const pending = await demo.issueCredential({
      task_id: prod.task_id,
      role: 'token/deploy',
      change_type: 'destructive',
      justification: 'roll out v2',
    });
    assert.equal(pending.status, 'PENDING_APPROVAL');
    assert.equal(sample(await scrape(), 'svid_broker_pending_approvals'), 1);

    // Revoke: ending the task revokes its lease at the backend.
    const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
    assert.deepEqual(
      ended.revoked.map((r) => r.state),
      ['revoked'],
    );
    const end = await scrape();
    assert.equal(sample(end, 'svid_broker_revocations_total', revoked), 1);
    assert.equal(sample(end, 'svid_broker_active_leases', { backend: 'token' }), 0);
    assert.equal(sample(end, 'svid_broker_pending_revocations'), 0);
    assert.equal(sample(end, 'svid_broker_credentials_issued_total', issued), 1, 'counters only grow');

    // The counters say what the audit trail says.
    const audit = await readAudit(h.auditFile);
    const count = (type: string): number => audit.filter((r) => r.type === type).length;
    assert.equal(count('credential.issued'), 1);
    assert.equal(count('credential.denied'), 1);
    assert.equal(count('lease.revoked'), 1);

    // Every gauge is exposed (quarantines and feed lag as wired in main.ts).
    for (const name of ['svid_broker_active_quarantines', 'svid_broker_invalidation_feed_lag_seconds']) {
      assert.ok(sample(end, name) !== undefined, `${name} is exposed`);
    }
    assert.ok(!end.includes(token), 'the credential never reaches the metrics');
    assert.ok(!end.includes('spiffe://'), 'no SPIFFE ID is a label value');
    assert.ok(!end.includes(task.task_id), 'no task id is a label value');
  });
});
