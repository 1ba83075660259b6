/**
 * The `vault` backend: just-in-time Vault dynamic secrets and Vault tokens, bound to the task and
 * revoked at Vault when the broker lease ends (spec: shared/spec/vault.md; role settings:
 * vault-role-settings.ts).
 *
 * Lifetimes. The broker hands in ttlSeconds already bounded to min(requested, role max, task
 * remaining) and notAfter = the task's end. A dynamic secret is requested with that TTL where the
 * engine takes one (`ttlParam`); Vault's `lease_duration` is the truth about how long the secret
 * lives, so the broker lease ends at the earliest of Vault's lease end, the granted TTL and the
 * task's end. When Vault's lease would run longer (an engine that ignores `ttl`, such as database
 * roles with a longer default_ttl), the backendRef keeps the Vault lease id and the broker revokes
 * it when its own lease ends (reaper, end of task), so the secret still dies on time.
 *
 * Backend references (never a token or a secret):
 * - `lease:<lease_id>`              a dynamic secret          -> sys/leases/revoke
 * - `accessor:<accessor>`           a token                   -> auth/token/revoke-accessor
 * - `wrapped-accessor:<accessor>`   a wrapped token           -> auth/token/revoke-accessor (the
 *                                   wrapped token's accessor: Vault reports it, spec §5)
 * - `wrap:<wrapping accessor>[@<ms>]` a wrapped dynamic secret -> auth/token/revoke-accessor on
 *                                   the wrapping token. Revoking it stops a wrap nobody unwrapped
 *                                   yet. The Vault lease behind the wrap is inside the wrapped
 *                                   response, which the broker never sees: Vault gives it the role's
 *                                   default TTL (a read takes no TTL, spec §10), so it is not
 *                                   bounded by the task, and once unwrapped nothing the broker can
 *                                   call ends it before its TTL or the end of the broker token that
 *                                   requested it (`@<ms>`, epoch ms; absent when that token never
 *                                   expires). Such roles are `expires_only`: a revocation reports
 *                                   them not revocable, valid until `<ms>`, never revoked.
 *
 * Failure behaviour: Vault sealed, down, slow or rate-limiting -> UNAVAILABLE within the client's
 * timeout, nothing issued. A response that arrives after the timeout is revoked at once, since the
 * broker never recorded it. Revocation is idempotent (an unknown lease succeeds at Vault; an
 * `invalid accessor` for a token already gone counts as done); any other failure throws
 * UNAVAILABLE so the broker can queue a retry.
 */
import type {
  Credential,
  CredentialBackend,
  IssueRequest,
  IssuedCredential,
  RevokeTarget,
  RoleDefinition,
} from '../backend.js';
import { BrokerError, failedPrecondition } from '../../errors.js';
import type { VaultAuth, VaultLogger } from './vault-auth.js';
import { isVaultError, type VaultClient, type VaultResponse } from './vault-client.js';
import {
  isStsPath,
  readVaultRoleSettings,
  type VaultDynamicSettings,
  type VaultRoleSettings,
  type VaultTokenSettings,
} from './vault-role-settings.js';

export interface VaultBackendOptions {
  client: VaultClient;
  auth: VaultAuth;
  logger?: VaultLogger;
}

const SILENT: VaultLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** The kinds of backendRef this backend writes; each revokes through one Vault endpoint. */
const REF_KINDS = ['lease', 'accessor', 'wrapped-accessor', 'wrap'] as const;
type RefKind = (typeof REF_KINDS)[number];

export function parseVaultRef(ref: string): { kind: RefKind; id: string; until?: number } | undefined {
  const colon = ref.indexOf(':');
  if (colon <= 0) return undefined;
  const kind = REF_KINDS.find((k) => k === ref.slice(0, colon));
  let id = ref.slice(colon + 1);
  let until: number | undefined;
  const at = kind === 'wrap' ? id.indexOf('@') : -1;
  if (at >= 0) {
    until = Number(id.slice(at + 1));
    id = id.slice(0, at);
    if (!Number.isSafeInteger(until)) return undefined;
  }
  return kind && id !== '' ? { kind, id, ...(until !== undefined ? { until } : {}) } : undefined;
}

/** A wrapped dynamic secret: once unwrapped, only its Vault TTL or its owner token's end stops it. */
const isWrappedDynamic = (s: VaultRoleSettings): boolean => s.kind === 'dynamic' && s.wrap;

