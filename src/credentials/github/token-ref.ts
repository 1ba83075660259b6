/**
 * GitHub revokes an installation token only when called with the token itself, yet a lease's
 * backendRef must never be a secret. So the ref holds the token sealed with AES-256-GCM under a
 * key derived (HKDF-SHA256) from the App's private key: only a broker holding that key can open
 * it, on any replica and after a restart, and the ledger never holds a usable token.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';

export const GITHUB_REF_PREFIX = 'gh-token:';

export function refKey(appKey: KeyObject): Buffer {
  const der = appKey.export({ format: 'der', type: 'pkcs8' });
  return Buffer.from(hkdfSync('sha256', der, Buffer.alloc(0), 'svid-broker github token ref v1', 32));
}

export function sealToken(key: Buffer, installationId: number, token: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(String(installationId)));
  const sealed = Buffer.concat([iv, cipher.update(token, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${GITHUB_REF_PREFIX}${installationId}:${sealed.toString('base64url')}`;
}

/** The token inside a ref, or undefined when the ref is not one of ours or does not open. */
export function openToken(key: Buffer, ref: string): string | undefined {
  const m = /^gh-token:(\d+):([A-Za-z0-9_-]+)$/.exec(ref);
  if (!m) return undefined;
  const sealed = Buffer.from(m[2] as string, 'base64url');
  if (sealed.length < 29) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    decipher.setAAD(Buffer.from(m[1] as string));
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([
      decipher.update(sealed.subarray(12, sealed.length - 16)),
      decipher.final(),
    ]).toString('utf8');
  } catch {
    return undefined;
  }
}
