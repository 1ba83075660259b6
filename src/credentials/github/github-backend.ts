/**
 * The `github` backend: per request, an installation access token of the broker's GitHub App,
 * narrowed to the role's repositories and permissions (POST /app/installations/{id}/access_tokens,
 * authenticated by a short App JWT signed with the App's private key). Installation tokens live an
 * hour and can be revoked (DELETE /installation/token): task end, lease expiry and incident
 * revocation revoke them for real.
 */
import { SignJWT } from 'jose';
import type { KeyObject } from 'node:crypto';
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
import { readGithubRoleSettings, type GithubRoleSettings } from './github-role-settings.js';
import { openToken, refKey, sealToken } from './token-ref.js';

export interface GithubBackendOptions {
  /** `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise Server. */
  apiUrl: string;
  appId: string;
  privateKey: KeyObject;
  defaultInstallationId?: number;
  timeoutMs: number;
  baseDelayMs: number;
  logger: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  now?: () => number;
}

/** GitHub refuses App JWTs that live longer than 10 minutes; 9, back-dated 60 s for clock drift. */
const APP_JWT_SECONDS = 540;
const BACKDATE_SECONDS = 60;

class GithubHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly throttled: boolean,
  ) {
    super(message);
    this.name = 'GithubHttpError';
  }
}

function settingsOf(role: RoleDefinition): GithubRoleSettings {
  return settingsOrThrow('github', role, readGithubRoleSettings);
}

export function createGithubBackend(o: GithubBackendOptions): CredentialBackend {
  const now = o.now ?? Date.now;
  const api = o.apiUrl.replace(/\/+$/, '');
  const sealKey = refKey(o.privateKey);
  let appJwt: { token: string; refreshAt: number } | undefined;

  const appToken = async (): Promise<string> => {
    if (appJwt && now() < appJwt.refreshAt) return appJwt.token;
    const iat = Math.floor(now() / 1000) - BACKDATE_SECONDS;
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer(o.appId)
      .setIssuedAt(iat)
      .setExpirationTime(iat + APP_JWT_SECONDS)
      .sign(o.privateKey);
    appJwt = { token, refreshAt: (iat + APP_JWT_SECONDS - 120) * 1000 };
    return token;
  };

  const call = async (
    method: string,
    path: string,
    auth: string,
    body: unknown,
    deadline: number,
  ): Promise<unknown> =>
    retryThrottled(
      async (signal) => {
        const res = await fetch(`${api}${path}`, {
          method,
          headers: {
            accept: 'application/vnd.github+json',
            authorization: `Bearer ${auth}`,
            'x-github-api-version': '2022-11-28',
            'user-agent': 'svid-broker',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal,
        });
        const text = await res.text();
        if (res.ok) return text ? (JSON.parse(text) as unknown) : undefined;
        const message = (() => {
          try {
            return String((JSON.parse(text) as { message?: unknown }).message ?? res.statusText);
          } catch {
            return res.statusText;
          }
        })();
        const throttled =
          res.status === 429 ||
          (res.status === 403 &&
            (res.headers.get('x-ratelimit-remaining') === '0' || /rate limit/i.test(message)));
        throw new GithubHttpError(res.status, message, throttled);
      },
      (err) => err instanceof GithubHttpError && err.throttled,
      { deadline, baseDelayMs: o.baseDelayMs, service: 'GitHub', reason: 'github_throttled', now },
    );

  const failure = (err: unknown, what: string): BrokerError => {
    if (err instanceof BrokerError) return err;
    if (err instanceof GithubHttpError && err.status === 422) {
      return failedPrecondition(
        'github_rejected_request',
        `GitHub refused ${what}: the role asks for more than the installation grants`,
      );
    }
    if (err instanceof GithubHttpError && (err.status === 401 || err.status === 403 || err.status === 404)) {
      return failedPrecondition(
        'github_access_denied',
        `GitHub refused ${what} (HTTP ${err.status}): check the App id, key and installation`,
      );
    }
    return unavailable('github_unavailable', `GitHub is unavailable for ${what}`, err);
  };

  return {
    name: 'github',

    validateRole(role: RoleDefinition): string[] {
      const read = readGithubRoleSettings(role.settings);
      const problems = read.ok ? [] : [...read.problems];
      if (read.ok && read.settings.installationId === undefined && o.defaultInstallationId === undefined) {
        problems.push('installationId: required (no backends.github.installationId default)');
      }
      return problems;
    },

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const s = settingsOf(req.role);
      const installationId = s.installationId ?? (o.defaultInstallationId as number);
      const what = `an installation token for ${req.role.name}`;
      let out: { token?: unknown; expires_at?: unknown; permissions?: unknown; repositories?: unknown };
      try {
        out = (await call(
          'POST',
          `/app/installations/${installationId}/access_tokens`,
          await appToken(),
          { repositories: s.repositories, permissions: s.permissions },
          now() + o.timeoutMs,
        )) as typeof out;
      } catch (err) {
        o.logger.error(
          {
            status: err instanceof GithubHttpError ? err.status : undefined,
            err: { message: (err as Error).message },
            lease: req.leaseId,
          },
          'GitHub token request failed',
        );
        throw failure(err, what);
      }
      const token = typeof out.token === 'string' ? out.token : '';
      const expiresAt = typeof out.expires_at === 'string' ? Date.parse(out.expires_at) : NaN;
      if (!token || Number.isNaN(expiresAt))
        throw unavailable('github_malformed_response', 'GitHub answered without a token');
      const backendRef = sealToken(sealKey, installationId, token);
      return {
        credential: {
          kind: 'github_token',
          token,
          data: {},
          metadata: {
            usage:
              'bearer token: Authorization: Bearer <token>; git over HTTPS: user x-access-token, password <token>',
            api_url: api,
            installation_id: String(installationId),
            repositories: s.repositories.join(','),
            permissions: Object.entries(s.permissions)
              .map(([k, v]) => `${k}:${v}`)
              .join(','),
            github_expires_at: new Date(expiresAt).toISOString(),
          },
        },
        backendRef,
        // Revocable: the broker lease ends (and revokes it) with the task or the granted TTL.
        expiresAt: Math.min(expiresAt, req.now + req.ttlSeconds * 1000, req.notAfter),
        renewable: false,
      };
    },

    async revoke(target: RevokeTarget): Promise<void> {
      const token = openToken(sealKey, target.backendRef);
      if (token === undefined) {
        throw new BrokerError(
          'INTERNAL',
          `github: cannot revoke lease ${target.leaseId}: unknown backend reference`,
          { reason: 'github_bad_reference' },
        );
      }
      try {
        await call('DELETE', '/installation/token', token, undefined, now() + o.timeoutMs);
      } catch (err) {
        // 401: the token is already revoked or expired. Done.
        if (err instanceof GithubHttpError && err.status === 401) return;
        throw failure(err, 'revoking an installation token');
      }
    },
  };
}
