/**
 * A broker harness wired to a Vault emulator set up as the README tells operators to set up Vault:
 * JWT auth bound to the broker's SPIFFE ID, the broker's policy, a database engine; plus the vault
 * roles and a test policy letting the demo agent use them in dev. Shared by tests and the bench.
 */
import type { LocalCa } from '../../src/dev/local-ca.js';
import { BROKER_ID, startHarness, type Harness, type HarnessOptions } from './broker-harness.js';
import { startVaultEmulator, type PolicyRules, type VaultEmulator } from './vault-emulator/index.js';

export const VAULT_TEST_POLICY = `
@id("test-demo-vault-dev")
@reason("the demo agent may use vault roles in dev")
permit (
  principal == Agent::"spiffe://example.org/agents/demo",
  action == Action::"IssueCredential",
  resource in Backend::"vault"
)
when { context.environment == "dev" };
`;

export const VAULT_ROLES = {
  'vault/db-readonly': {
    kind: 'dynamic',
    path: 'database/creds/readonly',
    maxTtlSeconds: 600,
    sensitivity: 'confidential',
  },
  'vault/ci-token': { kind: 'token', policies: ['ci-read'], maxTtlSeconds: 600, sensitivity: 'confidential' },
  // A wrapped dynamic secret: the agent unwraps it; Vault gives it the database role's TTL.
  'vault/db-wrapped': {
    kind: 'dynamic',
    path: 'database/creds/readonly',
    wrap: true,
    maxTtlSeconds: 600,
    sensitivity: 'confidential',
  },
  // AWS STS sessions: Vault hands out a lease, but AWS cannot end a session early.
  'vault/deploy-sts': {
    kind: 'dynamic',
    path: 'aws/sts/deploy',
    ttlParam: true,
    maxTtlSeconds: 3600,
    sensitivity: 'confidential',
  },
} as const;

/** The broker's Vault policy in the emulator (README: "Configure Vault for the broker"). */
export const BROKER_VAULT_POLICY: PolicyRules = {
  'database/creds/*': ['read'],
  'aws/sts/*': ['update'],
  'auth/token/create-orphan': ['update', 'sudo'],
  'auth/token/create': ['update', 'sudo'],
  'auth/token/revoke-accessor': ['update'],
  'sys/leases/revoke': ['update'],
};

export interface VaultBroker {
  vault: VaultEmulator;
  h: Harness;
  close(): Promise<void>;
}

export async function startVaultBroker(
  opts: { timeoutMs?: number; config?: Record<string, unknown> } & Omit<HarnessOptions, 'config'> = {},
): Promise<VaultBroker> {
  const vault = await startVaultEmulator();
  // The broker's JWT-SVIDs are signed by the harness CA, which exists only once the harness runs.
  const caRef: { ca?: LocalCa } = {};
  vault.configureJwtAuth({
    jwks: () => {
      if (!caRef.ca) throw new Error('CA not ready');
      return caRef.ca.jwks();
    },
    roles: {
      'svid-broker': {
        bound_audiences: ['vault'],
        bound_subject: BROKER_ID,
        user_claim: 'sub',
        token_policies: ['svid-broker'],
        token_ttl: '1h',
      },
    },
  });
  vault.setPolicy('svid-broker', BROKER_VAULT_POLICY);
  vault.setPolicy('ci-read', { 'secret/data/ci/*': ['read'] });
  vault.configureDatabaseRole('readonly', { default_ttl: '1h', max_ttl: '24h' });
  vault.configureAwsRole('deploy', { default_ttl: '1h', max_ttl: '2h' });
  const { timeoutMs, config, ...harnessOpts } = opts;
  let h: Harness;
  try {
    h = await startHarness({
      ...harnessOpts,
      extraPolicies: VAULT_TEST_POLICY,
      config: {
        ...config,
        backends: {
          vault: {
            address: vault.url,
            insecure: true, // the emulator speaks plain HTTP
            timeoutMs: timeoutMs ?? 1000,
            auth: { method: 'jwt', role: 'svid-broker', audience: 'vault' },
          },
        },
        roles: { ...VAULT_ROLES, ...((config?.roles as Record<string, unknown> | undefined) ?? {}) },
      },
    });
  } catch (err) {
    await vault.close();
    throw err;
  }
  caRef.ca = h.ca;
  return {
    vault,
    h,
    async close() {
      await h.close();
      await vault.close();
    },
  };
}
