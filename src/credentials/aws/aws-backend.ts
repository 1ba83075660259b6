/**
 * The `aws` backend: per request, AssumeRole into the role's target ARN with the broker's own
 * session (broker-session.ts), passing a RoleSessionName naming the agent and the lease, a
 * SourceIdentity from the agent's SPIFFE ID (CloudTrail then shows who acted, through any further
 * role chaining), session tags (agent, task, environment, lease), the role's inline session
 * policy templated with environment and task, and a DurationSeconds bounded by the task.
 *
 * AWS sessions last at least 900 s and cannot be ended one by one: a task with less time left gets
 * a 900 s session that outlives it (said in the credential's metadata and the audit record), or a
 * refusal when the role sets `outlivesTask: refuse`. The lease is `expires_only`: revoking it ends
 * it in the ledger; the session lives until AWS's expiry. The incident lever is per role:
 * denyOlderSessions (an inline deny on the role for tokens issued before now).
 */
import type { AssumeRoleCommandInput, STSClient } from '@aws-sdk/client-sts';
import type {
  CredentialBackend,
  IssueRequest,
  IssuedCredential,
  RevokeTarget,
  RoleDefinition,
} from '../backend.js';
import { failedPrecondition } from '../../errors.js';
import { retryThrottled } from '../cloud/retry.js';
import { settingsOrThrow } from '../cloud/role-settings.js';
import { renderJson, renderString, type TemplateVars } from '../cloud/template.js';
import { awsErrFields, awsFailure, isExpiredSession, isThrottled } from './aws-errors.js';
import {
  MAX_POLICY_CHARS,
  MIN_SESSION_SECONDS,
  ROLE_CHAINING_MAX_SECONDS,
  sanitizeTagValue,
  sessionNameFor,
  sourceIdentityFor,
} from './aws-limits.js';
import { readAwsRoleSettings, type AwsRoleSettings } from './aws-role-settings.js';
import type { AwsCredentialIdentity, BrokerAwsCredentials, StsSdk } from './broker-session.js';

export interface AwsLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AwsBackendOptions {
  credentials: BrokerAwsCredentials;
  sdk: StsSdk;
  /** Builds an STS client signing with these credentials (undefined: the SDK's default chain). */
  stsClient: (credentials: AwsCredentialIdentity | undefined) => STSClient;
  region: string;
  /** The longest session the target roles allow (their MaxSessionDuration). */
  maxSessionSeconds: number;
  timeoutMs: number;
  baseDelayMs: number;
  logger: AwsLogger;
  now?: () => number;
}

export const AWS_REF_PREFIX = 'aws-session:';

function settingsOf(role: RoleDefinition): AwsRoleSettings {
  return settingsOrThrow('aws', role, readAwsRoleSettings);
}

/** The AssumeRole input for one request; throws FAILED_PRECONDITION when AWS would refuse it. */
export function assumeRoleInput(
  req: IssueRequest,
  s: AwsRoleSettings,
  durationSeconds: number,
): AssumeRoleCommandInput {
  const vars: TemplateVars = {
    environment: req.environment,
    task_id: req.taskId,
    lease_id: req.leaseId,
    agent: req.agent,
    role: req.role.name,
  };
  const policy =
    s.sessionPolicy === undefined ? undefined : JSON.stringify(renderJson(s.sessionPolicy, vars));
  if (policy !== undefined && policy.length > MAX_POLICY_CHARS) {
    throw failedPrecondition(
      'aws_policy_too_large',
      `the session policy of ${req.role.name} exceeds AWS's ${MAX_POLICY_CHARS} characters`,
    );
  }
  const tags = [
    { Key: 'spiffe-id', Value: req.agent },
    { Key: 'task-id', Value: req.taskId },
    { Key: 'environment', Value: req.environment },
    { Key: 'lease-id', Value: req.leaseId },
    ...Object.entries(s.tags).map(([Key, v]) => ({ Key, Value: renderString(v, vars) })),
  ].map((t) => ({ Key: t.Key, Value: sanitizeTagValue(t.Value) }));
  return {
    RoleArn: s.roleArn,
    RoleSessionName: sessionNameFor(req.agent, req.leaseId),
    SourceIdentity: sourceIdentityFor(req.agent),
    DurationSeconds: durationSeconds,
    Tags: tags,
    ...(policy !== undefined ? { Policy: policy } : {}),
    ...(s.policyArns.length ? { PolicyArns: s.policyArns.map((arn) => ({ arn })) } : {}),
    ...(s.externalId !== undefined ? { ExternalId: s.externalId } : {}),
  };
}

