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
import { cloudCallFields, httpUrl } from '../cloud/cloud-config.js';

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
    ...cloudCallFields,
  })
  .strict();

export type GcpBackendConfig = z.infer<typeof gcpBackendConfigSchema>;
