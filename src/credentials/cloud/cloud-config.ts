/** Config fields every cloud backend section (`backends.aws`, `github`, `gcp`, `azure`) shares. */
import { z } from 'zod';

/** An endpoint override: http(s) only (http for private endpoints and tests). */
export const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL');

/** One call's budget (throttling retries included), and its first backoff (doubles, jittered). */
export const cloudCallFields = {
  timeoutMs: z.number().int().positive().max(60_000).default(5000),
  retryBaseDelayMs: z.number().int().positive().max(10_000).default(100),
};
