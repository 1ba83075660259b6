/**
 * Cloud backends through the whole broker: the broker federates with its own JWT-SVID from the
 * Workload API, an agent gets a task-scoped AWS session, ending the task reports it expire-only
 * (never revoked at AWS), and the revoke-by-role incident option writes the deny policy at IAM.
 */
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { grpcError, readAudit, type Harness } from '../support/broker-harness.js';
import { DEPLOY_ROLE_ARN, type AwsEmulator } from '../support/aws-emulator/index.js';
import type { AzureEmulator } from '../support/azure-emulator/index.js';
import type { GcpEmulator } from '../support/gcp-emulator/index.js';
import type { GithubEmulator } from '../support/github-emulator/index.js';
import { startCloudBroker, type CloudBroker } from '../support/cloud-broker.js';
import { DENY_POLICY_NAME } from '../../src/credentials/aws/deny-older-sessions.js';

describe('integration: cloud backends through the broker', () => {
  let aws: AwsEmulator;
  let github: GithubEmulator;
  let gcp: GcpEmulator;
  let azure: AzureEmulator;
  let h: Harness;
  let stack: CloudBroker | undefined;

  before(async () => {
    stack = await startCloudBroker();
    ({ aws, github, gcp, azure, h } = stack);
  });
  after(async () => stack?.close());

  it('AWS: issues a task-scoped session and ending the task reports it expire-only', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'deploy', ttl_seconds: 1800 });
    const res = await demo.issueCredential({ task_id: task.task_id, role: 'aws/deploy', ttl_seconds: 1200 });
    assert.equal(res.status, 'ISSUED');
    const cred = res.credential;
    assert.equal(cred?.kind, 'aws_sts');
    const session = aws
      .sessionsFor(DEPLOY_ROLE_ARN)
      .find((s) => s.accessKeyId === cred?.data.AWS_ACCESS_KEY_ID);
    assert.ok(session, 'the agent holds the session AWS issued');
    assert.equal(cred?.data.AWS_SESSION_TOKEN, session.sessionToken);
    assert.equal(session.durationSeconds, 1200);
    assert.equal(session.sourceIdentity, 'example.org.agents.demo');
    assert.equal(session.sessionName, `demo@${res.lease_id}`);
    assert.deepEqual(session.tags.slice(0, 4), [
      { Key: 'spiffe-id', Value: 'spiffe://example.org/agents/demo' },
      { Key: 'task-id', Value: task.task_id },
      { Key: 'environment', Value: 'dev' },
      { Key: 'lease-id', Value: res.lease_id },
    ]);
    assert.match(session.policy ?? '', new RegExp(`deploy-dev/${task.task_id}/`));

    const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
    assert.deepEqual(
      ended.revoked.map((r) => r.state),
      ['not_revocable'],
    );
    const lease = await h.broker.store.getLease(res.lease_id);
    assert.equal(lease?.state, 'revoke_failed');
    assert.match(lease?.revokeReason ?? '', /^not_revocable: /);
    const audit = await readAudit(h.auditFile);
    const notRevocable = audit.find((r) => r.type === 'lease.not_revocable' && r.lease === res.lease_id);
    assert.ok(notRevocable, 'audited as not revocable, never as revoked');
    assert.equal(
      audit.some((r) => r.type === 'lease.revoked' && r.lease === res.lease_id),
      false,
    );
  });

  it('AWS: a task shorter than 900 s gets a session that outlives it, said in the response and the audit record', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'quick', ttl_seconds: 120 });
    const res = await demo.issueCredential({ task_id: task.task_id, role: 'aws/deploy' });
    assert.equal(res.credential?.metadata.outlives_task, 'true');
    const expiration = Date.parse(res.credential?.metadata.expiration ?? '');
    assert.ok(expiration > Date.now() + 800_000);
    const issued = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === res.lease_id,
    );
    assert.equal(issued?.outlives_task, true);
    assert.equal(issued?.credential_expires_at, new Date(expiration).toISOString());

    const strict = await grpcError(
      demo.issueCredential({ task_id: task.task_id, role: 'aws/deploy-strict' }),
    );
    assert.equal(strict.code, status.FAILED_PRECONDITION, strict.details);
    assert.match(strict.details, /outlive/);
  });

  it('AWS: revoke by role with deny_older_sessions writes the deny policy at IAM and audits it', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'incident', ttl_seconds: 1800 });
    const res = await demo.issueCredential({ task_id: task.task_id, role: 'aws/deploy', ttl_seconds: 900 });
    const key = res.credential?.data.AWS_ACCESS_KEY_ID ?? '';
    assert.ok(aws.sessionUsable(key));
    const admin = await h.adminClient('security');
    const report = await admin.revokeLeases({
      selector: { role: 'aws/deploy' },
      reason: 'leaked deploy session',
      deny_older_sessions: true,
    });
    assert.ok(report.not_revocable >= 1);
    assert.ok(report.older_sessions_denied_before);
    const doc = aws.roles.get(DEPLOY_ROLE_ARN)?.inlinePolicies.get(DENY_POLICY_NAME) ?? '';
    assert.match(doc, /aws:TokenIssueTime/);
    assert.equal(aws.sessionUsable(key), false, 'the agent session is denied at AWS');
    const audit = await readAudit(h.auditFile);
    const denied = audit.find((r) => r.type === 'admin.deny_older_sessions');
    assert.equal(denied?.role, 'aws/deploy');
    assert.equal(denied?.role_arn, DEPLOY_ROLE_ARN);
    assert.equal(denied?.issued_before, report.older_sessions_denied_before);

    const wrong = await grpcError(
      admin.revokeLeases({
        selector: { agent: 'spiffe://example.org/agents/demo' },
        reason: 'x',
        deny_older_sessions: true,
      }),
    );
    assert.equal(wrong.code, status.INVALID_ARGUMENT);
    assert.match(wrong.details, /deny_older_sessions/);
  });

  it('GitHub: issues a narrowed installation token and ending the task revokes it at GitHub', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'open a PR', ttl_seconds: 1800 });
    const res = await demo.issueCredential({
      task_id: task.task_id,
      role: 'github/repo-writer',
      ttl_seconds: 900,
    });
    const token = res.credential?.token ?? '';
    assert.equal(res.credential?.kind, 'github_token');
    assert.ok(github.tokenLive(token));
    assert.deepEqual(github.tokens.get(token)?.repositories, ['svid-broker']);
    const ended = await demo.endTask({ task_id: task.task_id, reason: 'merged' });
    assert.deepEqual(
      ended.revoked.map((r) => r.state),
      ['revoked'],
    );
    assert.equal(github.tokenLive(token), false, 'the token is gone at GitHub');
    assert.equal((await h.broker.store.getLease(res.lease_id))?.state, 'revoked');
  });

  it('GitHub: incident revocation by role revokes the token for real', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'review', ttl_seconds: 1800 });
    const res = await demo.issueCredential({
      task_id: task.task_id,
      role: 'github/repo-writer',
      ttl_seconds: 900,
    });
    const admin = await h.adminClient('security');
    const report = await admin.revokeLeases({
      selector: { role: 'github/repo-writer' },
      reason: 'suspicious pushes',
    });
    assert.equal(report.revoked, 1);
    assert.equal(github.tokenLive(res.credential?.token ?? ''), false);
  });

  it('GCP: issues a task-bounded access token for the service account; task end reports it expire-only', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'read reports', ttl_seconds: 300 });
    const res = await demo.issueCredential({ task_id: task.task_id, role: 'gcp/bucket-reader' });
    assert.equal(res.credential?.kind, 'gcp_access_token');
    const minted = gcp.accessTokens.get(res.credential?.token ?? '');
    assert.ok(minted);
    assert.ok(minted.lifetimeSeconds <= 300, 'never past the task');
    assert.deepEqual(minted.scopes, ['https://www.googleapis.com/auth/devstorage.read_only']);
    const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
    assert.deepEqual(
      ended.revoked.map((r) => r.state),
      ['not_revocable'],
    );
  });

  it('Azure: issues an Entra token by client assertion; task end reports it expire-only', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'read blobs', ttl_seconds: 600 });
    const res = await demo.issueCredential({ task_id: task.task_id, role: 'azure/storage-reader' });
    assert.equal(res.credential?.kind, 'azure_access_token');
    const minted = azure.tokens.get(res.credential?.token ?? '');
    assert.equal(minted?.subject, 'spiffe://example.org/broker');
    // Entra picks the lifetime (about an hour): longer than this task, and said so.
    assert.equal(res.credential?.metadata.outlives_task, 'true');
    const issued = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === res.lease_id,
    );
    assert.equal(issued?.outlives_task, true);
    const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
    assert.deepEqual(
      ended.revoked.map((r) => r.state),
      ['not_revocable'],
    );
  });

  it('no cloud secret in the logs or the audit trail', async () => {
    const text = `${h.logs.text()}\n${await readFile(h.auditFile, 'utf8')}`;
    assert.ok(github.tokens.size > 0);
    for (const t of [...gcp.accessTokens.keys(), ...gcp.federated.keys()])
      assert.equal(text.includes(t), false);
    for (const t of github.tokens.keys()) assert.equal(text.includes(t), false);
    assert.ok(aws.sessions.size > 0);
    for (const s of aws.sessions.values()) {
      assert.equal(text.includes(s.secretAccessKey), false);
      assert.equal(text.includes(s.sessionToken), false);
    }
  });
});

describe('integration: cloud backend configuration at startup', () => {
  it('a malformed cloud role is a startup error listing every problem', async () => {
    await assert.rejects(
      startCloudBroker({
        config: {
          roles: {
            'aws/bad': { roleArn: 'arn:aws:s3:::bucket', tags: { 'aws:owner': 'x' }, maxTtlSeconds: 7200 },
            'github/bad': { repositories: [], permissions: { contents: 'owner' } },
            'gcp/bad': { serviceAccount: 'nobody' },
            'azure/bad': { tenantId: 't', clientId: 'c', scope: 'https://storage.azure.com/read' },
          },
        },
      }),
      (err: Error) => {
        assert.equal(err.name, 'StartupError');
        for (const p of [
          /roles\.aws\/bad: roleArn/,
          /roles\.aws\/bad: tags\.aws:owner/,
          /roles\.aws\/bad: maxTtlSeconds 7200 exceeds/,
          /roles\.github\/bad: repositories/,
          /roles\.github\/bad: permissions\.contents/,
          /roles\.gcp\/bad: serviceAccount/,
          /roles\.azure\/bad: scope/,
        ]) {
          assert.match(err.message, p);
        }
        return true;
      },
    );
  });
});
