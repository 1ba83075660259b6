/**
 * The `backends.gcp` section:
 *
 * ```yaml
 * backends:
 *   gcp:
 *     audience: //iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/spiffe/providers/example-org
 *     jwtAudience: https://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/spiffe/providers/example-org
 *     stsUrl: https://sts.googleapis.com                     # optional
 *     iamCredentialsUrl: https://iamcredentials.googleapis.com   # optional
 *     timeoutMs: 5000
 * ```
 */
import { z } from 'zod';

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

export const gcpBackendConfigSchema = z
  .object({
    audience: z
      .string()
      .regex(
        /^\/\/iam\.googleapis\.com\/projects\/\d+\/locations\/global\/workloadIdentityPools\/[a-z0-9-]+\/providers\/[a-z0-9-]+$/,
        'a workload identity provider: //iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>',
      ),
    /** The JWT-SVID audience; defaults to `https:` + audience (the provider's default allowed audience). */
    jwtAudience: z.string().min(1).optional(),
    stsUrl: httpUrl.default('https://sts.googleapis.com'),
    iamCredentialsUrl: httpUrl.default('https://iamcredentials.googleapis.com'),
    timeoutMs: z.number().int().positive().max(60_000).default(5000),
    retryBaseDelayMs: z.number().int().positive().max(10_000).default(100),
  })
  .strict();

export type GcpBackendConfig = z.infer<typeof gcpBackendConfigSchema>;