export function createAwsBackend(o: AwsBackendOptions): CredentialBackend {
  const now = o.now ?? Date.now;
  const maxSession = o.credentials.chained
    ? Math.min(o.maxSessionSeconds, ROLE_CHAINING_MAX_SECONDS)
    : o.maxSessionSeconds;
  let cached: { creds: AwsCredentialIdentity | undefined; client: STSClient } | undefined;
  const clientFor = (creds: AwsCredentialIdentity | undefined): STSClient => {
    if (!cached || cached.creds !== creds) cached = { creds, client: o.stsClient(creds) };
    return cached.client;
  };

  /** AssumeRole with the broker's session; an expired session is refreshed once. */
  const assume = async (input: AssumeRoleCommandInput, deadline: number) => {
    for (let attempt = 0; ; attempt++) {
      const creds = await o.credentials.get();
      try {
        return await retryThrottled(
          (abortSignal) => clientFor(creds).send(new o.sdk.AssumeRoleCommand(input), { abortSignal }),
          isThrottled,
          { deadline, baseDelayMs: o.baseDelayMs, service: 'AWS STS', reason: 'aws_throttled', now },
        );
      } catch (err) {
        if (attempt === 0 && isExpiredSession(err)) {
          o.logger.warn({ err: awsErrFields(err) }, "AWS says the broker's session expired: refreshing it");
          o.credentials.invalidate(creds);
          continue;
        }
        throw err;
      }
    }
  };

  return {
    name: 'aws',

    validateRole(role: RoleDefinition): string[] {
      const read = readAwsRoleSettings(role.settings);
      const problems = read.ok ? [] : [...read.problems];
      if (role.maxTtlSeconds > maxSession) {
        problems.push(
          `maxTtlSeconds ${role.maxTtlSeconds} exceeds the longest AWS session the broker can mint (${maxSession} s${o.credentials.chained ? ': role chaining caps sessions at one hour' : ''})`,
        );
      }
      return problems;
    },

    revocability: () => 'expires_only',

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const s = settingsOf(req.role);
      const taskSeconds = Math.floor((req.notAfter - req.now) / 1000);
      const durationSeconds = Math.min(Math.max(req.ttlSeconds, MIN_SESSION_SECONDS), maxSession);
      const outlives = durationSeconds > taskSeconds;
      if (outlives && s.outlivesTask === 'refuse') {
        throw failedPrecondition(
          'credential_outlives_task',
          `AWS sessions last at least ${MIN_SESSION_SECONDS} s but the task ends in ${taskSeconds} s, and role ${req.role.name} refuses credentials that outlive the task`,
        );
      }
      const input = assumeRoleInput(req, s, durationSeconds);
      const out = await assume(input, now() + o.timeoutMs).catch((err: unknown) => {
        o.logger.error(
          { err: awsErrFields(err), lease: req.leaseId, role: req.role.name },
          'AWS AssumeRole failed',
        );
        throw awsFailure(err, `AssumeRole for ${req.role.name}`);
      });
      const c = out.Credentials;
      const arn = out.AssumedRoleUser?.Arn;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration || !arn) {
        throw awsFailure(new Error('AssumeRole returned no credentials'), `AssumeRole for ${req.role.name}`);
      }
      const expiresAt = c.Expiration.getTime();
      return {
        credential: {
          kind: 'aws_sts',
          token: '',
          data: {
            AWS_ACCESS_KEY_ID: c.AccessKeyId,
            AWS_SECRET_ACCESS_KEY: c.SecretAccessKey,
            AWS_SESSION_TOKEN: c.SessionToken,
          },
          metadata: {
            usage:
              'environment variables: export each data entry (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)',
            AWS_REGION: o.region,
            assumed_role_arn: arn,
            source_identity: input.SourceIdentity ?? '',
            session_name: input.RoleSessionName ?? '',
            expiration: c.Expiration.toISOString(),
            duration_seconds: String(durationSeconds),
            revocable: 'false: the session lives until its expiration',
            ...(expiresAt > req.notAfter ? { outlives_task: 'true' } : {}),
          },
        },
        backendRef: `${AWS_REF_PREFIX}${arn}`,
        expiresAt,
        renewable: false,
      };
    },

    // AWS cannot end one session early; the broker's lease ends, the session expires on its own.
    async revoke(_target: RevokeTarget): Promise<void> {},
  };
}
