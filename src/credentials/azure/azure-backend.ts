/**
 * The `azure` backend: a client-credentials grant for the role's app registration, with the
 * broker's JWT-SVID (audience `api://AzureADTokenExchange`) as the client assertion, through
 * @azure/identity's ClientAssertionCredential. The app registration's federated identity credential
 * trusts the broker's SPIFFE ID; no client secret exists.
 *
 * One credential object per request: MSAL's token cache would otherwise hand one agent's token to
 * the next. Entra sets the token's lifetime (60-90 minutes by default); a token that outlives the
 * task is said to (metadata `outlives_task`, and the audit record). Entra access tokens cannot be
 * revoked one by one: the lease is `expires_only`.
 */
import type * as AzureIdentity from '@azure/identity';
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
import { readAzureRoleSettings, type AzureRoleSettings } from './azure-role-settings.js';

export interface AzureBackendOptions {
  /** @azure/identity, loaded only when the azure backend is configured (build-azure-backend.ts). */
  sdk: Pick<typeof AzureIdentity, 'ClientAssertionCredential'>;
  authorityHost: string;
  /** The JWT-SVID audience the federated credential expects. */
  audience: string;
  /** Extra CA certificates (PEM) for a private authority host. */
  ca?: string;
  fetchJwt: (audience: string) => Promise<string>;
  timeoutMs: number;
  baseDelayMs: number;
  logger: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  now?: () => number;
}

function settingsOf(role: RoleDefinition): AzureRoleSettings {
  return settingsOrThrow('azure', role, readAzureRoleSettings);
}

/** The AADSTS code in an Entra error message, e.g. `AADSTS700213`, never the message itself. */
function aadsts(err: unknown): string | undefined {
  return /AADSTS\d+/.exec(err instanceof Error ? err.message : '')?.[0];
}

function isThrottled(err: unknown): boolean {
  const status = (err as { statusCode?: number } | undefined)?.statusCode;
  return (
    status === 429 || /\b429\b|too many requests|AADSTS50196/i.test(err instanceof Error ? err.message : '')
  );
}

export function createAzureBackend(o: AzureBackendOptions): CredentialBackend {
  const now = o.now ?? Date.now;
  return {
    name: 'azure',

    validateRole(role: RoleDefinition): string[] {
      const read = readAzureRoleSettings(role.settings);
      return read.ok ? [] : read.problems;
    },

    revocability: () => 'expires_only',

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const s = settingsOf(req.role);
      const deadline = now() + o.timeoutMs;
      const token = await retryThrottled(
        (abortSignal) =>
          new o.sdk.ClientAssertionCredential(s.tenantId, s.clientId, () => o.fetchJwt(o.audience), {
            authorityHost: o.authorityHost,
            disableInstanceDiscovery: true,
            retryOptions: { maxRetries: 0 },
            ...(o.ca ? { tlsOptions: { ca: o.ca } } : {}),
          }).getToken(s.scope, { abortSignal }),
        isThrottled,
        {
          deadline,
          baseDelayMs: o.baseDelayMs,
          service: 'Microsoft Entra ID',
          reason: 'azure_throttled',
          now,
        },
      ).catch((err: unknown) => {
        const code = aadsts(err);
        o.logger.error(
          { aadsts: code, lease: req.leaseId, role: req.role.name },
          'Entra ID token request failed',
        );
        if (err instanceof BrokerError) throw err;
        if (code)
          throw failedPrecondition(
            'azure_access_denied',
            `Entra ID refused a token for ${req.role.name} (${code}): check the app's federated credential`,
          );
        throw unavailable('azure_unavailable', 'Microsoft Entra ID is unavailable', err);
      });
      const outlives = token.expiresOnTimestamp > req.notAfter;
      return {
        credential: {
          kind: 'azure_access_token',
          token: token.token,
          data: {},
          metadata: {
            usage: 'bearer token: Authorization: Bearer <token>',
            tenant_id: s.tenantId,
            client_id: s.clientId,
            scope: s.scope,
            expires_on: new Date(token.expiresOnTimestamp).toISOString(),
            revocable: 'false: the token lives until expires_on',
            ...(outlives ? { outlives_task: 'true' } : {}),
          },
        },
        backendRef: `azure-token:${s.tenantId}/${s.clientId}`,
        expiresAt: token.expiresOnTimestamp,
        renewable: false,
      };
    },

    // Entra cannot revoke one access token; the lease ends, the token expires.
    async revoke(_target: RevokeTarget): Promise<void> {},
  };
}
