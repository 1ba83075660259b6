/**
 * A Vault emulator set up as the broker expects a real Vault to be: JWT auth bound to the broker's
 * SPIFFE ID (JWKS from a LocalCa), a policy for the broker, a database and an AWS engine; plus the
 * broker's Vault client, login and backend on top, with a logger that keeps every line.
 */
import type { IssueRequest, RoleDefinition } from '../../../src/credentials/backend.js';
import type { CredentialBackend } from '../../../src/credentials/backend.js';
import {
  VaultAuth,
  type VaultAuthMethod,
  type VaultLogger,
} from '../../../src/credentials/vault/vault-auth.js';
import { createVaultBackend } from '../../../src/credentials/vault/vault-backend.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';

export const BROKER_ID = 'spiffe://example.org/svid-broker';
export const AGENT_ID = 'spiffe://example.org/agent/deployer';
export const VAULT_AUDIENCE = 'vault';
export const BROKER_VAULT_ROLE = 'svid-broker';

/** What the broker needs at Vault (README: "the policy the broker needs"). */
export const BROKER_POLICY = {
  'database/creds/*': ['read'],
  'aws/creds/*': ['read'],
  'aws/sts/*': ['read', 'update'],
  // sudo: the agent's policies need not be a subset of the broker's own.
  'auth/token/create-orphan': ['update', 'sudo'],
  'auth/token/create': ['update', 'sudo'],
  'auth/token/revoke-accessor': ['update'],
  'sys/leases/revoke': ['update'],
} as const;

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: object;
  msg: string;
}

export interface VaultHarness {
  ca: LocalCa;
  vault: VaultEmulator;
  client: VaultClient;
  auth: VaultAuth;
  backend: CredentialBackend;
  logs: LogLine[];
  /** JWT-SVIDs handed to the login, for the "no secret in errors or logs" checks. */
  jwts: string[];
  close(): Promise<void>;
}

export interface HarnessOptions {
  timeoutMs?: number;
  /** Broker token lifetime at Vault (the JWT role's token_ttl). Default 1h. */
  tokenTtl?: string | number;
  /** Audience the broker asks its JWT-SVID for; default the one Vault's role binds. */
  audience?: string;
  method?: VaultAuthMethod;
  namespaces?: string[];
  namespace?: string;
  now?: () => number;
}

export function captureLogger(): { logger: VaultLogger; logs: LogLine[] } {
  const logs: LogLine[] = [];
  const at =
    (level: LogLine['level']) =>
    (obj: object, msg: string): void => {
      logs.push({ level, obj, msg });
    };
  return { logger: { info: at('info'), warn: at('warn'), error: at('error') }, logs };
}

export async function startVaultHarness(opts: HarnessOptions = {}): Promise<VaultHarness> {
  const ca = await LocalCa.create('example.org');
  const vault = await startVaultEmulator({
    ...(opts.namespaces ? { namespaces: opts.namespaces } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  const ns = opts.namespace !== undefined ? { namespace: opts.namespace } : {};
  vault.configureJwtAuth({
    ...ns,
    jwks: () => ca.jwks(),
    roles: {
      [BROKER_VAULT_ROLE]: {
        bound_audiences: [VAULT_AUDIENCE],
        bound_subject: BROKER_ID,
        user_claim: 'sub',
        token_policies: ['svid-broker'],
        token_ttl: opts.tokenTtl ?? '1h',
      },
    },
  });
  vault.setPolicy('svid-broker', BROKER_POLICY, ns);
  vault.setPolicy('ci-read', { 'secret/data/ci/*': ['read'] }, ns);
  vault.configureDatabaseRole('readonly', { default_ttl: '1h', max_ttl: '24h', ...ns });
  vault.configureAwsRole('deploy', { default_ttl: '1h', max_ttl: '2h', ...ns });

  const jwts: string[] = [];
  const { logger, logs } = captureLogger();
  const client = new VaultClient({
    endpoint: vault.url,
    insecure: true, // the emulator speaks plain HTTP
    timeoutMs: opts.timeoutMs ?? 2000,
    ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
  });
  const auth = new VaultAuth({
    client,
    method: opts.method ?? {
      method: 'jwt',
      role: BROKER_VAULT_ROLE,
      audience: opts.audience ?? VAULT_AUDIENCE,
    },
    fetchJwt: async (audience) => {
      const jwt = await ca.mintJwtSvid(BROKER_ID, [audience]);
      jwts.push(jwt);
      return jwt;
    },
    logger,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const backend = createVaultBackend({ client, auth, logger });
  return { ca, vault, client, auth, backend, logs, jwts, close: () => vault.close() };
}

export function vaultRole(
  name: string,
  settings: Record<string, unknown>,
  maxTtlSeconds = 3600,
): RoleDefinition {
  return {
    name: `vault/${name}`,
    backend: 'vault',
    maxTtlSeconds,
    sensitivity: 'confidential',
    environments: [],
    description: '',
    settings,
  };
}

let counter = 0;

export function issueRequest(role: RoleDefinition, overrides: Partial<IssueRequest> = {}): IssueRequest {
  const now = overrides.now ?? Date.now();
  counter++;
  return {
    leaseId: `lease-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    agent: AGENT_ID,
    taskId: `task-${counter}`,
    environment: 'staging',
    role,
    ttlSeconds: 900,
    notAfter: now + 3600_000,
    now,
    ...overrides,
  };
}
