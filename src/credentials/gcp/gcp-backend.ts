/**
 * The `gcp` backend: the broker exchanges its JWT-SVID at Google STS (workload identity federation,
 * token-exchange grant) for a federated token, through google-auth-library's IdentityPoolClient
 * with a subject-token supplier that fetches the JWT-SVID from the Workload API at exchange time.
 * The library caches the federated token until shortly before it expires. Per request, its
 * Impersonated client calls IAM Credentials generateAccessToken for the role's service account with
 * the role's scopes, a lifetime bounded by the task, and optional delegates.
 *
 * Google cannot revoke a service-account access token: the lease is `expires_only` and the
 * lifetime (never longer than the task) is the control.
 */
import type * as GoogleAuth from 'google-auth-library';
import type {
  CredentialBackend,
  IssueRequest,
  IssuedCredential,
  RevokeTarget,
  RoleDefinition,
} from '../backend.js';
import { BrokerError, failedPrecondition, unavailable } from '../../errors.js';
import { retryThrottled } from '../cloud/retry.js';
import { settingsOrThrow } from '../cloud/role-settings.js';
import { GCP_MAX_LIFETIME_SECONDS, readGcpRoleSettings, type GcpRoleSettings } from './gcp-role-settings.js';

export interface GcpBackendOptions {
  /** google-auth-library, loaded only when the gcp backend is configured (build-gcp-backend.ts). */
  sdk: Pick<typeof GoogleAuth, 'IdentityPoolClient' | 'Impersonated'>;
  /** The workload identity provider: //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/Q */
  audience: string;
  /** The `aud` of the broker's JWT-SVID (an allowed audience of the provider). */
  jwtAudience: string;
  stsUrl: string;
  iamCredentialsUrl: string;
  fetchJwt: (audience: string) => Promise<string>;
  timeoutMs: number;
  baseDelayMs: number;
  logger: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  now?: () => number;
}

function statusOf(err: unknown): number | undefined {
  return (
    (err as { response?: { status?: number }; status?: number } | undefined)?.response?.status ??
    (err as { status?: number }).status
  );
}

function settingsOf(role: RoleDefinition): GcpRoleSettings {
  return settingsOrThrow('gcp', role, readGcpRoleSettings);
}

function failure(err: unknown, what: string): BrokerError {
  if (err instanceof BrokerError) return err;
  const status = statusOf(err);
  if (status === 400)
    return failedPrecondition('gcp_rejected_request', `Google rejected ${what}: check the role's settings`);
  if (status === 401 || status === 403 || status === 404) {
    return failedPrecondition(
      'gcp_access_denied',
      `Google refused ${what} (HTTP ${status}): check the workload identity pool and the service account's token creators`,
    );
  }
  return unavailable('gcp_unavailable', `Google is unavailable for ${what}`, err);
}

export function createGcpBackend(o: GcpBackendOptions): CredentialBackend {
  const now = o.now ?? Date.now;
  const federated = new o.sdk.IdentityPoolClient({
    type: 'external_account',
    audience: o.audience,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_url: `${o.stsUrl.replace(/\/+$/, '')}/v1/token`,
    subject_token_supplier: { getSubjectToken: () => o.fetchJwt(o.jwtAudience) },
    // A federated token the IAM Credentials API refuses (401) is exchanged again, once.
    forceRefreshOnFailure: true,
    // Every call to Google (STS and IAM Credentials) goes through this client; gaxios has no timeout.
    transporterOptions: { timeout: o.timeoutMs },
  });
  const endpoint = o.iamCredentialsUrl.replace(/\/+$/, '');
  return {
    name: 'gcp',

    validateRole(role: RoleDefinition): string[] {
      const read = readGcpRoleSettings(role.settings);
      const problems = read.ok ? [] : [...read.problems];
      if (role.maxTtlSeconds > GCP_MAX_LIFETIME_SECONDS) {
        problems.push(
          `maxTtlSeconds ${role.maxTtlSeconds} exceeds generateAccessToken's ${GCP_MAX_LIFETIME_SECONDS} s`,
        );
      }
      return problems;
    },

    revocability: () => 'expires_only',

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const s = settingsOf(req.role);
      const lifetime = Math.min(
        req.ttlSeconds,
        Math.floor((req.notAfter - req.now) / 1000),
        GCP_MAX_LIFETIME_SECONDS,
      );
      if (lifetime < 1)
        throw failedPrecondition('ttl_exhausted', 'no time left to issue a credential before the task ends');
      const what = `an access token for ${s.serviceAccount}`;
      const deadline = now() + o.timeoutMs;
      const token = await retryThrottled(
        async () => {
          const client = new o.sdk.Impersonated({
            sourceClient: federated,
            targetPrincipal: s.serviceAccount,
            targetScopes: s.scopes,
            delegates: s.delegates.map((d) => `projects/-/serviceAccounts/${d}`),
            lifetime,
            endpoint,
          });
          await client.getAccessToken();
          return client.credentials;
        },
        (err) => statusOf(err) === 429,
        { deadline, baseDelayMs: o.baseDelayMs, service: 'Google', reason: 'gcp_throttled', now },
      ).catch((err: unknown) => {
        o.logger.error(
          { status: statusOf(err), lease: req.leaseId, role: req.role.name },
          'Google generateAccessToken failed',
        );
        throw failure(err, what);
      });
      const accessToken = token.access_token;
      const expiresAt = token.expiry_date;
      if (!accessToken || !expiresAt)
        throw unavailable('gcp_malformed_response', 'Google answered without a token');
      return {
        credential: {
          kind: 'gcp_access_token',
          token: accessToken,
          data: {},
          metadata: {
            usage: 'bearer token: Authorization: Bearer <token> (or CLOUDSDK_AUTH_ACCESS_TOKEN for gcloud)',
            service_account: s.serviceAccount,
            scopes: s.scopes.join(' '),
            expire_time: new Date(expiresAt).toISOString(),
            revocable: 'false: the token lives until its expire_time',
          },
        },
        backendRef: `gcp-token:${s.serviceAccount}`,
        expiresAt,
        renewable: false,
      };
    },

    // Google has no revoke for service-account access tokens; the lease ends, the token expires.
    async revoke(_target: RevokeTarget): Promise<void> {},
  };
}
