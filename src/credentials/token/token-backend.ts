/**
 * The `token` backend: the broker mints its own short-lived access tokens (RFC 9068 JWTs signed
 * with ES256), which downstream services verify against the broker's JWKS. No external system is
 * involved, so it is the backend that works everywhere, including the dev stack.
 */
import { SignJWT } from 'jose';
import type { CredentialBackend, IssueRequest, IssuedCredential, RoleDefinition } from '../backend.js';
import { BrokerError, failedPrecondition } from '../../errors.js';
import { signCompactJws } from './compact-jws.js';
import type { SigningKey, SigningKeyRing } from './signing-keys.js';

export interface TokenBackendOptions {
  /** The broker's SPIFFE ID, or a function returning it, since the SVID (and so the ID) can rotate. */
  issuer: string | (() => string);
  keys: SigningKeyRing;
  /**
   * Clock skew that verifiers tolerate past `exp`; a role's max TTL plus this must fit in the key
   * overlap, or a still-acceptable token could meet a JWKS that no longer has its key.
   */
  clockSkewSeconds?: number;
  /**
   * `node` (default): node's crypto.sign with the key's cached KeyObject. `jose`: WebCrypto
   * through jose, the path before; kept for the bench, which measures both in one run.
   */
  signer?: 'node' | 'jose';
}

export interface TokenRoleSettings {
  audience: string | string[];
  /** Space-separated, as in the `scope` claim. */
  scope: string;
}

const KNOWN_SETTINGS = new Set(['audience', 'scope']);
/** RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

type SettingsResult = { ok: true; settings: TokenRoleSettings } | { ok: false; problems: string[] };

/** Reads and checks a role's settings, collecting every problem rather than stopping at the first. */
export function readTokenRoleSettings(settings: Record<string, unknown>): SettingsResult {
  const problems: string[] = [];
  for (const key of Object.keys(settings)) {
    if (!KNOWN_SETTINGS.has(key)) problems.push(`settings.${key}: unknown setting (known: audience, scope)`);
  }

  let audience: string | string[] | undefined;
  const rawAudience = settings.audience;
  if (rawAudience === undefined) {
    problems.push('settings.audience: required (a non-empty string or array of strings)');
  } else if (typeof rawAudience === 'string') {
    if (rawAudience === '') problems.push('settings.audience: must not be empty');
    else audience = rawAudience;
  } else if (Array.isArray(rawAudience)) {
    const items: unknown[] = rawAudience;
    if (items.length === 0) problems.push('settings.audience: must not be an empty array');
    else if (!items.every((item): item is string => typeof item === 'string' && item !== '')) {
      problems.push('settings.audience: every entry must be a non-empty string');
    } else audience = items;
  } else {
    problems.push(`settings.audience: must be a string or an array of strings, got ${typeName(rawAudience)}`);
  }

  let scope: string | undefined;
  const rawScope = settings.scope;
  let scopeTokens: unknown[] | undefined;
  if (rawScope === undefined) {
    problems.push('settings.scope: required (a space-separated string or an array of strings)');
  } else if (typeof rawScope === 'string') {
    scopeTokens = rawScope.split(' ').filter((token) => token !== '');
  } else if (Array.isArray(rawScope)) {
    scopeTokens = rawScope;
  } else {
    problems.push(`settings.scope: must be a string or an array of strings, got ${typeName(rawScope)}`);
  }
  if (scopeTokens !== undefined) {
    const bad = scopeTokens.filter((token) => typeof token !== 'string' || !SCOPE_TOKEN.test(token));
    if (scopeTokens.length === 0) problems.push('settings.scope: must name at least one scope');
    else if (bad.length > 0) {
      problems.push(
        `settings.scope: invalid scope token(s) ${bad.map((t) => JSON.stringify(t)).join(', ')} ` +
          '(printable ASCII without space, " or \\)',
      );
    } else scope = (scopeTokens as string[]).join(' ');
  }

  if (problems.length > 0 || audience === undefined || scope === undefined) return { ok: false, problems };
  return { ok: true, settings: { audience, scope } };
}

