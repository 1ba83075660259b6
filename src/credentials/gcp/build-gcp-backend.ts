/** Builds the gcp backend (google-auth-library), loaded only when `backends.gcp` is configured. */
import type { CredentialBackend } from '../backend.js';
import { createGcpBackend, type GcpBackendOptions } from './gcp-backend.js';
import type { GcpBackendConfig } from './gcp-config.js';

export async function buildGcpBackend(
  config: GcpBackendConfig,
  deps: Pick<GcpBackendOptions, 'fetchJwt' | 'logger' | 'now'>,
): Promise<CredentialBackend> {
  return createGcpBackend({
    sdk: await import('google-auth-library'),
    audience: config.audience,
    jwtAudience: config.jwtAudience ?? `https:${config.audience}`,
    stsUrl: config.stsUrl,
    iamCredentialsUrl: config.iamCredentialsUrl,
    timeoutMs: config.timeoutMs,
    baseDelayMs: config.retryBaseDelayMs,
    ...deps,
  });
}
