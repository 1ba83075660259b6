/**
 * The AWS backend against the AWS emulator, through the real SDK: the broker's own web-identity
 * session from a JWT-SVID, AssumeRole with the derived names, tags, policy and duration, AWS's
 * limits enforced before the call, the outlives-the-task path, throttling, an expired broker
 * session, and the deny-older-sessions incident policy.
 */
import assert from 'node:assert/strict';
import type { IssueRequest, RoleDefinition } from '../../../../src/credentials/backend.js';
import { awsBackendConfigSchema } from '../../../../src/credentials/aws/aws-config.js';
import { buildAwsBackend, type BuiltAwsBackend } from '../../../../src/credentials/aws/build-aws-backend.js';
import { DENY_POLICY_NAME } from '../../../../src/credentials/aws/deny-older-sessions.js';
import { LocalCa } from '../../../../src/dev/local-ca.js';
import { rejectsWith } from '../../../support/eventually.js';
import {
  BROKER_ROLE_ARN,
  DEPLOY_ROLE_ARN,
  startAwsEmulator,
  type AwsEmulator,
} from '../../../support/aws-emulator/index.js';

const BROKER_ID = 'spiffe://example.org/broker';
const AGENT = 'spiffe://example.org/agents/deploy-bot';
const LEASE = '0190d1a2-7b3c-7def-8abc-0123456789ab';

function role(settings: Record<string, unknown>, maxTtlSeconds = 3600): RoleDefinition {
  return {
    name: 'aws/deploy',
    backend: 'aws',
    maxTtlSeconds,
    sensitivity: 'confidential',
    environments: [],
    description: '',
    settings,
  };
}

const POLICY = {
  Version: '2012-10-17',
  Statement: [
    {
      Effect: 'Allow',
      Action: 's3:PutObject',
      Resource: 'arn:aws:s3:::deploy-{{environment}}/{{task_id}}/*',
    },
  ],
};
const deploy = role({
  roleArn: DEPLOY_ROLE_ARN,
  sessionPolicy: POLICY,
  tags: { team: 'platform', purpose: 'task {{task_id}}' },
});

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  const now = Date.now();
  return {
    leaseId: LEASE,
    agent: AGENT,
    taskId: 'task-42',
    environment: 'staging',
    role: deploy,
    ttlSeconds: 1800,
    notAfter: now + 3_600_000,
    now,
    ...overrides,
  };
}

