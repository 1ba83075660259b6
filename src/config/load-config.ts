/**
 * Loads the YAML config (optional), applies the documented env overrides, validates against the
 * schema listing every problem, and freezes the result.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { RoleDefinition } from '../credentials/backend.js';
import { configSchema, type BrokerConfig, type RoleConfig } from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** The env vars that override config, in one place for the README's reference table. */
export const ENV_OVERRIDES = {
  SVID_BROKER_CONFIG: 'path of the YAML config file',
  SPIFFE_ENDPOINT_SOCKET: 'workloadApi.socket',
  SVID_BROKER_ID: 'workloadApi.expectedId',
  SVID_BROKER_LISTEN: 'listen',
  SVID_BROKER_HTTP_LISTEN: 'httpListen',
  REDIS_URL: 'redis.url',
  REDIS_SENTINELS: 'redis.sentinels',
  REDIS_SENTINEL_NAME: 'redis.sentinelName',
  REDIS_SENTINEL_PASSWORD: 'redis.sentinelPassword',
  REDIS_CLUSTER_NODES: 'redis.cluster',
  REDIS_USERNAME: 'redis.username',
  REDIS_PASSWORD_FILE: 'redis.passwordFile',
  REDIS_CA_FILE: 'redis.caFile',
  SVID_BROKER_POLICY_DIR: 'policy.dir',
  SVID_BROKER_AUDIT_FILE: 'audit.file',
} as const;

type Env = Record<string, string | undefined>;

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    const next = cur[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1] as string] = value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Validates a plain object (already merged with env overrides). */
export function parseConfig(raw: unknown, source = 'config'): Readonly<BrokerConfig> {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    const problems = result.error.issues.map(
      (i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`,
    );
    throw new ConfigError(source, problems);
  }
  return deepFreeze(result.data);
}

/** Reads SVID_BROKER_CONFIG (or `file`), applies env overrides, validates. */
export function loadConfig(opts: { file?: string; env?: Env } = {}): Readonly<BrokerConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.SVID_BROKER_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, [`cannot read: ${(err as Error).message}`]);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw new ConfigError(file, [`not valid YAML: ${(err as Error).message}`]);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed))
        throw new ConfigError(file, ['expected a mapping']);
      raw = parsed as Record<string, unknown>;
    }
  }
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (name !== 'SVID_BROKER_CONFIG' && value !== undefined && value !== '') setPath(raw, path, value);
  }
  return parseConfig(raw, file ?? 'defaults and environment');
}

const GENERIC_ROLE_KEYS = new Set(['description', 'maxTtlSeconds', 'sensitivity', 'environments']);

/** Turns the role catalog into RoleDefinitions: generic fields plus backend settings. */
export function roleDefinitions(config: Readonly<BrokerConfig>): Map<string, RoleDefinition> {
  const roles = new Map<string, RoleDefinition>();
  for (const [name, role] of Object.entries(config.roles) as Array<[string, RoleConfig]>) {
    const settings: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(role)) if (!GENERIC_ROLE_KEYS.has(k)) settings[k] = v;
    roles.set(
      name,
      Object.freeze({
        name,
        backend: name.slice(0, name.indexOf('/')),
        maxTtlSeconds: role.maxTtlSeconds,
        sensitivity: role.sensitivity,
        environments: [...role.environments],
        description: role.description,
        settings,
      }),
    );
  }
  return roles;
}
