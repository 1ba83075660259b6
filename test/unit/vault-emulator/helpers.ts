/**
 * Helpers for the emulator's own tests: a node-vault client (the library the backend uses) and a raw
 * fetch for what node-vault hides (status codes other than 200/204, headers, malformed bodies).
 */
import assert from 'node:assert/strict';
import vault from 'node-vault';
import type { VaultEmulator } from '../../support/vault-emulator/index.js';

export type VaultClient = ReturnType<typeof vault>;

export function vaultClient(
  emu: VaultEmulator,
  token: string | undefined,
  opts: { namespace?: string; timeout?: number } = {},
): VaultClient {
  return vault({
    endpoint: emu.url,
    ...(token === undefined ? {} : { token }),
    ...(opts.namespace === undefined ? {} : { namespace: opts.namespace }),
    // node-vault has no default timeout; every client sets one.
    requestOptions: { timeout: opts.timeout ?? 2000 },
  });
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** Parsed JSON body, or undefined for an empty one. */
  readonly body: unknown;
}

export async function rawRequest(
  emu: VaultEmulator,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token !== undefined) headers['X-Vault-Token'] = opts.token;
  const body = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  const res = await fetch(`${emu.url}/v1/${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    text,
    body: text === '' ? undefined : (JSON.parse(text) as unknown),
  };
}

/** The error node-vault rejects with for a Vault answer other than 200/204. */
export interface VaultApiError {
  readonly message: string;
  readonly response?: { readonly statusCode: number; readonly body: { readonly errors?: string[] } };
  readonly code?: string;
}

export async function rejection(promise: Promise<unknown>): Promise<VaultApiError> {
  try {
    await promise;
  } catch (err) {
    return err as VaultApiError;
  }
  assert.fail('expected the call to be rejected');
}

/** Asserts node-vault rejected with this status and an error message containing `text`. */
export async function expectVaultError(
  promise: Promise<unknown>,
  status: number,
  text: string,
): Promise<VaultApiError> {
  const err = await rejection(promise);
  assert.equal(err.response?.statusCode, status, `status of: ${err.message}`);
  const errors = err.response?.body.errors ?? [];
  assert.ok(
    errors.some((e) => e.includes(text)),
    `expected an error containing ${JSON.stringify(text)}, got ${JSON.stringify(errors)}`,
  );
  return err;
}

export const ENVELOPE_KEYS = [
  'auth',
  'data',
  'lease_duration',
  'lease_id',
  'renewable',
  'request_id',
  'warnings',
  'wrap_info',
];

/** A record view of a JSON value, for asserting on fields. */
export function obj(value: unknown): Record<string, unknown> {
  assert.ok(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    `not an object: ${String(value)}`,
  );
  return value as Record<string, unknown>;
}

/** A settable clock for the emulator's `now`. */
export class TestClock {
  constructor(public ms: number = Date.UTC(2025, 0, 2, 3, 4, 5)) {}
  readonly now = (): number => this.ms;
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}
