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
import { z } from 'zod';
import { cloudCallFields } from '../cloud/cloud-config.js';

export const azureBackendConfigSchema = z
  .object({
    authorityHost: z
      .string()
      .url()
      .refine((u) => u.startsWith('https://'), 'must be an https URL (MSAL refuses others)')
      .default('https://login.microsoftonline.com'),
    audience: z.string().min(1).default('api://AzureADTokenExchange'),
    caFile: z.string().min(1).optional(),
    ...cloudCallFields,
  })
  .strict();

export type AzureBackendConfig = z.infer<typeof azureBackendConfigSchema>;
