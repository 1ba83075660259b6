/** Builds the azure backend (@azure/identity), loaded only when `backends.azure` is configured. */
import { readFileSync } from 'node:fs';
import type { CredentialBackend } from '../backend.js';
import { createAzureBackend, type AzureBackendOptions } from './azure-backend.js';
import type { AzureBackendConfig } from './azure-config.js';

export async function buildAzureBackend(
  config: AzureBackendConfig,
  deps: Pick<AzureBackendOptions, 'fetchJwt' | 'logger' | 'now'>,
): Promise<CredentialBackend> {
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
    sdk: await import('@azure/identity'),
    authorityHost: config.authorityHost,
    audience: config.audience,
    ...(ca ? { ca } : {}),
    timeoutMs: config.timeoutMs,
    baseDelayMs: config.retryBaseDelayMs,
    ...deps,
  });
}
