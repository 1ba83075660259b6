/**
 * Redaction for operational logs. Audit records never carry secrets by construction; logs are the
 * place where a credential or a request header slips in by accident (an error's context, a debug
 * line), so logs are scrubbed by key name, deep.
 */

export const REDACTED = '[REDACTED]';

const SENSITIVE_KEY = /token|secret|password|key|credential|authorization/i;

/**
 * Keys that match the pattern but name identifiers, not secrets. Explicit on purpose: a new key
 * that looks sensitive stays redacted until someone decides otherwise here.
 */
const SAFE_KEYS: ReadonlySet<string> = new Set([
  'kid',
  'key_id',
  'keyId',
  'token_type',
  'tokenType',
  'token_ttl',
  'credential_kind',
  'credentialKind',
  'idempotency_key',
  'idempotencyKey',
]);

const MAX_DEPTH = 32;

function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key) && !SAFE_KEYS.has(key);
}

/**
 * Returns a deep copy with the values of sensitive keys replaced by `[REDACTED]`. Never mutates
 * its input. Cycles become `[Circular]`, binary data is summarised (it is usually key material),
 * Errors keep name and message, and anything nested deeper than 32 levels is cut.
 */
export function redactForLog(value: unknown): unknown {
  return redactValue(value, new WeakSet<object>(), 0);
}

function redactValue(value: unknown, seen: WeakSet<object>, depth: number): unknown {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'bigint' ? value.toString() : value;
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item) => redactValue(item, seen, depth + 1));
    if (value instanceof Map) {
      return redactEntries(
        [...value.entries()].map(([k, v]) => [String(k), v]),
        seen,
        depth,
      );
    }
    if (value instanceof Set) return [...value].map((item) => redactValue(item, seen, depth + 1));
    const entries: Array<[string, unknown]> = Object.entries(value);
    if (value instanceof Error) {
      entries.unshift(['type', value.name], ['message', value.message]);
    }
    return redactEntries(entries, seen, depth);
  } finally {
    // Shared (non-cyclic) references elsewhere in the tree are still printed in full.
    seen.delete(value);
  }
}

function redactEntries(
  entries: Array<[string, unknown]>,
  seen: WeakSet<object>,
  depth: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, item] of entries) {
    out[key] = isSensitiveKey(key) ? REDACTED : redactValue(item, seen, depth + 1);
  }
  return out;
}

/**
 * pino `redact` paths (fast-redact syntax) for the logger built in main.ts. pino matches exact
 * paths, not patterns, so this covers the shapes the broker logs: top level, one level down (`*.x`)
 * and request headers. redactForLog is the deep net for anything else.
 */
export const LOG_REDACT_PATHS: readonly string[] = Object.freeze([
  ...['token', 'secret', 'password', 'authorization', 'credential', 'privateKey', 'private_key'].flatMap(
    (key) => [key, `*.${key}`],
  ),
  'apiKey',
  'api_key',
  '*.apiKey',
  '*.api_key',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'clientSecret',
  'client_secret',
  'secretAccessKey',
  'sessionToken',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.clientSecret',
  '*.client_secret',
  '*.secretAccessKey',
  '*.sessionToken',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-vault-token"]',
  'headers.authorization',
  'headers.cookie',
  'metadata.authorization',
]);