/** Secret values as the agent receives them: strings as they are, anything else as JSON. */
function stringifyValues(data: Record<string, unknown> | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(data ?? {})) {
    out[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

function malformed(what: string): BrokerError {
  return new BrokerError('UNAVAILABLE', `Vault answered without ${what}`, {
    reason: 'vault_malformed_response',
  });
}

export function createVaultBackend(options: VaultBackendOptions): CredentialBackend {
  const { client, auth } = options;
  const logger = options.logger ?? SILENT;

  const revokeRef = async (ref: { kind: RefKind; id: string }): Promise<void> => {
    try {
      await auth.withToken((token) =>
        ref.kind === 'lease'
          ? client.request({ method: 'PUT', path: 'sys/leases/revoke', token, body: { lease_id: ref.id } })
          : client.request({
              method: 'POST',
              path: 'auth/token/revoke-accessor',
              token,
              body: { accessor: ref.id },
            }),
      );
    } catch (err) {
      // The token (or wrapping token) is already gone: revoked, expired, or unwrapped. Done.
      if (
        isVaultError(err) &&
        err.status === 400 &&
        ref.kind !== 'lease' &&
        err.vaultErrors.some((e) => /invalid accessor/i.test(e))
      ) {
        return;
      }
      throw err;
    }
  };

  /** For a response nobody was told about (it came after the timeout): revoke what it created. */
  const revokeLate =
    (settings: VaultRoleSettings, leaseId: string) =>
    (response: VaultResponse | undefined): void => {
      const ref = response && referenceOf(settings, response);
      if (!ref) return;
      logger.warn(
        { lease: leaseId, ref: ref.kind },
        'Vault answered after the timeout: revoking what it issued',
      );
      revokeRef(ref).catch((err: unknown) =>
        logger.error(
          { lease: leaseId, ref: ref.kind, err: err instanceof Error ? err.message : 'revoke failed' },
          'revoking a late Vault response failed; it ends with its TTL',
        ),
      );
    };

  /** Vault ends what a token created with the token: say so when that cuts a credential short. */
  const warnIfCut = (req: IssueRequest, ttlSeconds: number, ownerEnd: number): void => {
    if (ownerEnd < Math.min(req.now + ttlSeconds * 1000, req.notAfter)) {
      logger.warn(
        {
          lease: req.leaseId,
          role: req.role.name,
          ttlSeconds,
          ownerEndsIn: Math.floor((ownerEnd - req.now) / 1000),
        },
        "the broker's Vault token ends before the credential would: raise token_ttl of the broker's Vault role",
      );
    }
  };

  async function issueDynamic(
    req: IssueRequest,
    s: VaultDynamicSettings,
    ttlSeconds: number,
  ): Promise<IssuedCredential> {
    const ttl = `${ttlSeconds}s`;
    const path = s.ttlParam && s.method === 'GET' ? `${s.path}?ttl=${encodeURIComponent(ttl)}` : s.path;
    let ownerEnd = Infinity;
    const response = await auth.withToken(
      (token, tokenExpiresAt) => {
        ownerEnd = tokenExpiresAt;
        return client.request({
          method: s.method,
          path,
          token,
          ...(s.method === 'POST' ? { body: s.ttlParam ? { ttl } : {} } : {}),
          ...(s.wrap ? { wrapTtlSeconds: s.wrapTtlSeconds } : {}),
          onLateResponse: revokeLate(s, req.leaseId),
        });
      },
      { minValidityMs: ttlSeconds * 1000 },
    );
    if (s.wrap) return wrapped(req, s, response, ttlSeconds, ownerEnd);
    if (!response || response.lease_id === '') {
      // Without a lease the secret cannot be revoked (a static secret, e.g. KV): refuse it.
      throw new BrokerError('UNAVAILABLE', `Vault path ${s.path} returned no lease: not a dynamic secret`, {
        reason: 'vault_no_lease',
      });
    }
    const vaultEnd = response.lease_duration > 0 ? req.now + response.lease_duration * 1000 : Infinity;
    const expiresAt = Math.min(vaultEnd, req.now + ttlSeconds * 1000, req.notAfter, ownerEnd);
    warnIfCut(req, ttlSeconds, ownerEnd);
    const credential: Credential = {
      kind: 'vault_secret',
      token: '',
      data: stringifyValues(response.data),
      metadata: {
        path: s.path,
        lease_duration: String(response.lease_duration),
      },
    };
    return { credential, backendRef: `lease:${response.lease_id}`, expiresAt, renewable: false };
  }

  async function issueToken(
    req: IssueRequest,
    s: VaultTokenSettings,
    ttlSeconds: number,
  ): Promise<IssuedCredential> {
    const taskSeconds = Math.floor((req.notAfter - req.now) / 1000);
    // Renewals (when allowed) may go on to the explicit max, never past the task's end.
    const explicitMax = Math.min(s.explicitMaxTtlSeconds ?? taskSeconds, taskSeconds);
    const body = {
      policies: s.policies,
      meta: {
        ...s.meta,
        spiffe_id: req.agent,
        task_id: req.taskId,
        environment: req.environment,
        lease_id: req.leaseId,
        role: req.role.name,
      },
      ttl: `${ttlSeconds}s`,
      explicit_max_ttl: `${explicitMax}s`,
      num_uses: s.numUses,
      renewable: s.renewable,
      display_name: `svid-broker ${req.role.name}`,
      // Batch tokens have no accessor and cannot be revoked one by one (spec §2).
      type: 'service',
    };
    // A child token dies with the broker's token; an orphan does not depend on it.
    let ownerEnd = Infinity;
    const response = await auth.withToken(
      (token, tokenExpiresAt) => {
        ownerEnd = s.orphan ? Infinity : tokenExpiresAt;
        return client.request({
          method: 'POST',
          path: tokenCreatePath(s),
          token,
          body,
          ...(s.wrap ? { wrapTtlSeconds: s.wrapTtlSeconds } : {}),
          onLateResponse: revokeLate(s, req.leaseId),
        });
      },
      s.orphan ? {} : { minValidityMs: ttlSeconds * 1000 },
    );
    if (s.wrap) return wrapped(req, s, response, ttlSeconds, ownerEnd);
    const minted = response?.auth;
    if (!minted || minted.client_token === '' || minted.accessor === '') {
      if (minted?.accessor) await revokeRef({ kind: 'accessor', id: minted.accessor }).catch(() => undefined);
      throw malformed('a token and its accessor');
    }
    const vaultEnd = minted.lease_duration > 0 ? req.now + minted.lease_duration * 1000 : Infinity;
    const expiresAt = Math.min(vaultEnd, req.now + ttlSeconds * 1000, req.notAfter, ownerEnd);
    warnIfCut(req, ttlSeconds, ownerEnd);
    return {
      credential: {
        kind: 'vault_token',
        token: minted.client_token,
        data: {},
        metadata: {
          accessor: minted.accessor,
          policies: minted.policies.join(','),
          ttl_seconds: String(minted.lease_duration),
          renewable: String(minted.renewable),
          orphan: String(s.orphan),
        },
      },
      backendRef: `accessor:${minted.accessor}`,
      expiresAt,
      renewable: false,
    };
  }

  async function wrapped(
    req: IssueRequest,
    s: VaultRoleSettings,
    response: VaultResponse | undefined,
    ttlSeconds: number,
    ownerEnd: number,
  ): Promise<IssuedCredential> {
    const ref = response && referenceOf(s, response);
    const wrap = response?.wrap_info;
    if (!wrap || wrap.token === '' || !ref) {
      // Cannot hand out or cannot revoke: undo what Vault did, refuse.
      if (wrap?.accessor) await revokeRef({ kind: 'wrap', id: wrap.accessor }).catch(() => undefined);
      throw malformed(s.kind === 'token' ? 'a wrapping token and the wrapped accessor' : 'a wrapping token');
    }
    // The broker lease ends at the granted TTL, the task's end, or with the broker token. A wrapped
    // token has that TTL (sent with the request); a wrapped dynamic secret has its Vault role's
    // default TTL instead, up to the end of the broker token that read it: the ref and the
    // metadata carry that bound, and revocations report it.
    const expiresAt = Math.min(req.now + ttlSeconds * 1000, req.notAfter, ownerEnd);
    warnIfCut(req, ttlSeconds, ownerEnd);
    const bound = isWrappedDynamic(s) && Number.isFinite(ownerEnd) ? `@${ownerEnd}` : '';
    return {
      credential: {
        kind: 'vault_wrapped',
        token: wrap.token,
        data: {},
        metadata: {
          wrap_ttl_seconds: String(wrap.ttl),
          creation_path: wrap.creation_path,
          creation_time: wrap.creation_time,
          wrapped_kind: s.kind,
          unwrap_path: 'sys/wrapping/unwrap',
          ...(isWrappedDynamic(s)
            ? {
                secret_valid_until: Number.isFinite(ownerEnd)
                  ? new Date(ownerEnd).toISOString()
                  : 'unknown (the Vault role TTL)',
              }
            : {}),
        },
      },
      backendRef: `${ref.kind}:${ref.id}${bound}`,
      expiresAt,
      renewable: false,
    };
  }

  return {
    name: 'vault',

    validateRole(role: RoleDefinition): string[] {
      const result = readVaultRoleSettings(role.settings, role.maxTtlSeconds);
      return result.ok ? [] : result.problems;
    },

    // Vault can revoke the lease of an AWS STS credential, but AWS cannot end the session it
    // already handed out: it lives until its own expiry. A wrapped dynamic secret, once unwrapped,
    // lives until its Vault TTL (the broker never learns its lease id).
    revocability(role: RoleDefinition): 'revocable' | 'expires_only' {
      const read = readVaultRoleSettings(role.settings, role.maxTtlSeconds);
      if (!read.ok || read.settings.kind !== 'dynamic') return 'revocable';
      return isStsPath(read.settings.path) || isWrappedDynamic(read.settings) ? 'expires_only' : 'revocable';
    },

    validUntil(target: RevokeTarget): number | undefined {
      const ref = parseVaultRef(target.backendRef);
      if (ref?.kind !== 'wrap') return undefined;
      return ref.until ?? Infinity;
    },

    async issue(req: IssueRequest): Promise<IssuedCredential> {
      const read = readVaultRoleSettings(req.role.settings, req.role.maxTtlSeconds);
      if (!read.ok) {
        // validateRole ran at startup, so this is a wiring bug; the detail is for the log only.
        throw new BrokerError('INTERNAL', 'vault backend misconfigured', {
          cause: new Error(`vault: role ${req.role.name}: ${read.problems.join('; ')}`),
        });
      }
      const ttlSeconds = Math.min(req.ttlSeconds, Math.floor((req.notAfter - req.now) / 1000));
      if (ttlSeconds < 1) {
        throw failedPrecondition('ttl_exhausted', 'no time left to issue a credential before the task ends');
      }
      const s = read.settings;
      return s.kind === 'dynamic' ? issueDynamic(req, s, ttlSeconds) : issueToken(req, s, ttlSeconds);
    },

    async revoke(target: RevokeTarget): Promise<void> {
      const ref = parseVaultRef(target.backendRef);
      if (!ref) {
        // Never silently "done": the queue retries, then marks the lease revoke_failed and audits it.
        throw new BrokerError(
          'INTERNAL',
          `vault: cannot revoke lease ${target.leaseId}: unknown backend reference`,
          {
            reason: 'vault_bad_reference',
          },
        );
      }
      await revokeRef(ref);
    },
  };
}

/** Where a token is minted: the token role's endpoint, else create-orphan or create. */
function tokenCreatePath(s: VaultTokenSettings): string {
  if (s.tokenRole !== undefined) return `auth/token/create/${s.tokenRole}`;
  return s.orphan ? 'auth/token/create-orphan' : 'auth/token/create';
}

/** The reference that revokes what a (possibly wrapped) response created, or undefined. */
function referenceOf(
  s: VaultRoleSettings,
  response: VaultResponse,
): { kind: RefKind; id: string } | undefined {
  const wrap = response.wrap_info;
  if (wrap) {
    if (s.kind === 'token')
      return wrap.wrapped_accessor ? { kind: 'wrapped-accessor', id: wrap.wrapped_accessor } : undefined;
    return wrap.accessor ? { kind: 'wrap', id: wrap.accessor } : undefined;
  }
  if (s.kind === 'token')
    return response.auth?.accessor ? { kind: 'accessor', id: response.auth.accessor } : undefined;
  return response.lease_id ? { kind: 'lease', id: response.lease_id } : undefined;
}
