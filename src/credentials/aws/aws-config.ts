/**
 * The `backends.aws` section of the broker config, and its validation (no SDK loaded: build-aws-backend.ts
 * builds the backend, loaded only when the section is configured).
 *
 * ```yaml
 * backends:
 *   aws:
 *     region: us-east-1
 *     stsEndpoint: https://sts.us-east-1.amazonaws.com   # optional (private endpoints, tests)
 *     iamEndpoint: https://iam.amazonaws.com             # optional
 *     credentials:
 *       source: web_identity          # web_identity | default_chain
 *       roleArn: arn:aws:iam::123456789012:role/svid-broker
 *       audience: sts.amazonaws.com
 *     maxSessionSeconds: 3600         # the target roles' MaxSessionDuration
 *     timeoutMs: 5000
 * ```
 */
import { z } from 'zod';
import { cloudCallFields, httpUrl } from '../cloud/cloud-config.js';
import { MAX_SESSION_SECONDS, MIN_SESSION_SECONDS, isValidSessionName } from './aws-limits.js';

export const awsBackendConfigSchema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as us-east-1'),
    stsEndpoint: httpUrl.optional(),
    iamEndpoint: httpUrl.optional(),
    credentials: z.discriminatedUnion('source', [
      z
        .object({
          source: z.literal('web_identity'),
          /** The broker's own role, trusting the SPIFFE trust domain's OIDC issuer. */
          roleArn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/, 'an IAM role ARN'),
          audience: z.string().min(1).default('sts.amazonaws.com'),
          sessionName: z
            .string()
            .refine(isValidSessionName, '2-64 characters of [\\w+=,.@-]')
            .default('svid-broker'),
          sessionSeconds: z.number().int().min(MIN_SESSION_SECONDS).max(MAX_SESSION_SECONDS).default(3600),
        })
        .strict(),
      z.object({ source: z.literal('default_chain') }).strict(),
    ]),
    maxSessionSeconds: z.number().int().min(MIN_SESSION_SECONDS).max(MAX_SESSION_SECONDS).default(3600),
    ...cloudCallFields,
  })
  .strict();

export type AwsBackendConfig = z.infer<typeof awsBackendConfigSchema>;
