/**
 * Settings a real deployment needs and the dev stack does not: which of the Workload API's SVIDs
 * is the broker's own, and how the broker logs in to Redis (ACL user, password file, TLS CA).
 * Secrets never sit in the config text: the password comes from a file or the REDIS_URL env var.
 */
import { z } from 'zod';
import { isValidSpiffeId } from '../identity/spiffe-id.js';

/** Spread into `workloadApi`. */
export const workloadApiIdentitySchema = {
  /**
   * The broker's own SPIFFE ID. The broker serves with the SVID that has it (and `hint`, if set)
   * and refuses to start with any other; without it, the Workload API must offer exactly one SVID.
   */
  expectedId: z.string().refine(isValidSpiffeId, 'must be a SPIFFE ID').optional(),
  /** The SPIRE entry hint of the broker's SVID, when several entries share its ID. */
  hint: z.string().min(1).optional(),
};

/** Spread into `redis`. */
export const redisAuthSchema = {
  /** Redis ACL user (AUTH username password); the URL's user wins when both are set. */
  username: z.string().min(1).optional(),
  /** File holding the ACL user's password (one line; a trailing newline is ignored). */
  passwordFile: z.string().min(1).optional(),
  /** PEM CA bundle that signed the Redis server certificate; needs a `rediss://` URL. */
  caFile: z.string().min(1).optional(),
};

interface RedisAuthFields {
  url: string;
  passwordFile?: string | undefined;
  caFile?: string | undefined;
}

/** Cross-field checks for the Redis auth keys; `problem(field, message)` records one issue. */
export function refineRedisAuth(
  redis: RedisAuthFields,
  problem: (field: string, message: string) => void,
): void {
  const tls = redis.url.startsWith('rediss://');
  if (redis.caFile !== undefined && !tls) problem('caFile', 'needs a rediss:// url (TLS)');
  if (redis.passwordFile !== undefined && hasUrlPassword(redis.url)) {
    problem('passwordFile', 'the url carries a password too: keep it in one place (the file)');
  }
}

function hasUrlPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}
