/**
 * The `backends.vault` section of the broker config, and the one function that turns it into a
 * backend (client + login + backend), for main.ts to call.
 *
 * ```yaml
 * backends:
 *   vault:
 *     address: https://vault.internal:8200
 *     namespace: team-a/          # optional (Vault Enterprise)
 *     caFile: /etc/svid-broker/vault-ca.pem
 *     timeoutMs: 5000
 *     insecure: false            # true allows an http:// address (warned at startup)
 *     auth:
 *       method: jwt               # jwt | cert | token_file
 *       mount: jwt
 *       role: svid-broker
 *       audience: vault
 * ```
 */
import { z } from 'zod';
import type { CredentialBackend } from '../backend.js';
import { VaultAuth, type VaultLogger, type X509SvidMaterial } from './vault-auth.js';
import { createVaultBackend } from './vault-backend.js';
import { DEFAULT_VAULT_TIMEOUT_MS, VaultClient } from './vault-client.js';

const mount = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, 'a mount path such as jwt or spire-jwt');

export const vaultAuthConfigSchema = z.discriminatedUnion('method', [
  z
    .object({
      method: z.literal('jwt'),
      mount: mount.default('jwt'),
      /** The Vault role bound to the broker's SPIFFE ID (bound_subject) and the audience. */
      role: z.string().min(1),
      /** The audience of the JWT-SVID the broker fetches; Vault's role lists it in bound_audiences. */
      audience: z.string().min(1).default('vault'),
    })
    .strict(),
  z
    .object({
      method: z.literal('cert'),
      mount: mount.default('cert'),
      /** The cert role to log in with; Vault tries every role when omitted. */
      name: z.string().min(1).optional(),
    })
    .strict(),
  z
    .object({
      /** Explicit fallback only: a token read from this file, never logged. */
      method: z.literal('token_file'),
      path: z.string().min(1),
    })
    .strict(),
]);

export const vaultBackendConfigSchema = z
  .object({
    address: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL'),
    namespace: z.string().min(1).optional(),
    caFile: z.string().min(1).optional(),
    /** Every Vault call fails with UNAVAILABLE after this long. */
    timeoutMs: z.number().int().positive().max(60_000).default(DEFAULT_VAULT_TIMEOUT_MS),
    /** Allows an `http://` address (the broker's Vault token crosses the wire in clear). */
    insecure: z.boolean().default(false),
    auth: vaultAuthConfigSchema,
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.address.startsWith('http://') && !v.insecure) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['address'],
        message:
          "http:// would send the broker's Vault token in clear: use https://, or set backends.vault.insecure: true",
      });
    }
  });

export type VaultBackendConfig = z.infer<typeof vaultBackendConfigSchema>;

export interface VaultBackendDeps {
  /** For `jwt` login: FetchJWTSVID for the audience (e.g. fetchJwtSvid(endpoint, [aud]).token). */
  fetchJwt?: (audience: string) => Promise<string>;
  /** For `cert` login: the current X.509-SVID (x509.getX509Svid()). */
  svid?: () => X509SvidMaterial | undefined;
  logger?: VaultLogger;
}

export interface BuiltVaultBackend {
  backend: CredentialBackend;
  /** The broker's Vault login, e.g. for a startup check (`auth.token()`) or ops state. */
  auth: VaultAuth;
  client: VaultClient;
}

/** Builds client, login and backend from a validated config section. Throws on a bad combination. */
export function buildVaultBackend(config: VaultBackendConfig, deps: VaultBackendDeps): BuiltVaultBackend {
  if (config.address.startsWith('http://')) {
    deps.logger?.warn(
      { address: config.address },
      "backends.vault.insecure: Vault is reached over plain http://, the broker's Vault token crosses the wire in clear",
    );
  }
  const client = new VaultClient({
    endpoint: config.address,
    timeoutMs: config.timeoutMs,
    insecure: config.insecure,
    ...(config.namespace !== undefined ? { namespace: config.namespace } : {}),
    ...(config.caFile !== undefined ? { caFile: config.caFile } : {}),
  });
  const auth = new VaultAuth({
    client,
    method: config.auth,
    ...(deps.fetchJwt ? { fetchJwt: deps.fetchJwt } : {}),
    ...(deps.svid ? { svid: deps.svid } : {}),
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  const backend = createVaultBackend({ client, auth, ...(deps.logger ? { logger: deps.logger } : {}) });
  return { backend, auth, client };
}
