/**
 * `svid-broker config validate FILE`: everything the broker checks about its configuration at
 * startup, without starting anything (no Workload API, Redis or Vault): the schema, the role
 * catalog against the backends' own rules, the agent catalog and the SPIRE registration it
 * generates. The file is read as written; env overrides are not applied.
 */
import { ConfigError, loadConfig, roleDefinitions } from '../config/load-config.js';
import type { BrokerConfig } from '../config/schema.js';
import type { Command } from './command.js';
import type { RoleDefinition } from '../credentials/backend.js';
import { readAwsRoleSettings } from '../credentials/aws/aws-role-settings.js';
import { readAzureRoleSettings } from '../credentials/azure/azure-role-settings.js';
import type { SettingsRead } from '../credentials/cloud/role-settings.js';
import { readGcpRoleSettings } from '../credentials/gcp/gcp-role-settings.js';
import { readGithubRoleSettings } from '../credentials/github/github-role-settings.js';
import { SigningKeyRing } from '../credentials/token/signing-keys.js';
import { createTokenBackend } from '../credentials/token/token-backend.js';
import { readVaultRoleSettings } from '../credentials/vault/vault-role-settings.js';
import { parseEndpointSocket } from '../identity/workload-api.js';
import { AgentCatalog } from '../policy/agent-catalog.js';
import { generateEntries, registeredAgents } from '../spire/registration.js';

export interface ConfigReport {
  problems: string[];
  warnings: string[];
  /** One line for a valid file. */
  summary: string;
}

/**
 * The settings readers of the backends that dial out when built (their SDK or their server):
 * building them here would need the network, so their role settings are read as the backend
 * reads them at startup. Limits the broker learns at startup (AWS session length) are not checked.
 */
const SETTINGS_READERS: Record<string, (role: RoleDefinition) => SettingsRead<unknown>> = {
  vault: (role) => readVaultRoleSettings(role.settings, role.maxTtlSeconds),
  aws: (role) => readAwsRoleSettings(role.settings),
  github: (role) => readGithubRoleSettings(role.settings),
  gcp: (role) => readGcpRoleSettings(role.settings),
  azure: (role) => readAzureRoleSettings(role.settings),
};

const BACKENDS = ['token', ...Object.keys(SETTINGS_READERS)];

/**
 * What the backends say about each role: the token backend itself (with a throwaway key ring of
 * the configured overlap), and the others' settings readers, when their backend is configured.
 */
async function roleProblems(
  config: Readonly<BrokerConfig>,
  roles: Map<string, RoleDefinition>,
): Promise<string[]> {
  const problems: string[] = [];
  const maxTtl = Math.max(0, ...[...roles.values()].map((r) => r.maxTtlSeconds));
  const keys = await SigningKeyRing.create({
    overlapSeconds: config.backends.token.keyOverlapSeconds ?? maxTtl + 300,
  });
  const token = createTokenBackend({ issuer: '', keys });
  for (const role of roles.values()) {
    const at = `roles.${role.name}`;
    const read = SETTINGS_READERS[role.backend];
    if (role.backend === 'token') {
      problems.push(...token.validateRole(role).map((p) => `${at}: ${p}`));
    } else if (read === undefined) {
      problems.push(`${at}: unknown backend "${role.backend}" (available: ${BACKENDS.join(', ')})`);
    } else {
      if (!config.backends[role.backend as keyof typeof config.backends]) {
        problems.push(`${at}: needs backends.${role.backend}`);
      }
      const result = read(role);
      if (!result.ok) problems.push(...result.problems.map((p) => `${at}: ${p}`));
    }
  }
  return problems;
}

function catalogProblems(config: Readonly<BrokerConfig>): string[] {
  const problems: string[] = [];
  try {
    new AgentCatalog(config.agents);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (registeredAgents(config).length > 0 && config.spire.parentId !== undefined) {
    try {
      generateEntries(config);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  const groups = new Set(config.agents.flatMap((a) => a.groups));
  for (const group of Object.keys(config.spire.groups)) {
    if (!groups.has(group)) problems.push(`spire.groups.${group}: no catalog entry has this group`);
  }
  return problems;
}

function warningsOf(config: Readonly<BrokerConfig>): string[] {
  const warnings: string[] = [];
  if (config.redis.store === 'memory')
    warnings.push('redis.store is memory: leases are not durable (dev only)');
  try {
    if (new URL(config.redis.url).password !== '') {
      warnings.push('redis.url carries a password in the config text: use redis.passwordFile');
    }
  } catch {
    // the schema would have said
  }
  if (config.redis.store === 'redis' && !config.redis.url.startsWith('rediss://')) {
    warnings.push('redis.url is not rediss://: Redis traffic is not encrypted');
  }
  if (config.workloadApi.expectedId === undefined) {
    warnings.push(
      'workloadApi.expectedId is not set: the Workload API must offer the broker exactly one SVID',
    );
  }
  return warnings;
}

/** Validates `file`; never throws for a bad file (the report lists why). */
export async function validateConfigFile(file: string): Promise<ConfigReport> {
  let config: Readonly<BrokerConfig>;
  try {
    config = loadConfig({ file, env: {} });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { problems: err.problems, warnings: [], summary: '' };
  }
  const problems: string[] = [];
  try {
    parseEndpointSocket(config.workloadApi.socket);
  } catch (err) {
    problems.push(`workloadApi.socket: ${(err as Error).message}`);
  }
  const roles = roleDefinitions(config);
  problems.push(...(await roleProblems(config, roles)), ...catalogProblems(config));
  const backends = [...new Set([...roles.values()].map((r) => r.backend))].sort().join(', ') || 'none';
  const summary =
    `ok: ${file}: ${roles.size} roles (backends: ${backends}), ${config.agents.length} catalog entries, ` +
    `${registeredAgents(config).length} SPIRE workloads`;
  return { problems, warnings: warningsOf(config), summary };
}

/** Prints every problem and warning; exit 0 when the broker would accept the file. */
async function runConfigValidate(file: string): Promise<number> {
  const report = await validateConfigFile(file);
  for (const p of report.problems) console.error(`${file}: ${p}`);
  for (const w of report.warnings) console.error(`warning: ${file}: ${w}`);
  if (report.problems.length > 0) {
    console.error(`${report.problems.length} problem(s): the broker would not start with this file`);
    return 1;
  }
  console.log(report.summary);
  return 0;
}

export const CONFIG_COMMANDS: Command[] = [
  {
    path: 'config validate',
    args: 'FILE',
    positionals: [1, 1],
    summary: 'Check a config file (schema, roles, backends, catalog) without starting anything.',
    flags: {},
    notes: 'exit codes: 0 valid, 1 a problem, 2 usage',
    run: (p) => runConfigValidate(p.positionals[0] as string),
  },
];
