/**
 * The `settings` of a `vault/*` role in the role catalog, read and checked in one pass that lists
 * every problem (validateRole runs it at startup; issue reads it again).
 *
 * ```yaml
 * vault/db-readonly:            # a dynamic secret: any path that answers with a lease
 *   kind: dynamic
 *   path: database/creds/readonly
 * vault/aws-deploy:
 *   kind: dynamic
 *   path: aws/sts/deploy        # POST by default for <mount>/sts/<role>
 *   ttlParam: true              # send the granted TTL as `ttl` (engines that accept it)
 * vault/ci-token:               # a Vault token minted for the agent
 *   kind: token
 *   policies: [ci-read]
 *   orphan: true                # default: revoking the broker's own token does not cascade
 *   tokenRole: svid-broker-agents # mint through auth/token/create/<role> (no sudo needed)
 *   numUses: 0
 *   meta: { team: ci }          # merged with spiffe_id, task_id, environment, lease_id, role
 *   wrap: true                  # either kind: the agent gets a single-use wrapping token
 *   wrapTtlSeconds: 60
 * ```
 */

export type VaultRoleSettings = VaultDynamicSettings | VaultTokenSettings;

interface WrapSettings {
  /** Deliver a response-wrapping token instead of the secret (spec §5). */
  wrap: boolean;
  /** `X-Vault-Wrap-TTL`; default 60. */
  wrapTtlSeconds: number;
}

export interface VaultDynamicSettings extends WrapSettings {
  kind: 'dynamic';
  /** Vault path without `/v1/`, e.g. `database/creds/readonly`. */
  path: string;
  method: 'GET' | 'POST';
  /** Send the granted TTL as `ttl` (query for GET, body for POST) where the engine accepts it. */
  ttlParam: boolean;
}

export interface VaultTokenSettings extends WrapSettings {
  kind: 'token';
  policies: string[];
  /** `auth/token/create-orphan` (default) rather than a child of the broker's own token. */
  orphan: boolean;
  /**
   * Mint through `auth/token/create/<tokenRole>`: Vault applies the token role's allowed_policies
   * and orphan setting, and the broker needs no sudo. `orphan` must then say what the role does.
   */
  tokenRole?: string;
  /** Caps renewals; never beyond the task's end. */
  explicitMaxTtlSeconds?: number;
  /** 0 = unlimited (Vault's default). */
  numUses: number;
  /** Default false: the agent cannot stretch the token past what the broker granted. */
  renewable: boolean;
  meta: Record<string, string>;
}

/** Metadata keys the broker sets on every token, so Vault's audit log ties back to the broker's. */
export const RESERVED_META_KEYS = ['spiffe_id', 'task_id', 'environment', 'lease_id', 'role'] as const;

export const DEFAULT_WRAP_TTL_SECONDS = 60;

const COMMON_KEYS = ['kind', 'wrap', 'wrapTtlSeconds'];
const DYNAMIC_KEYS = ['path', 'method', 'ttlParam'];
const TOKEN_KEYS = [
  'policies',
  'orphan',
  'tokenRole',
  'explicitMaxTtlSeconds',
  'numUses',
  'renewable',
  'meta',
];

/** A Vault API path: segments of safe characters, no `..`, no leading slash, no query. */
const VAULT_PATH = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*(\/[A-Za-z0-9_.-]+)*$/;
const META_KEY = /^[A-Za-z0-9_.-]{1,128}$/;
/** `<mount>/sts/<role>`: AWS STS credentials are requested with POST (spec §4). */
const STS_PATH = /^[^/]+\/sts\/[^/]+$/;

/** An AWS STS path: its credentials are sessions AWS cannot revoke early. */
export const isStsPath = (path: string): boolean => STS_PATH.test(path);

export type VaultSettingsResult =
  { ok: true; settings: VaultRoleSettings } | { ok: false; problems: string[] };

function typeName(value: unknown): string {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'array' : typeof value;
}

function optionalBoolean(
  settings: Record<string, unknown>,
  key: string,
  fallback: boolean,
  problems: string[],
): boolean {
  const value = settings[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    problems.push(`settings.${key}: must be true or false, got ${typeName(value)}`);
    return fallback;
  }
  return value;
}

function optionalInteger(
  settings: Record<string, unknown>,
  key: string,
  min: number,
  problems: string[],
): number | undefined {
  const value = settings[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    problems.push(`settings.${key}: must be an integer >= ${min}, got ${JSON.stringify(value)}`);
    return undefined;
  }
  return value;
}

/**
 * Reads a role's settings, collecting every problem rather than stopping at the first.
 * `maxTtlSeconds` is the role's, for the checks that relate to it.
 */
