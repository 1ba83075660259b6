/**
 * The `backends.github` section: a GitHub App whose private key is read from a file at startup
 * (never in config text), and the API base URL (GitHub Enterprise Server: `https://<host>/api/v3`).
 *
 * ```yaml
 * backends:
 *   github:
 *     apiUrl: https://api.github.com
 *     appId: "123456"
 *     privateKeyFile: /etc/svid-broker/github-app.pem
 *     installationId: 4242        # default for roles that name none
 *     timeoutMs: 5000
 * ```
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { CredentialBackend } from '../backend.js';
import { createGithubBackend, type GithubBackendOptions } from './github-backend.js';

export const githubBackendConfigSchema = z
  .object({
    apiUrl: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
      .default('https://api.github.com'),
    appId: z.union([z.string().regex(/^\d+$/), z.number().int().positive()]).transform(String),
    privateKeyFile: z.string().min(1),
    installationId: z.number().int().positive().optional(),
    timeoutMs: z.number().int().positive().max(60_000).default(5000),
    retryBaseDelayMs: z.number().int().positive().max(10_000).default(100),
  })
  .strict();

export type GithubBackendConfig = z.infer<typeof githubBackendConfigSchema>;

/** Reads the App key (PKCS#1 as GitHub hands it out, or PKCS#8); throws naming the file, never the key. */
export function buildGithubBackend(
  config: GithubBackendConfig,
  deps: Pick<GithubBackendOptions, 'logger' | 'now'>,
): CredentialBackend {
  let privateKey;
  try {
    privateKey = createPrivateKey(readFileSync(config.privateKeyFile, 'utf8'));
  } catch (err) {
    throw new Error(
      `backends.github.privateKeyFile: cannot read an RSA private key from ${config.privateKeyFile} (${(err as NodeJS.ErrnoException).code ?? 'not a PEM key'})`,
    );
  }
  if (privateKey.asymmetricKeyType !== 'rsa')
    throw new Error('backends.github.privateKeyFile: GitHub App keys are RSA');
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
