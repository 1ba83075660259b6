/** Random identifiers in the shapes Vault uses (tokens, accessors, lease suffixes, request ids). */
import { randomBytes, randomInt, randomUUID } from 'node:crypto';

export const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

export function randomString(length: number, alphabet: string = BASE62): string {
  // Rejection sampling keeps every character equally likely.
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length - out.length + 8)) {
      if (byte < limit) out += alphabet.charAt(byte % alphabet.length);
      if (out.length === length) break;
    }
  }
  return out;
}

export const newUuid = (): string => randomUUID();

/**
 * A password that satisfies Vault's default password policy: 20 characters of [A-Za-z0-9-] with at
 * least one lowercase letter, uppercase letter, digit and dash.
 */
export function generatePassword(): string {
  const chars = ['A', 'a', '0', '-', ...randomString(16, `${BASE62}-`)];
  for (let i = chars.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chars[i], chars[j]] = [chars[j] as string, chars[i] as string];
  }
  return chars.join('');
}

export const rfc3339 = (ms: number): string => new Date(ms).toISOString();
