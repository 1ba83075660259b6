/**
 * Sensitive identifiers on the audit trail: a Vault token accessor or an AWS session name is not
 * a secret, but it is a handle on a live credential (an accessor revokes and looks up its token).
 * Records carry `hmac-sha256:<hex>` of it under a per-deployment key instead, so an investigator
 * who holds the key (`svid-broker audit hmac VALUE`) can find the record of an identifier seen in
 * Vault's audit log or CloudTrail, and anyone else reading the trail learns nothing.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

export const HMAC_PREFIX = 'hmac-sha256:';
/** Bytes of a key the broker creates; shorter keys are refused. */
export const HMAC_KEY_BYTES = 32;

/**
 * Credential metadata keys that name a live credential at its backend, recorded HMAC'd as
 * `backend_ids.<key>` on `credential.issued`: Vault token accessors, AWS STS role session names,
 * token ids. (A broker token's jti is its lease id: recorded as `lease`, as every lease id is.)
 */
export const SENSITIVE_IDENTIFIER_KEYS = ['accessor', 'session_name', 'token_id'] as const;

/** `<audit.file>.hmac-key` unless audit.hmacKeyFile names another. */
export function hmacKeyFileFor(audit: { file: string; hmacKeyFile?: string | undefined }): string {
  return audit.hmacKeyFile ?? `${audit.file}.hmac-key`;
}

/**
 * The key in `file`; with `create`, a missing file is created first (32 random bytes, mode 0600,
 * exclusively: replicas starting together on a shared volume end with one key).
 */
export function readHmacKey(file: string, opts: { create: boolean }): Buffer {
  if (opts.create) {
    try {
      writeFileSync(file, randomBytes(HMAC_KEY_BYTES), { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const key = readFileSync(file);
  if (key.length < HMAC_KEY_BYTES) {
    throw new Error(`audit HMAC key ${file}: ${key.length} bytes, at least ${HMAC_KEY_BYTES} needed`);
  }
  return key;
}

/** `hmac-sha256:<hex>` of one identifier under the deployment's key. */
export type IdentifierHmac = (value: string) => string;

export function identifierHmac(key: Buffer): IdentifierHmac {
  return (value) => `${HMAC_PREFIX}${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
}

/**
 * The `backend_ids` field of a credential's record: its sensitive identifiers, HMAC'd. Nothing when
 * it has none, or without a key (a broker built without one never records them at all).
 */
export function backendIdFields(
  metadata: Readonly<Record<string, string>>,
  hmac: IdentifierHmac | undefined,
): { backend_ids?: Record<string, string> } {
  if (!hmac) return {};
  const ids: Record<string, string> = {};
  for (const key of SENSITIVE_IDENTIFIER_KEYS) {
    const value = metadata[key];
    if (value) ids[key] = hmac(value);
  }
  return Object.keys(ids).length > 0 ? { backend_ids: ids } : {};
}
