/**
 * The `backends.github` section: a GitHub App whose private key is read from a file at startup
 * (never in config text), and the API base URL (GitHub Enterprise Server: `https://<host>/api/v3`).
 *
 * ```yaml
 * backends:
 *   github:
 *     apiUrl: https://api.github.com
 *     appId: "123456"
 *     privateKeyFile: /etc/svid-broker/github-app.pem   # or:
 *     # privateKeyVault: { path: secret/data/github-app, field: private_key }   (needs backends.vault)
 *     installationId: 4242        # default for roles that name none
 *     timeoutMs: 5000
 * ```
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { cloudCallFields, httpUrl } from '../cloud/cloud-config.js';
import type { CredentialBackend } from '../backend.js';
import { createGithubBackend, type GithubBackendOptions } from './github-backend.js';

export const githubBackendConfigSchema = z
  .object({
    apiUrl: httpUrl.default('https://api.github.com'),
    appId: z.union([z.string().regex(/^\d+$/), z.number().int().positive()]).transform(String),
    privateKeyFile: z.string().min(1).optional(),
    /** A KV secret read with the broker's Vault login (KV v2 `secret/data/...` or v1). */
    privateKeyVault: z
      .object({ path: z.string().min(1), field: z.string().min(1).default('private_key') })
      .strict()
      .optional(),
    installationId: z.number().int().positive().optional(),
    ...cloudCallFields,
  })
  .strict()
  .refine((c) => (c.privateKeyFile === undefined) !== (c.privateKeyVault === undefined), {
    message: 'set exactly one of privateKeyFile and privateKeyVault',
    path: ['privateKeyFile'],
  });

export type GithubBackendConfig = z.infer<typeof githubBackendConfigSchema>;

/** Reads a Vault secret's data (the broker's own Vault login), for `privateKeyVault`. */
export type ReadVaultSecret = (path: string) => Promise<Record<string, unknown> | null>;

function rsaKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error(`backends.github.${where}: not a PEM private key`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`backends.github.${where}: GitHub App keys are RSA`);
  return key;
}

/** The App key (PKCS#1 as GitHub hands it out, or PKCS#8); errors name the source, never the key. */
export async function loadGithubAppKey(
  config: GithubBackendConfig,
  readVault?: ReadVaultSecret,
): Promise<KeyObject> {
  const fromVault = config.privateKeyVault;
  if (fromVault) {
    const where = `privateKeyVault (${fromVault.path})`;
    if (!readVault) throw new Error(`backends.github.${where}: needs backends.vault`);
    let data: Record<string, unknown> | null;
    try {
      data = await readVault(fromVault.path);
    } catch (err) {
      throw new Error(`backends.github.${where}: cannot read it from Vault (${(err as Error).message})`);
    }
    // KV v2 nests the secret under data.data; KV v1 does not.
    const nested =
      data?.data && typeof data.data === 'object' ? (data.data as Record<string, unknown>) : data;
    const pem = nested?.[fromVault.field];
    if (typeof pem !== 'string') throw new Error(`backends.github.${where}: no field "${fromVault.field}"`);
    return rsaKey(pem, where);
  }
  const file = config.privateKeyFile as string;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(
      `backends.github.privateKeyFile: cannot read an RSA private key from ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return rsaKey(pem, `privateKeyFile (${file})`);
}

export async function buildGithubBackend(
  config: GithubBackendConfig,
  deps: Pick<GithubBackendOptions, 'logger' | 'now'> & { readVaultSecret?: ReadVaultSecret | undefined },
): Promise<CredentialBackend> {
  const privateKey = await loadGithubAppKey(config, deps.readVaultSecret);
  return createGithubBackend({
    apiUrl: config.apiUrl,
    appId: config.appId,
    privateKey,
    ...(config.installationId !== undefined ? { defaultInstallationId: config.installationId } : {}),
    timeoutMs: config.timeoutMs,
    baseDelayMs: config.retryBaseDelayMs,
    logger: deps.logger,
    ...(deps.now ? { now: deps.now } : {}),
  });
}
