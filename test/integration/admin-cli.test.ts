import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { packageRoot } from '../../src/package-root.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  OTHER_AGENT,
  SECURITY,
  SECURITY_2,
  eventually,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { runCli, type CliResult } from '../support/run-cli.js';

interface PendingOutput {
  status: string;
  approval_id: string;
  approvals_required: number;
  policy_ids: string[];
  task: { task_id: string; environment: string };
}

interface IssuedOutput {
  status: string;
  task: { task_id: string };
  lease_id: string;
  role: string;
  credential: { kind: string; token: string };
}

interface GrantOutput {
  grant_id: string;
  agent: string;
  roles: string[];
  uses: number;
  reviewed: boolean;
  reviewed_by?: string;
  review_note?: string;
}

const DEPLOY = ['--role', 'token/deploy', '--change-type', 'destructive'];

describe('integration: approvals and break-glass CLI', function () {
  this.timeout(40_000);
  let h: Harness;

  const cli = (workload: string, args: string[]): Promise<CliResult> =>
    runCli(args, { SPIFFE_ENDPOINT_SOCKET: h.endpoints[workload], SVID_BROKER_ADDR: h.address });

  const verifyDeploy = async (token: string): Promise<void> => {
    const jwks = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
    const { claims } = await verifyAccessToken(token, { jwks, issuer: BROKER_ID, audience: 'deploy-api' });
    assert.equal(claims.sub, DEMO_AGENT);
  };

  before(async () => {
    h = await startHarness({ config: { approvals: { ttlSeconds: 900, pollMs: 50 } } });
  });
  after(async () => {
    await h?.close();
  });

  it('request goes pending (exit 3), approvals list/approve, the same request then issues; --wait prints the credential once approved', async () => {
    const security = await h.adminClient('security');
    // The --wait run starts beside the plain one, and is approved once it shows up.
    const waiting = cli('demo', [
      'request',
      '--env',
      'prod',
      ...DEPLOY,
      '--justification',
      'waiting',
      '--wait',
    ]);
    const pendingRun = await cli('demo', ['request', '--env', 'prod', ...DEPLOY]);
    assert.equal(pendingRun.code, 3, pendingRun.stderr);
    const pending = JSON.parse(pendingRun.stdout) as PendingOutput;
    assert.equal(pending.status, 'pending_approval');
    assert.match(pending.approval_id, /^[0-9a-f-]{36}$/);
    assert.equal(pending.approvals_required, 1);
    assert.ok(pending.policy_ids.includes('prod-destructive-needs-approval'));
    assert.equal(pending.task.environment, 'prod');
    assert.match(pendingRun.stderr, new RegExp(`approvals approve ${pending.approval_id}`));
    const id = pending.approval_id;

    const waitingId = await eventually(async () => {
      const { approvals } = await security.listApprovals({});
      return approvals.find((a) => a.justification === 'waiting')?.approval_id;
    }, 15_000);
    await security.decideApproval({ approval_id: waitingId, approve: true, reason: 'approved in-process' });

    const [table, json] = await Promise.all([
      cli('security', ['approvals', 'list']),
      cli('security', ['approvals', 'list', '--json']),
    ]);
    assert.equal(table.code, 0, table.stderr);
    const header = table.stdout.split('\n')[0] ?? '';
    assert.match(header, /^APPROVAL\s+STATE\s+REQUESTER\s+ROLE/);
    const row = table.stdout.split('\n').find((l) => l.startsWith(id));
    assert.ok(row, table.stdout);
    assert.match(row, /pending\s+spiffe:\/\/example\.org\/agents\/demo\s+token\/deploy\s+prod\s+destructive/);
    assert.match(row, /0\/1/);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout) as Array<{
      approval_id: string;
      state: string;
      requester: string;
    }>;
    const entry = listed.find((a) => a.approval_id === id);
    assert.equal(entry?.state, 'pending');
    assert.equal(entry?.requester, DEMO_AGENT);

    const approve = await cli('security', ['approvals', 'approve', id, '--reason', 'ok']);
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, new RegExp(`^${id}: approved`));
    assert.match(approve.stdout, /\(1\/1 approvals\)/);

    const issuedRun = await cli('demo', ['request', '--task', pending.task.task_id, ...DEPLOY]);
    assert.equal(issuedRun.code, 0, issuedRun.stderr);
    const issued = JSON.parse(issuedRun.stdout) as IssuedOutput;
    assert.equal(issued.status, 'issued');
    assert.equal(issued.task.task_id, pending.task.task_id);
    assert.equal(issued.role, 'token/deploy');
    await verifyDeploy(issued.credential.token);
    const record = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.equal(record?.approval, id);
    assert.deepEqual(record?.approvers, [SECURITY]);

    const waited = await waiting;
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.stderr, new RegExp(`pending approval ${waitingId}: waiting`));
    const fromWait = JSON.parse(waited.stdout) as IssuedOutput;
    assert.equal(fromWait.status, 'issued');
    await verifyDeploy(fromWait.credential.token);
    const waitRecord = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === fromWait.lease_id,
    );
    assert.equal(waitRecord?.approval, waitingId);
  });

  it('breakglass grant, list and review with --json', async () => {
    const grantRun = await cli('security', [
      'breakglass',
      'grant',
      '--agent',
      OTHER_AGENT,
      '--role',
      'token/logs-read',
      '--reason',
      'incident 7',
      '--ttl',
      '600',
      '--json',
    ]);
    assert.equal(grantRun.code, 0, grantRun.stderr);
    const grant = JSON.parse(grantRun.stdout) as GrantOutput;
    assert.equal(grant.agent, OTHER_AGENT);
    assert.deepEqual(grant.roles, ['token/logs-read']);
    assert.equal(grant.reviewed, false);

    const other = await h.client('other');
    const { task_id } = await other.beginTask({ environment: 'dev' });
    const used = await other.issueCredential({ task_id, role: 'token/logs-read' });
    assert.equal(used.break_glass, true);

    const [listRun, denied] = await Promise.all([
      cli('security', ['breakglass', 'list', '--json']),
      cli('other', ['breakglass', 'list', '--json']),
    ]);
    assert.equal(listRun.code, 0, listRun.stderr);
    const listed = JSON.parse(listRun.stdout) as GrantOutput[];
    assert.deepEqual(
      listed.map((g) => [g.grant_id, g.uses]),
      [[grant.grant_id, 1]],
    );
    assert.equal(denied.code, 1);
    assert.equal(denied.stdout, '');
    assert.match(denied.stderr, /^svid-broker: .*denied/);

    // The grantor cannot review its own grant: a second security identity does.
    const review = ['breakglass', 'review', grant.grant_id, '--note', 'checked: one logs token', '--json'];
    const ownReview = await cli('security', review);
    assert.equal(ownReview.code, 1);
    assert.match(ownReview.stderr, /you granted it/);
    const reviewRun = await cli('security2', review);
    assert.equal(reviewRun.code, 0, reviewRun.stderr);
    const reviewed = JSON.parse(reviewRun.stdout) as GrantOutput;
    assert.equal(reviewed.reviewed, true);
    assert.equal(reviewed.reviewed_by, SECURITY_2);
    assert.equal(reviewed.review_note, 'checked: one logs token');
    assert.deepEqual((await (await h.adminClient('security')).listBreakGlass()).grants, []);
  });

  it('policy validate and policy test on the shipped set', async () => {
    const cases = join(packageRoot(), 'policies', 'cases.yaml');
    const [validate, test] = await Promise.all([
      cli('demo', ['policy', 'validate', 'policies']),
      existsSync(cases) ? cli('demo', ['policy', 'test', 'policies', 'policies/cases.yaml']) : undefined,
    ]);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /^ok: \d+ policies, digest [0-9a-f]+/);
    if (test) {
      assert.equal(test.code, 0, test.stdout + test.stderr);
      assert.match(test.stdout, /\n[1-9]\d* passed, 0 failed\n$/);
    }
  });
});
