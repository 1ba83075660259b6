/**
 * The `backends.aws` section of the broker config, and the one function that builds the backend
 * (the broker's session, the STS and IAM clients) for main.ts.
 *
 * ```yaml
 * backends:
 *   aws:
 *     region: us-east-1
 *     stsEndpoint: https://sts.us-east-1.amazonaws.com   # optional (private endpoints, tests)
 *     iamEndpoint: https://iam.amazonaws.com             # optional
 *     credentials:
 *       source: web_identity          # web_identity | default_chain
 *       roleArn: arn:aws:iam::123456789012:role/svid-broker
 *       audience: sts.amazonaws.com
 *     maxSessionSeconds: 3600         # the target roles' MaxSessionDuration
 *     timeoutMs: 5000
 * ```
 */
import { IAMClient } from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import { z } from 'zod';
import type { CredentialBackend } from '../backend.js';
import { createAwsBackend, type AwsLogger } from './aws-backend.js';
import { MAX_SESSION_SECONDS, MIN_SESSION_SECONDS, isValidSessionName } from './aws-limits.js';
import {
  defaultChainCredentials,
  webIdentityCredentials,
  type AwsCredentialIdentity,
  type BrokerAwsCredentials,
} from './broker-session.js';
import { denyOlderSessions, type DenyOlderSessions } from './deny-older-sessions.js';

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

export const awsBackendConfigSchema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as us-east-1'),
    stsEndpoint: httpUrl.optional(),
    iamEndpoint: httpUrl.optional(),
    credentials: z.discriminatedUnion('source', [
      z
        .object({
          source: z.literal('web_identity'),
          /** The broker's own role, trusting the SPIFFE trust domain's OIDC issuer. */
          roleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/, 'an IAM role ARN'),
          audience: z.string().min(1).default('sts.amazonaws.com'),
          sessionName: z
            .string()
            .refine(isValidSessionName, '2-64 characters of [\\w+=,.@-]')
            .default('svid-broker'),
          sessionSeconds: z.number().int().min(MIN_SESSION_SECONDS).max(MAX_SESSION_SECONDS).default(3600),
        })
        .strict(),
      z.object({ source: z.literal('default_chain') }).strict(),
    ]),
    maxSessionSeconds: z.number().int().min(MIN_SESSION_SECONDS).max(MAX_SESSION_SECONDS).default(3600),
    timeoutMs: z.number().int().positive().max(60_000).default(5000),
    /** First throttling backoff (doubles, jittered, within timeoutMs). */
    retryBaseDelayMs: z.number().int().positive().max(10_000).default(100),
  })
  .strict();

export type AwsBackendConfig = z.infer<typeof awsBackendConfigSchema>;

export interface BuiltAwsBackend {
  backend: CredentialBackend;
  /** The revoke-by-role incident option (PutRolePolicy with an aws:TokenIssueTime deny). */
  denyOlderSessions: DenyOlderSessions;
  credentials: BrokerAwsCredentials;
}

export function buildAwsBackend(
  config: AwsBackendConfig,
  deps: { fetchJwt: (audience: string) => Promise<string>; logger: AwsLogger; now?: () => number },
): BuiltAwsBackend {
  const requestHandler = { requestTimeout: config.timeoutMs, connectionTimeout: config.timeoutMs };
  const common = { region: config.region, maxAttempts: 1, requestHandler };
  const stsClient = (credentials: AwsCredentialIdentity | undefined): STSClient =>
    new STSClient({
      ...common,
      ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
      ...(credentials ? { credentials } : {}),
    });
  const iamClient = (credentials: AwsCredentialIdentity | undefined): IAMClient =>
    new IAMClient({
      ...common,
      ...(config.iamEndpoint ? { endpoint: config.iamEndpoint } : {}),
      ...(credentials ? { credentials } : {}),
    });
  const c = config.credentials;
  const credentials =
    c.source === 'web_identity'
      ? webIdentityCredentials({
          // AssumeRoleWithWebIdentity is not signed: this client needs no credentials.
          sts: stsClient({ accessKeyId: 'unsigned', secretAccessKey: 'unsigned' }),
          roleArn: c.roleArn,
          audience: c.audience,
          sessionName: c.sessionName,
          durationSeconds: c.sessionSeconds,
          fetchJwt: deps.fetchJwt,
          timeoutMs: config.timeoutMs,
          baseDelayMs: config.retryBaseDelayMs,
          ...(deps.now ? { now: deps.now } : {}),
        })
      : defaultChainCredentials();
  const timing = {
    timeoutMs: config.timeoutMs,
    baseDelayMs: config.retryBaseDelayMs,
    ...(deps.now ? { now: deps.now } : {}),
  };
  return {
    credentials,
    backend: createAwsBackend({
      credentials,
      stsClient,
      region: config.region,
      maxSessionSeconds: config.maxSessionSeconds,
      logger: deps.logger,
      ...timing,
    }),
    denyOlderSessions: denyOlderSessions({ credentials, iamClient, ...timing }),
  };
}