describe('credentials/aws: the AWS backend against the STS emulator', () => {
  let aws: AwsEmulator;
  let ca: LocalCa;
  let built: BuiltAwsBackend;
  let jwtFetches: number;
  const logs: string[] = [];

  before(async () => {
    ca = await LocalCa.create('example.org');
    aws = await startAwsEmulator();
    aws.addRole(BROKER_ROLE_ARN, {
      webIdentity: { jwks: () => ca.jwks(), audience: 'sts.amazonaws.com', subject: BROKER_ID },
    });
    aws.addRole(DEPLOY_ROLE_ARN, { trustedRoles: [BROKER_ROLE_ARN] });
  });
  after(async () => aws.close());

  beforeEach(async () => {
    jwtFetches = 0;
    logs.length = 0;
    aws.faults = {};
    const config = awsBackendConfigSchema.parse({
      region: 'eu-west-1',
      stsEndpoint: aws.url,
      iamEndpoint: aws.url,
      credentials: { source: 'web_identity', roleArn: BROKER_ROLE_ARN },
      timeoutMs: 2000,
      retryBaseDelayMs: 1,
    });
    built = await buildAwsBackend(config, {
      fetchJwt: async (audience) => {
        jwtFetches++;
        return ca.mintJwtSvid(BROKER_ID, audience);
      },
      logger: {
        warn: (o, m) => logs.push(JSON.stringify({ ...o, m })),
        error: (o, m) => logs.push(JSON.stringify({ ...o, m })),
      },
    });
  });

  it('assumes the target role with the derived session name, source identity, tags, policy and duration', async () => {
    const req = request();
    const issued = await built.backend.issue(req);
    const session = aws.sessionsFor(DEPLOY_ROLE_ARN).at(-1);
    assert.ok(session);
    assert.equal(issued.credential.kind, 'aws_sts');
    assert.equal(issued.credential.data.AWS_ACCESS_KEY_ID, session.accessKeyId);
    assert.equal(issued.credential.data.AWS_SECRET_ACCESS_KEY, session.secretAccessKey);
    assert.equal(issued.credential.data.AWS_SESSION_TOKEN, session.sessionToken);
    assert.equal(session.sessionName, `deploy-bot@${LEASE}`);
    assert.equal(session.sourceIdentity, 'example.org.agents.deploy-bot');
    assert.equal(session.durationSeconds, 1800);
    assert.equal(session.chained, true);
    assert.deepEqual(session.tags, [
      { Key: 'spiffe-id', Value: AGENT },
      { Key: 'task-id', Value: 'task-42' },
      { Key: 'environment', Value: 'staging' },
      { Key: 'lease-id', Value: LEASE },
      { Key: 'team', Value: 'platform' },
      { Key: 'purpose', Value: 'task task-42' },
    ]);
    assert.deepEqual(JSON.parse(session.policy ?? ''), {
      ...POLICY,
      Statement: [{ ...POLICY.Statement[0], Resource: 'arn:aws:s3:::deploy-staging/task-42/*' }],
    });
    assert.equal(issued.expiresAt, session.expiresAt);
    assert.equal(issued.backendRef, `aws-session:${session.assumedRoleArn}`);
    assert.equal(issued.credential.metadata.AWS_REGION, 'eu-west-1');
    assert.equal(issued.credential.metadata.outlives_task, undefined);
    assert.equal(built.backend.revocability?.(deploy), 'expires_only');
    // Revoke is a no-op that succeeds (AWS has no per-session revoke); it never throws.
    await built.backend.revoke({
      leaseId: LEASE,
      backendRef: issued.backendRef,
      expiresAt: issued.expiresAt,
    });
    assert.ok(aws.sessionUsable(session.accessKeyId), 'the session lives on until it expires');
  });

  it("caches the broker's own session: one AssumeRoleWithWebIdentity for many requests", async () => {
    for (let i = 0; i < 3; i++) await built.backend.issue(request({ leaseId: `${LEASE.slice(0, -1)}${i}` }));
    assert.equal(jwtFetches, 1);
    assert.equal(aws.calls.filter((c) => c === 'AssumeRoleWithWebIdentity').length >= 1, true);
  });

  it('sanitises tag values into AWS charset and length, and keeps names within AWS limits', async () => {
    const odd = `spiffe://example.org/agents/a?b#${'x'.repeat(300)}`;
    const long = role({ roleArn: DEPLOY_ROLE_ARN, tags: { note: '{{environment}} {{agent}}' } });
    await built.backend.issue(request({ agent: odd, role: long }));
    const s = aws.sessionsFor(DEPLOY_ROLE_ARN).at(-1);
    assert.ok(s);
    assert.ok(s.sessionName.length <= 64 && s.sessionName.endsWith(`@${LEASE}`));
    assert.ok((s.sourceIdentity ?? '').length <= 64);
    const spiffeTag = s.tags.find((t) => t.Key === 'spiffe-id')?.Value ?? '';
    assert.equal(spiffeTag.length, 256);
    assert.match(spiffeTag, /^spiffe:\/\/example\.org\/agents\/a_b_x+-[0-9a-f]{12}$/);
    const note = s.tags.find((t) => t.Key === 'note')?.Value ?? '';
    assert.equal(note.length, 256);
    assert.match(note, /^staging spiffe:\/\/example\.org\/agents\/a_b_x+-[0-9a-f]{12}$/);
    assert.ok(!/[?#!]/.test(note) && !/[?#!]/.test(spiffeTag));
  });

  it('a task shorter than 900 s: the 900 s session outlives it and says so', async () => {
    const now = Date.now();
    const issued = await built.backend.issue(request({ ttlSeconds: 120, notAfter: now + 120_000, now }));
    const s = aws.sessionsFor(DEPLOY_ROLE_ARN).at(-1);
    assert.equal(s?.durationSeconds, 900);
    assert.equal(issued.credential.metadata.outlives_task, 'true');
    assert.ok(issued.expiresAt > now + 120_000);
  });

  it('refuses before calling AWS when the role says credentials must not outlive the task', async () => {
    const strict = role({ roleArn: DEPLOY_ROLE_ARN, outlivesTask: 'refuse' });
    const before = aws.calls.length;
    const now = Date.now();
    await rejectsWith(
      built.backend.issue(request({ role: strict, ttlSeconds: 300, notAfter: now + 300_000, now })),
      'FAILED_PRECONDITION',
      'credential_outlives_task',
    );
    assert.equal(aws.calls.slice(before).includes('AssumeRole'), false);
  });

  it('bounds the duration by role chaining (one hour) and rejects longer role maxima at startup', () => {
    assert.deepEqual(built.backend.validateRole(role({ roleArn: DEPLOY_ROLE_ARN }, 3600)), []);
    assert.match(
      built.backend.validateRole(role({ roleArn: DEPLOY_ROLE_ARN }, 7200)).join(),
      /role chaining caps sessions at one hour/,
    );
  });

  it('lists every problem of a malformed role', () => {
    const problems = built.backend.validateRole(
      role({
        roleArn: 'arn:aws:s3:::bucket',
        sessionPolicy: { Statement: [{ Resource: '{{bogus}}' }] },
        tags: { 'aws:x': 'v', Team: 'a', team: 'b', bad: 'no*stars' },
        outlivesTask: 'maybe',
        extra: 1,
      }),
    );
    for (const p of [
      /unknown setting "extra"/,
      /roleArn/,
      /unknown placeholder \{\{bogus\}\}/,
      /tags.aws:x: not a valid AWS tag key/,
      /tags.team: duplicates/,
      /tags.bad: value outside/,
      /outlivesTask/,
    ]) {
      assert.ok(
        problems.some((x) => p.test(x)),
        `${p} in ${problems.join(' | ')}`,
      );
    }
  });

  it('refuses a session policy longer than AWS allows before calling AWS', async () => {
    const big = role({
      roleArn: DEPLOY_ROLE_ARN,
      sessionPolicy: {
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: '*', Resource: `{{agent}}${'r'.repeat(1900)}` }],
      },
    });
    const before = aws.calls.filter((c) => c === 'AssumeRole').length;
    await rejectsWith(
      built.backend.issue(request({ role: big, agent: `spiffe://example.org/${'a'.repeat(200)}` })),
      'FAILED_PRECONDITION',
      'aws_policy_too_large',
    );
    assert.equal(aws.calls.filter((c) => c === 'AssumeRole').length, before);
  });

  it('retries AWS Throttling with backoff, then succeeds', async () => {
    await built.backend.issue(request()); // the broker session first
    aws.faults = { throttle: 2 };
    const issued = await built.backend.issue(request());
    assert.equal(issued.credential.kind, 'aws_sts');
    assert.equal(aws.faults.throttle, 0);
  });

  it('throttling past the deadline is UNAVAILABLE and issues nothing', async () => {
    await built.backend.issue(request());
    const sessions = aws.sessionsFor(DEPLOY_ROLE_ARN).length;
    aws.faults = { throttle: 1_000_000 };
    const config = awsBackendConfigSchema.parse({
      region: 'eu-west-1',
      stsEndpoint: aws.url,
      credentials: { source: 'web_identity', roleArn: BROKER_ROLE_ARN },
      timeoutMs: 300,
      retryBaseDelayMs: 20,
    });
    const tight = await buildAwsBackend(config, {
      fetchJwt: (a) => ca.mintJwtSvid(BROKER_ID, a),
      logger: { warn: () => undefined, error: () => undefined },
    });
    await rejectsWith(tight.backend.issue(request()), 'UNAVAILABLE', 'aws_throttled');
    aws.faults = {};
    assert.equal(aws.sessionsFor(DEPLOY_ROLE_ARN).length, sessions);
  });

  it('an expired broker session is refreshed once and the request succeeds', async () => {
    await built.backend.issue(request());
    assert.equal(jwtFetches, 1);
    aws.expireSessions(BROKER_ROLE_ARN);
    const issued = await built.backend.issue(request());
    assert.equal(issued.credential.kind, 'aws_sts');
    assert.equal(jwtFetches, 2);
    assert.match(logs.join('\n'), /ExpiredToken/);
  });

  it('AWS refusing the trust (AccessDenied) is FAILED_PRECONDITION naming no secret', async () => {
    const other = 'arn:aws:iam::111122223333:role/not-trusting';
    aws.addRole(other, { trustedRoles: [] });
    await rejectsWith(
      built.backend.issue(request({ role: role({ roleArn: other }) })),
      'FAILED_PRECONDITION',
      'aws_access_denied',
    );
  });

  it('a role without sts:TagSession in its trust policy refuses the tagged session (AccessDenied)', async () => {
    const untagged = 'arn:aws:iam::111122223333:role/no-tags';
    aws.addRole(untagged, { trustedRoles: [BROKER_ROLE_ARN], allowTagSession: false });
    await rejectsWith(
      built.backend.issue(request({ role: role({ roleArn: untagged }) })),
      'FAILED_PRECONDITION',
      'aws_access_denied',
    );
  });

  it('denyOlderSessions writes the aws:TokenIssueTime deny policy: older sessions stop working, new ones work', async () => {
    const issued = await built.backend.issue(request());
    const old = issued.credential.data.AWS_ACCESS_KEY_ID ?? '';
    assert.ok(aws.sessionUsable(old));
    // A cut-off strictly after the session's issue time (the emulator keeps milliseconds).
    await new Promise((resolve) => setTimeout(resolve, 5));
    const cut = new Date();
    const out = await built.denyOlderSessions('deploy', cut);
    assert.equal(out.policyName, DENY_POLICY_NAME);
    const doc = JSON.parse(aws.roles.get(DEPLOY_ROLE_ARN)?.inlinePolicies.get(DENY_POLICY_NAME) ?? '{}') as {
      Statement: Array<Record<string, unknown>>;
    };
    assert.deepEqual(doc.Statement[0]?.Condition, {
      DateLessThan: { 'aws:TokenIssueTime': cut.toISOString() },
    });
    assert.equal(doc.Statement[0]?.Effect, 'Deny');
    assert.equal(aws.sessionUsable(old), false, 'the older session is cut off');
    const fresh = await built.backend.issue(request());
    assert.ok(
      aws.sessionUsable(fresh.credential.data.AWS_ACCESS_KEY_ID ?? ''),
      'a session minted afterwards works',
    );
    await built.denyOlderSessions('deploy', new Date(0)); // reset for later tests
  });

  it('denyOlderSessions on an unknown role fails without a stack or secret', async () => {
    await rejectsWith(built.denyOlderSessions('no-such-role', new Date()), 'UNAVAILABLE', 'aws_unavailable');
  });

  it('no secret reaches the logs', async () => {
    const issued = await built.backend.issue(request());
    aws.expireSessions(BROKER_ROLE_ARN);
    await built.backend.issue(request());
    const text = logs.join('\n');
    for (const v of Object.values(issued.credential.data)) assert.ok(!text.includes(v));
    for (const s of aws.sessions.values()) {
      assert.ok(!text.includes(s.secretAccessKey));
      assert.ok(!text.includes(s.sessionToken));
    }
  });
});