export function createTokenBackend(options: TokenBackendOptions): CredentialBackend {
  const { keys } = options;
  const clockSkewSeconds = options.clockSkewSeconds ?? 0;
  const useJose = options.signer === 'jose';
  const issuer = typeof options.issuer === 'function' ? options.issuer : () => options.issuer as string;

  return {
    name: 'token',

    validateRole(role: RoleDefinition): string[] {
      const result = readTokenRoleSettings(role.settings);
      const problems = result.ok ? [] : [...result.problems];
      if (role.maxTtlSeconds + clockSkewSeconds > keys.overlapSeconds) {
        problems.push(
          `maxTtlSeconds ${role.maxTtlSeconds} (+ ${clockSkewSeconds}s clock skew) exceeds the signing key ` +
            `overlap of ${keys.overlapSeconds}s: tokens would outlive the key that verifies them`,
        );
      }
      return problems;
    },

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const read = readTokenRoleSettings(req.role.settings);
      if (!read.ok) {
        // validateRole ran at startup, so this is a wiring bug; the detail is for the log only.
        throw new BrokerError('INTERNAL', 'token backend misconfigured', {
          cause: new Error(`token: role ${req.role.name}: ${read.problems.join('; ')}`),
        });
      }
      const { audience, scope } = read.settings;
      const iss = issuer();
      if (iss === '') throw new BrokerError('INTERNAL', 'token backend has no issuer identity');

      const iat = Math.floor(req.now / 1000);
      // Never past notAfter: the token must die with the task even if the TTL would run longer.
      const exp = Math.floor(Math.min(req.now + req.ttlSeconds * 1000, req.notAfter) / 1000);
      if (exp <= iat) {
        throw failedPrecondition('ttl_exhausted', 'no time left to issue a credential before the task ends');
      }

      const key = keys.current();
      const token = await signToken(key, useJose, {
        iss,
        sub: req.agent,
        // RFC 9068 §2.2: the client the token was issued to. The agent holds it for itself, so the
        // client is the subject: its SPIFFE ID.
        client_id: req.agent,
        aud: audience,
        scope,
        task: req.taskId,
        env: req.environment,
        role: req.role.name,
        jti: req.leaseId,
        ...actClaim(req.delegationChain),
        iat,
        nbf: iat,
        exp,
      });

      return {
        credential: {
          kind: 'jwt',
          token,
          data: {},
          metadata: {
            token_type: 'Bearer',
            aud: Array.isArray(audience) ? audience.join(' ') : audience,
            scope,
            kid: key.kid,
          },
        },
        backendRef: req.leaseId,
        expiresAt: exp * 1000,
        renewable: false,
      };
    },

    async revoke(): Promise<void> {
      // A signed JWT cannot be recalled: it stays cryptographically valid until exp. Revocation is
      // enforced by denylisting its jti: the lease store keeps revoked, unexpired jtis and the
      // broker serves that list for verifiers (see verifyAccessToken's revokedJtis). The backend
      // itself holds nothing to undo, so revoke succeeds, idempotently, as the contract requires.
    },
  };
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'array' : typeof value;
}

/** An RFC 9068 access token: ES256, `typ: at+jwt`, the key's kid. */
async function signToken(
  key: SigningKey,
  useJose: boolean,
  claims: Record<string, unknown>,
): Promise<string> {
  const header = { alg: 'ES256', kid: key.kid, typ: 'at+jwt' } as const;
  if (useJose) return new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
  return signCompactJws(header, claims, key.sign);
}

/** RFC 8693 §4.1 actor claim of a delegated task's token, nested from the current actor outward. */
export type ActClaim = { sub: string; act?: ActClaim };

/**
 * `chain` runs from the root task's owner down to the token's subject (its last entry): the `act`
 * claim names the delegating agents, the one that delegated to the subject outermost, so
 * `{sub: delegate, act: {sub: parent, act: {sub: root}}}`. Nothing for a root task.
 */
export function actClaim(chain: readonly string[] | undefined): { act?: ActClaim } {
  let act: ActClaim | undefined;
  for (const sub of (chain ?? []).slice(0, -1)) act = act ? { sub, act } : { sub };
  return act ? { act } : {};
}