export function readVaultRoleSettings(
  settings: Record<string, unknown>,
  maxTtlSeconds: number,
): VaultSettingsResult {
  const problems: string[] = [];
  const kind = settings.kind;
  if (kind !== 'dynamic' && kind !== 'token') {
    problems.push(
      kind === undefined
        ? 'settings.kind: required (dynamic or token)'
        : `settings.kind: must be dynamic or token, got ${JSON.stringify(kind)}`,
    );
  }
  const known = new Set([
    ...COMMON_KEYS,
    ...(kind === 'dynamic' ? DYNAMIC_KEYS : kind === 'token' ? TOKEN_KEYS : [...DYNAMIC_KEYS, ...TOKEN_KEYS]),
  ]);
  for (const key of Object.keys(settings)) {
    if (known.has(key)) continue;
    const belongs = DYNAMIC_KEYS.includes(key) ? 'dynamic' : TOKEN_KEYS.includes(key) ? 'token' : undefined;
    problems.push(
      belongs
        ? `settings.${key}: only for kind ${belongs} (this role is ${String(kind)})`
        : `settings.${key}: unknown setting (known: ${[...COMMON_KEYS, ...DYNAMIC_KEYS, ...TOKEN_KEYS].join(', ')})`,
    );
  }

  const wrap = optionalBoolean(settings, 'wrap', false, problems);
  const wrapTtlSeconds = optionalInteger(settings, 'wrapTtlSeconds', 1, problems) ?? DEFAULT_WRAP_TTL_SECONDS;
  if (settings.wrapTtlSeconds !== undefined && !wrap) {
    problems.push('settings.wrapTtlSeconds: only meaningful with wrap: true');
  }
  if (wrap && wrapTtlSeconds > maxTtlSeconds) {
    problems.push(
      `settings.wrapTtlSeconds: ${wrapTtlSeconds}s exceeds the role's maxTtlSeconds (${maxTtlSeconds}s): ` +
        'an unused wrapping token would outlive any credential of the role',
    );
  }

  if (kind === 'dynamic') {
    const path = settings.path;
    let validPath: string | undefined;
    if (path === undefined) problems.push('settings.path: required, e.g. database/creds/<role>');
    else if (typeof path !== 'string' || !VAULT_PATH.test(path) || path.split('/').includes('..')) {
      problems.push(
        `settings.path: must be a Vault path like database/creds/<role> (no leading slash, no query), got ${JSON.stringify(path)}`,
      );
    } else validPath = path;
    const rawMethod = settings.method;
    let method: 'GET' | 'POST' = validPath !== undefined && STS_PATH.test(validPath) ? 'POST' : 'GET';
    if (rawMethod !== undefined) {
      if (rawMethod === 'GET' || rawMethod === 'POST') method = rawMethod;
      else problems.push(`settings.method: must be GET or POST, got ${JSON.stringify(rawMethod)}`);
    }
    const ttlParam = optionalBoolean(settings, 'ttlParam', false, problems);
    if (problems.length > 0 || validPath === undefined) return { ok: false, problems };
    return { ok: true, settings: { kind, path: validPath, method, ttlParam, wrap, wrapTtlSeconds } };
  }

  if (kind === 'token') {
    let policies: string[] | undefined;
    const rawPolicies = settings.policies;
    if (rawPolicies === undefined)
      problems.push('settings.policies: required (a non-empty list of Vault policies)');
    else if (!Array.isArray(rawPolicies) || rawPolicies.length === 0) {
      problems.push(
        `settings.policies: must be a non-empty list of policy names, got ${typeName(rawPolicies)}`,
      );
    } else if (!rawPolicies.every((p): p is string => typeof p === 'string' && /^[A-Za-z0-9_.-]+$/.test(p))) {
      problems.push('settings.policies: every entry must be a policy name ([A-Za-z0-9_.-]+)');
    } else if (rawPolicies.includes('root')) {
      problems.push('settings.policies: must not include root');
    } else policies = rawPolicies;
    const orphan = optionalBoolean(settings, 'orphan', true, problems);
    const rawTokenRole = settings.tokenRole;
    let tokenRole: string | undefined;
    if (rawTokenRole !== undefined) {
      if (typeof rawTokenRole === 'string' && /^[A-Za-z0-9_.-]{1,128}$/.test(rawTokenRole))
        tokenRole = rawTokenRole;
      else
        problems.push(
          `settings.tokenRole: must be a Vault token role name, got ${JSON.stringify(rawTokenRole)}`,
        );
    }
    const renewable = optionalBoolean(settings, 'renewable', false, problems);
    const numUses = optionalInteger(settings, 'numUses', 0, problems) ?? 0;
    const explicitMaxTtlSeconds = optionalInteger(settings, 'explicitMaxTtlSeconds', 1, problems);
    const meta: Record<string, string> = {};
    const rawMeta = settings.meta;
    if (rawMeta !== undefined) {
      if (typeof rawMeta !== 'object' || rawMeta === null || Array.isArray(rawMeta)) {
        problems.push(`settings.meta: must map strings to strings, got ${typeName(rawMeta)}`);
      } else {
        for (const [key, value] of Object.entries(rawMeta)) {
          if ((RESERVED_META_KEYS as readonly string[]).includes(key)) {
            problems.push(
              `settings.meta.${key}: reserved (the broker sets ${RESERVED_META_KEYS.join(', ')})`,
            );
          } else if (!META_KEY.test(key)) {
            problems.push(`settings.meta: invalid key ${JSON.stringify(key)}`);
          } else if (typeof value !== 'string') {
            problems.push(`settings.meta.${key}: must be a string, got ${typeName(value)}`);
          } else meta[key] = value;
        }
      }
    }
    if (problems.length > 0 || policies === undefined) return { ok: false, problems };
    return {
      ok: true,
      settings: {
        kind,
        policies,
        orphan,
        renewable,
        numUses,
        meta,
        wrap,
        wrapTtlSeconds,
        ...(explicitMaxTtlSeconds !== undefined ? { explicitMaxTtlSeconds } : {}),
        ...(tokenRole !== undefined ? { tokenRole } : {}),
      },
    };
  }
  return { ok: false, problems };
}
