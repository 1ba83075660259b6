/**
 * A protocol-faithful Vault HTTP emulator for tests (no Vault server runs on our machines): real
 * token trees, leases that expire, dynamic secrets, single-use response wrapping, JWT login against a
 * JWKS, health and switchable faults, answering and rejecting as ../../../../shared/spec/vault.md says.
 *
 *   const vault = await startVaultEmulator({ namespaces: ['ns1'], now: () => clock });
 *   vault.configureDatabaseRole('readonly', { default_ttl: '1h', max_ttl: '24h' });
 *   const client = nodeVault({ endpoint: vault.url, token: vault.rootToken, requestOptions: { timeout: 2000 } });
 *   ...
 *   await vault.close();
 */
import { VaultEmulator } from './emulator.js';
import { SysBackend } from './sys-backend.js';
import { VaultHttpServer } from './server.js';
import { VaultState } from './state.js';
import { TokenBackend } from './token-backend.js';

export interface StartVaultEmulatorOptions {
  /** Child namespaces that exist (`ns1`, `ns1/team`); anything else in X-Vault-Namespace is unknown. */
  namespaces?: string[];
  /** Clock (epoch ms) for every TTL; default Date.now. Expiry is applied at each request and inspection. */
  now?: () => number;
}

export async function startVaultEmulator(opts: StartVaultEmulatorOptions = {}): Promise<VaultEmulator> {
  const state = new VaultState(opts.now ?? Date.now, opts.namespaces ?? []);
  const tokens = new TokenBackend(state);
  const sys = new SysBackend(state);
  // Every namespace has its own sys/ and token auth mount, as in Vault.
  for (const ns of state.namespaces.values()) {
    state.mounts.mount(ns, 'sys/', sys);
    state.mounts.mount(ns, 'auth/token/', tokens);
  }
  const root = state.mintToken({
    namespace: state.namespace(undefined),
    type: 'service',
    kind: 'normal',
    policies: ['root'],
    meta: null,
    displayName: 'root',
    path: 'auth/token/root',
    entityId: '',
    ttl: 0,
    explicitMaxTtl: 0,
    period: 0,
    renewable: false,
    numUses: 0,
  });
  const server = new VaultHttpServer(state);
  const url = await server.listen();
  return new VaultEmulator(url, root.id, root.accessor, state, server, tokens);
}

export { VaultEmulator } from './emulator.js';
export type { CreateTokenOptions, LeaseInfo, MountOptions, TokenInfo } from './emulator.js';
export type { Capability, PolicyRules } from './acl.js';
export type { JwtAuthConfig, JwtRoleConfig } from './jwt-auth.js';
export type { LeaseKind } from './lease-store.js';
export type { AwsKey, AwsRoleConfig, DatabaseRoleConfig, DatabaseUser } from './secret-engines.js';
export type { TokenRoleConfig } from './token-backend.js';
export type {
  AuthBlock,
  Envelope,
  HealthMode,
  RequestRecord,
  RevocationReason,
  RevocationRecord,
  TokenType,
  TtlInput,
  VaultFaults,
  WrapInfo,
} from './types.js';
