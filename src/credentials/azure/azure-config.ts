/**
 * The `backends.azure` section:
 *
 * ```yaml
 * backends:
 *   azure:
 *     authorityHost: https://login.microsoftonline.com   # sovereign clouds: login.microsoftonline.us, ...
 *     audience: api://AzureADTokenExchange
 *     caFile: /etc/svid-broker/entra-ca.pem              # optional, a private authority host
 *     timeoutMs: 5000
 * ```
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { CredentialBackend } from '../backend.js';
import { createAzureBackend, type AzureBackendOptions } from './azure-backend.js';

export const azureBackendConfigSchema = z
  .object({
    authorityHost: z
      .string()
      .url()
      .refine((u) => u.startsWith('https://'), 'must be an https URL (MSAL refuses others)')
      .default('https://login.microsoftonline.com'),
    audience: z.string().min(1).default('api://AzureADTokenExchange'),
    caFile: z.string().min(1).optional(),
    timeoutMs: z.number().int().positive().max(60_000).default(5000),
    retryBaseDelayMs: z.number().int().positive().max(10_000).default(100),
  })
  .strict();

export type AzureBackendConfig = z.infer<typeof azureBackendConfigSchema>;

export function buildAzureBackend(
  config: AzureBackendConfig,
  deps: Pick<AzureBackendOptions, 'fetchJwt' | 'logger' | 'now'>,
): CredentialBackend {
  let ca: string | undefined;
  if (config.caFile) {
    try {
      ca = readFileSync(config.caFile, 'utf8');
    } catch (err) {
      throw new Error(
        `backends.azure.caFile: cannot read ${config.caFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  return createAzureBackend({
    authorityHost: config.authorityHost,
    audience: config.audience,
    ...(ca ? { ca } : {}),
    timeoutMs: config.timeoutMs,
    baseDelayMs: config.retryBaseDelayMs,
    ...deps,
  });
}
