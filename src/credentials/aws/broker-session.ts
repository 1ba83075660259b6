/**
 * The broker's own AWS session: AssumeRoleWithWebIdentity into the broker's role with a JWT-SVID
 * for the configured audience (IAM trusts the SPIFFE trust domain as an OIDC provider), fetched at
 * exchange time from the Workload API, cached until shortly before it expires. No long-lived AWS
 * key exists anywhere. With `default_chain` the SDK's default credential chain is used instead
 * (its own caching applies).
 */
import type * as Sts from '@aws-sdk/client-sts';
import { CachedSession } from '../cloud/cached-session.js';
import { retryThrottled } from '../cloud/retry.js';
import { awsFailure, isThrottled } from './aws-errors.js';

/** AWS credentials as the SDK takes them. */
export interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** The STS SDK, loaded only when the aws backend is configured (build-aws-backend.ts). */
export type StsSdk = Pick<typeof Sts, 'STSClient' | 'AssumeRoleCommand' | 'AssumeRoleWithWebIdentityCommand'>;

export interface WebIdentityOptions {
  sdk: StsSdk;
  sts: Sts.STSClient;
  roleArn: string;
  audience: string;
  sessionName: string;
  durationSeconds: number;
  fetchJwt: (audience: string) => Promise<string>;
  timeoutMs: number;
  baseDelayMs: number;
  now?: () => number;
}

/** The broker's AWS credentials; `invalidate` after AWS said they expired. */
export interface BrokerAwsCredentials {
  get(): Promise<AwsCredentialIdentity | undefined>;
  invalidate(stale: AwsCredentialIdentity | undefined): void;
  /** True when the sessions the broker mints are role-chained (AWS caps them at one hour). */
  readonly chained: boolean;
}

export function webIdentityCredentials(o: WebIdentityOptions): BrokerAwsCredentials {
  const now = o.now ?? Date.now;
  const session = new CachedSession<AwsCredentialIdentity>({
    now,
    fetch: async () => {
      const out = await retryThrottled(
        async (abortSignal) =>
          o.sts.send(
            new o.sdk.AssumeRoleWithWebIdentityCommand({
              RoleArn: o.roleArn,
              RoleSessionName: o.sessionName,
              WebIdentityToken: await o.fetchJwt(o.audience),
              DurationSeconds: o.durationSeconds,
            }),
            { abortSignal },
          ),
        isThrottled,
        {
          deadline: now() + o.timeoutMs,
          baseDelayMs: o.baseDelayMs,
          service: 'AWS STS',
          reason: 'aws_throttled',
          now,
        },
      ).catch((err: unknown) => {
        throw awsFailure(err, "the broker's web-identity session");
      });
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
        throw awsFailure(
          new Error('AssumeRoleWithWebIdentity returned no credentials'),
          "the broker's session",
        );
      }
      const value = {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiration: c.Expiration,
      };
      return { value, expiresAt: c.Expiration.getTime() };
    },
  });
  return {
    chained: true,
    get: () => session.get(),
    invalidate: (stale) => stale && session.invalidate(stale),
  };
}

/** The SDK's default chain (environment, profile, container or instance role). */
export function defaultChainCredentials(): BrokerAwsCredentials {
  return { chained: false, get: () => Promise.resolve(undefined), invalidate: () => undefined };
}
