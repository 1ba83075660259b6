/**
 * Builds the cloud backends configured under `backends` (aws, github, ...) for main.ts, and the
 * incident lever that goes with them: deny every AWS session of a role issued before now.
 */
import type { CredentialBackend, RoleDefinition } from '../backend.js';
import { invalidArgument } from '../../errors.js';
import type { AwsBackendConfig } from '../aws/aws-config.js';
import { buildAwsBackend } from '../aws/build-aws-backend.js';
import { readAwsRoleSettings } from '../aws/aws-role-settings.js';
import type { DenyOlderSessions } from '../aws/deny-older-sessions.js';
import type { AzureBackendConfig } from '../azure/azure-config.js';
import { buildAzureBackend } from '../azure/build-azure-backend.js';
import { buildGcpBackend } from '../gcp/build-gcp-backend.js';
import type { GcpBackendConfig } from '../gcp/gcp-config.js';
import {
  buildGithubBackend,
  type GithubBackendConfig,
  type ReadVaultSecret,
} from '../github/github-config.js';

export interface CloudBackendsConfig {
  aws?: AwsBackendConfig | undefined;
  github?: GithubBackendConfig | undefined;
  gcp?: GcpBackendConfig | undefined;
  azure?: AzureBackendConfig | undefined;
}

export interface CloudLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface CloudDeps {
  /** FetchJWTSVID for an audience, from the Workload API, at exchange time. */
  fetchJwt: (audience: string) => Promise<string>;
  logger: CloudLogger;
  /** Reads a Vault secret with the broker's Vault login (the GitHub App key), when Vault is configured. */
  readVaultSecret?: ReadVaultSecret | undefined;
  now?: () => number;
}

/** What an incident responder gets back from denyOlderSessions; recorded in the audit trail. */
export interface DeniedSessions {
  role: string;
  roleArn: string;
  policyName: string;
  issuedBefore: string;
}

export interface CloudIncidents {
  /** Denies every session of this catalog role issued before `issuedBefore` (AWS roles only). */
  denyOlderSessions(role: string, issuedBefore: Date): Promise<DeniedSessions>;
}

export async function buildCloudBackends(
  config: CloudBackendsConfig,
  roles: ReadonlyMap<string, RoleDefinition>,
  deps: CloudDeps,
): Promise<{ backends: Map<string, CredentialBackend>; incidents: CloudIncidents }> {
  const backends = new Map<string, CredentialBackend>();
  let deny: DenyOlderSessions | undefined;
  if (config.aws) {
    // Each cloud SDK is loaded only when its backend is configured (build-*-backend.ts).
    const aws = await buildAwsBackend(config.aws, deps);
    backends.set('aws', aws.backend);
    deny = aws.denyOlderSessions;
  }
  if (config.github) backends.set('github', await buildGithubBackend(config.github, deps));
  if (config.gcp) backends.set('gcp', await buildGcpBackend(config.gcp, deps));
  if (config.azure) backends.set('azure', await buildAzureBackend(config.azure, deps));
  return {
    backends,
    incidents: {
      async denyOlderSessions(roleName, issuedBefore) {
        const role = roles.get(roleName);
        const read = role?.backend === 'aws' ? readAwsRoleSettings(role.settings) : undefined;
        if (!read?.ok || !deny) {
          throw invalidArgument('deny_older_sessions', `"${roleName}" is not a configured aws role`);
        }
        const { policyName } = await deny(read.settings.roleName, issuedBefore);
        return {
          role: roleName,
          roleArn: read.settings.roleArn,
          policyName,
          issuedBefore: issuedBefore.toISOString(),
        };
      },
    },
  };
}
