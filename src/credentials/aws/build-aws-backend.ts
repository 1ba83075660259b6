/**
 * Builds the aws backend from its config section: the broker's session, the STS and IAM clients,
 * the backend and the deny-older-sessions lever. Loaded only when `backends.aws` is configured, so
 * the SDK costs nothing otherwise.
 */
import type { IAMClient } from '@aws-sdk/client-iam';
import type { STSClient } from '@aws-sdk/client-sts';
import type { CredentialBackend } from '../backend.js';
import { createAwsBackend, type AwsLogger } from './aws-backend.js';
import type { AwsBackendConfig } from './aws-config.js';
import {
  defaultChainCredentials,
  webIdentityCredentials,
  type AwsCredentialIdentity,
} from './broker-session.js';
import { denyOlderSessions, type DenyOlderSessions } from './deny-older-sessions.js';

export interface BuiltAwsBackend {
  backend: CredentialBackend;
  /** The revoke-by-role incident option (PutRolePolicy with an aws:TokenIssueTime deny). */
  denyOlderSessions: DenyOlderSessions;
}

export async function buildAwsBackend(
  config: AwsBackendConfig,
  deps: { fetchJwt: (audience: string) => Promise<string>; logger: AwsLogger; now?: () => number },
): Promise<BuiltAwsBackend> {
  // The SDK loads here, only when backends.aws is configured (the CLI and other brokers skip it).
  const sts = await import('@aws-sdk/client-sts');
  const iam = await import('@aws-sdk/client-iam');
  const requestHandler = { requestTimeout: config.timeoutMs, connectionTimeout: config.timeoutMs };
  const common = { region: config.region, maxAttempts: 1, requestHandler };
  const stsClient = (credentials: AwsCredentialIdentity | undefined): STSClient =>
    new sts.STSClient({
      ...common,
      ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
      ...(credentials ? { credentials } : {}),
    });
  const iamClient = (credentials: AwsCredentialIdentity | undefined): IAMClient =>
    new iam.IAMClient({
      ...common,
      ...(config.iamEndpoint ? { endpoint: config.iamEndpoint } : {}),
      ...(credentials ? { credentials } : {}),
    });
  const c = config.credentials;
  const credentials =
    c.source === 'web_identity'
      ? webIdentityCredentials({
          sdk: sts,
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
    backend: createAwsBackend({
      credentials,
      sdk: sts,
      stsClient,
      region: config.region,
      maxSessionSeconds: config.maxSessionSeconds,
      logger: deps.logger,
      ...timing,
    }),
    denyOlderSessions: denyOlderSessions({ credentials, sdk: iam, iamClient, ...timing }),
  };
}
