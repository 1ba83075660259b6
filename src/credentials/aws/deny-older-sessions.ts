/**
 * The incident lever AWS offers for sessions it cannot end one by one ("revoke active sessions"):
 * an inline policy on the target role that denies everything to sessions whose token was issued
 * before a moment (`aws:TokenIssueTime`). Sessions minted afterwards are unaffected, so the broker
 * keeps working. Needs `iam:PutRolePolicy` on the target role for the broker's own AWS identity.
 */
import type * as Iam from '@aws-sdk/client-iam';
import { retryThrottled } from '../cloud/retry.js';
import { awsFailure, isThrottled } from './aws-errors.js';
import type { AwsCredentialIdentity, BrokerAwsCredentials } from './broker-session.js';

/** The one inline policy the broker writes; a later call moves its cut-off forward. */
export const DENY_POLICY_NAME = 'svid-broker-revoke-older-sessions';

export function denyOlderSessionsPolicy(issuedBefore: Date): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'SvidBrokerRevokeOlderSessions',
        Effect: 'Deny',
        Action: '*',
        Resource: '*',
        Condition: { DateLessThan: { 'aws:TokenIssueTime': issuedBefore.toISOString() } },
      },
    ],
  });
}

export interface DenyOlderSessionsOptions {
  credentials: BrokerAwsCredentials;
  /** The IAM SDK, loaded only when the aws backend is configured. */
  sdk: Pick<typeof Iam, 'PutRolePolicyCommand'>;
  iamClient: (credentials: AwsCredentialIdentity | undefined) => Iam.IAMClient;
  timeoutMs: number;
  baseDelayMs: number;
  now?: () => number;
}

export type DenyOlderSessions = (roleName: string, issuedBefore: Date) => Promise<{ policyName: string }>;

export function denyOlderSessions(o: DenyOlderSessionsOptions): DenyOlderSessions {
  const now = o.now ?? Date.now;
  return async (roleName, issuedBefore) => {
    const deadline = now() + o.timeoutMs;
    const client = o.iamClient(await o.credentials.get());
    await retryThrottled(
      (abortSignal) =>
        client.send(
          new o.sdk.PutRolePolicyCommand({
            RoleName: roleName,
            PolicyName: DENY_POLICY_NAME,
            PolicyDocument: denyOlderSessionsPolicy(issuedBefore),
          }),
          { abortSignal },
        ),
      isThrottled,
      { deadline, baseDelayMs: o.baseDelayMs, service: 'AWS IAM', reason: 'aws_throttled', now },
    ).catch((err: unknown) => {
      throw awsFailure(err, `PutRolePolicy on ${roleName}`);
    });
    return { policyName: DENY_POLICY_NAME };
  };
}
