/**
 * A thin wrapper over a node-vault client dedicated to the broker. It exists to avoid node-vault's
 * traps (shared/spec/vault.md §9) in one place:
 * - the client never holds a token: every call passes its token explicitly (`X-Vault-Token`), so
 *   no helper can overwrite the broker's token, and no VAULT_TOKEN from the environment is sent;
 * - only `request` with explicit paths is used (helpers drop fields);
 * - every call has a timeout (node-vault has none) and a hard deadline on top of it;
 * - redirects are never followed (vault-http.ts): a 3xx is refused, so the token never reaches
 *   another origin and no other origin's answer is taken for Vault's;
 * - `http://` is refused unless the caller says `insecure` (the token would cross the wire in clear);
 * - environment fallbacks (VAULT_NAMESPACE, VAULT_PREFIX, VAULT_SKIP_VERIFY) are switched off, and
 *   node-vault's debug output (which prints request bodies: JWTs, tokens) is silenced;
 * - every failure becomes a VaultError (a BrokerError) whose message carries the method, path,
 *   status and Vault's own error text with anything token-like scrubbed out. Request bodies,
 *   headers and responses are never put into an error: axios errors (which hold the headers,
 *   X-Vault-Token included) are replaced by a plain Error before they become a cause.
 */
import { readFileSync } from 'node:fs';
import { BrokerError, type ErrorCode } from '../../errors.js';
import { vaultHttpLayer } from './vault-http.js';

export interface VaultClientOptions {
  /** e.g. `https://vault.internal:8200`. */
  endpoint: string;
  /** Vault Enterprise namespace (`X-Vault-Namespace`), e.g. `team-a/`. */
  namespace?: string;
  /** PEM file with the CA(s) that issued Vault's server certificate. */
  caFile?: string;
  /** PEM text, in place of caFile. */
  ca?: string;
  /** Per-call timeout. Default 5000. */
  timeoutMs?: number;
  /** Allows an `http://` endpoint (the token crosses the wire in clear): tests, a local sidecar. */
  insecure?: boolean;
  /**
   * How long past the timeout a call that may create something (it has onLateResponse) keeps
   * listening, so what a slow Vault issued after the caller gave up can still be revoked.
   * Default 30000.
   */
  lateResponseGraceMs?: number;
}

export const DEFAULT_VAULT_TIMEOUT_MS = 5000;
export const DEFAULT_LATE_RESPONSE_GRACE_MS = 30_000;

export interface VaultAuthInfo {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  metadata: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
  orphan: boolean;
}

export interface VaultWrapInfo {
  token: string;
  accessor: string;
  ttl: number;
  creation_time: string;
  creation_path: string;
  /** Set when the wrapped response is a token: its accessor, so the issuer can revoke it unseen. */
  wrapped_accessor?: string;
}

/** The JSON envelope every Vault response shares (spec §1). */
export interface VaultResponse {
  lease_id: string;
  renewable: boolean;
  lease_duration: number;
  data: Record<string, unknown> | null;
  auth: VaultAuthInfo | null;
  wrap_info: VaultWrapInfo | null;
  warnings: string[] | null;
}

export interface VaultCall {
  method: 'GET' | 'POST' | 'PUT';
  /** Without the `/v1/` prefix, e.g. `database/creds/readonly`. */
  path: string;
  /** Sent as `X-Vault-Token`; omitted for logins. */
  token?: string;
  body?: Record<string, unknown>;
  /** Asks Vault to wrap the response (`X-Vault-Wrap-TTL`). */
  wrapTtlSeconds?: number;
  /** A TLS client certificate for this call (cert auth login), PEM. */
  clientCert?: { cert: string; key: string };
  /**
   * Called with a response that arrives after the call already failed with vault_timeout: Vault did
   * something nobody was told about (issued a secret, minted a token), so the caller can undo it.
   */
  onLateResponse?: (response: VaultResponse | undefined) => void;
}

/**
 * Every failure of a Vault call. `status` is the HTTP status (undefined for network failures and
 * timeouts); `vaultErrors` are Vault's own messages, scrubbed. 403 keeps its own reason so the
 * login layer can tell a dead broker token from an outage.
 */
export class VaultError extends BrokerError {
  readonly status: number | undefined;
  readonly vaultErrors: readonly string[];

  constructor(
    code: ErrorCode,
    reason: string,
    message: string,
    details: { status?: number; vaultErrors?: string[]; cause?: Error } = {},
  ) {
    super(code, message, details.cause ? { reason, cause: details.cause } : { reason });
    this.name = 'VaultError';
    this.status = details.status;
    this.vaultErrors = details.vaultErrors ?? [];
  }
}

export const isVaultError = (err: unknown): err is VaultError => err instanceof VaultError;

/** A 403: the token is revoked, expired or bogus, or its policy does not allow the path. */
export const isPermissionDenied = (err: unknown): err is VaultError =>
  isVaultError(err) && err.status === 403;

// Token-like strings Vault might echo back in an error; nothing of the kind may reach a message.
const SECRET_PATTERNS: readonly RegExp[] = [
  /\bhv[sbr]\.[A-Za-z0-9_-]+/g, // Vault service, batch and recovery tokens
  /\bs\.[A-Za-z0-9]{20,}/g, // legacy service tokens
  /\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g, // JWTs
];

const MAX_VAULT_ERROR_LENGTH = 300;

/** Vault's error text with anything token-like replaced, bounded. */
export function scrubVaultText(text: string): string {
  let out = text;
  for (const pattern of SECRET_PATTERNS) out = out.replace(pattern, '[redacted]');
  return out.length > MAX_VAULT_ERROR_LENGTH ? `${out.slice(0, MAX_VAULT_ERROR_LENGTH)}…` : out;
}

/** The narrow view of node-vault's client this module relies on (its typings lack half of it). */
interface NodeVaultClient {
  request(options: Record<string, unknown>): Promise<unknown>;
  token: string | undefined;
  namespace: string | undefined;
  pathPrefix: string;
}

interface ApiResponseErrorShape {
  message: string;
  response: { statusCode: number; body: unknown };
}

function isApiResponseError(err: unknown): err is ApiResponseErrorShape {
  if (!(err instanceof Error)) return false;
  const response = (err as { response?: unknown }).response;
  return (
    typeof response === 'object' &&
    response !== null &&
    typeof (response as { statusCode?: unknown }).statusCode === 'number'
  );
}

function errorsOf(body: unknown): string[] {
  if (typeof body !== 'object' || body === null) return [];
  const errors = (body as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) return [];
  return errors.filter((e): e is string => typeof e === 'string').map(scrubVaultText);
}

const TIMEOUT_CODES = new Set(['ECONNABORTED', 'ETIMEDOUT']);

/** node-vault over the HTTP layer that never follows a redirect; both libraries load here. */
async function openNodeVault(
  endpoint: string,
  namespace: string,
  ca: string | undefined,
): Promise<NodeVaultClient> {
  const [{ default: nodeVault }, { default: axios }] = await Promise.all([
    import('node-vault'),
    import('axios'),
  ]);
  const client = nodeVault({
    endpoint,
    apiVersion: 'v1',
    // Its debug output prints request bodies (JWTs, tokens) when DEBUG=node-vault is set.
    debug: () => undefined,
    // Its own HTTP layer follows redirects with the token attached; this one never follows.
    'request-promise': vaultHttpLayer(axios, ca !== undefined ? { ca } : {}),
  }) as unknown as NodeVaultClient;
  // node-vault falls back to VAULT_TOKEN / VAULT_NAMESPACE / VAULT_PREFIX; this client takes
  // nothing from the environment.
  client.token = '';
  client.namespace = namespace;
  client.pathPrefix = '';
  return client;
}

export class VaultClient {
  readonly endpoint: string;
  readonly namespace: string;
  readonly timeoutMs: number;
  private readonly lateGraceMs: number;
  /** node-vault and axios load with the first VaultClient: a broker without Vault never loads them. */
  private readonly client: Promise<NodeVaultClient>;

  constructor(opts: VaultClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.endpoint);
    } catch {
      throw new Error(`vault: endpoint ${JSON.stringify(opts.endpoint)} is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new Error(`vault: endpoint must be http(s), got ${url.protocol}`);
    }
    if (url.protocol === 'http:' && opts.insecure !== true) {
      throw new Error(
        'vault: endpoint is http://, which sends the Vault token in clear: use https://, or set insecure',
      );
    }
    this.endpoint = opts.endpoint.replace(/\/+$/, '');
    this.namespace = opts.namespace ?? '';
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_VAULT_TIMEOUT_MS;
    if (!Number.isSafeInteger(this.timeoutMs) || this.timeoutMs <= 0) {
      throw new Error('vault: timeoutMs must be a positive integer');
    }
    this.lateGraceMs = opts.lateResponseGraceMs ?? DEFAULT_LATE_RESPONSE_GRACE_MS;
    if (!Number.isSafeInteger(this.lateGraceMs) || this.lateGraceMs < 0) {
      throw new Error('vault: lateResponseGraceMs must be a non-negative integer');
    }
    let ca = opts.ca;
    if (opts.caFile !== undefined) {
      try {
        ca = readFileSync(opts.caFile, 'utf8');
      } catch (err) {
        throw new Error(`vault: cannot read caFile ${opts.caFile}: ${(err as Error).message}`);
      }
    }
    this.client = openNodeVault(this.endpoint, this.namespace, ca);
    // A failed load fails each call (mapped as any failure is), never as an unhandled rejection.
    this.client.catch(() => undefined);
  }

  /** One Vault call. Resolves with the envelope (undefined for 204); rejects with a VaultError. */
  async request(call: VaultCall): Promise<VaultResponse | undefined> {
    const where = `${call.method} ${call.path}`;
    const headers: Record<string, string> = {};
    if (call.token !== undefined) headers['X-Vault-Token'] = call.token;
    if (call.wrapTtlSeconds !== undefined) headers['X-Vault-Wrap-TTL'] = `${call.wrapTtlSeconds}s`;
    const options: Record<string, unknown> = {
      method: call.method,
      path: `/${call.path}`,
      headers,
      // The socket gives up with the deadline below, unless a late answer is worth waiting for.
      timeout: call.onLateResponse ? this.timeoutMs + this.lateGraceMs : this.timeoutMs,
      ...(call.body !== undefined ? { json: call.body } : {}),
      ...(call.clientCert ? { cert: call.clientCert.cert, key: call.clientCert.key } : {}),
    };

    // Loaded before the deadline starts: the first call does not pay for the import.
    const client = await this.loaded(where);
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    // axios' timeout is a socket idle timeout; this deadline bounds the whole call, however Vault
    // (or an audit device blocking it, spec §8) trickles the answer.
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(this.timeoutError(where));
      }, this.timeoutMs);
    });
    const attempt = client.request(options).then(
      (body) => {
        const response = parseEnvelope(body);
        if (timedOut) call.onLateResponse?.(response);
        return response;
      },
      (err: unknown) => {
        throw this.mapError(err, where);
      },
    );
    try {
      return await Promise.race([attempt, deadline]);
    } finally {
      clearTimeout(timer);
      // The loser of the race must not surface as an unhandled rejection.
      attempt.catch(() => undefined);
    }
  }

  /** `sys/health`, which answers with a body for every status (standby 429, sealed 503, ...). */
  async health(): Promise<{ initialized: boolean; sealed: boolean; standby: boolean }> {
    const client = await this.loaded('GET sys/health');
    const response = await client
      .request({ method: 'GET', path: '/sys/health', headers: {}, timeout: this.timeoutMs })
      .catch((err: unknown) => {
        throw this.mapError(err, 'GET sys/health');
      });
    const body = (typeof response === 'object' && response !== null ? response : {}) as Record<
      string,
      unknown
    >;
    return {
      initialized: body.initialized === true,
      sealed: body.sealed === true,
      standby: body.standby === true,
    };
  }

  /** The node-vault client, once its libraries are loaded; a failed load fails the call. */
  private loaded(where: string): Promise<NodeVaultClient> {
    return this.client.catch((err: unknown) => {
      throw this.mapError(err, where);
    });
  }

  private timeoutError(where: string): VaultError {
    return new VaultError(
      'UNAVAILABLE',
      'vault_timeout',
      `Vault did not answer ${where} within ${this.timeoutMs} ms`,
    );
  }

  /** The one place a node-vault/axios failure becomes a VaultError. */
  private mapError(err: unknown, where: string): VaultError {
    if (isApiResponseError(err)) {
      const status = err.response.statusCode;
      const vaultErrors = errorsOf(err.response.body);
      const said = vaultErrors.length > 0 ? `: ${vaultErrors.join('; ')}` : '';
      const details = { status, vaultErrors, cause: new Error(`Vault answered ${status}${said}`) };
      if (status >= 300 && status < 400) {
        // Never followed (vault-http.ts): a redirect would carry the token to whatever it names.
        return new VaultError(
          'UNAVAILABLE',
          'vault_redirect_refused',
          `Vault answered ${where} with a redirect (${status}), which the broker does not follow: ` +
            'point backends.vault.address at the active node or a load balancer',
          details,
        );
      }
      if (status === 503) {
        const sealed = vaultErrors.some((e) => /sealed/i.test(e));
        return new VaultError(
          'UNAVAILABLE',
          sealed ? 'vault_sealed' : 'vault_unavailable',
          sealed ? `Vault is sealed (${where})` : `Vault is unavailable (${where}: 503${said})`,
          details,
        );
      }
      if (status === 429) {
        return new VaultError(
          'UNAVAILABLE',
          'vault_rate_limited',
          `Vault rate-limited ${where}${said}`,
          details,
        );
      }
      if (status === 403) {
        return new VaultError(
          'UNAVAILABLE',
          'vault_permission_denied',
          `Vault denied the broker ${where}${said}`,
          details,
        );
      }
      if (status >= 500) {
        return new VaultError(
          'UNAVAILABLE',
          'vault_unavailable',
          `Vault failed ${where} (${status}${said})`,
          details,
        );
      }
      return new VaultError(
        'UNAVAILABLE',
        'vault_rejected',
        `Vault refused ${where} (${status}${said})`,
        details,
      );
    }
    // No response: a network failure or axios' own timeout. Keep only the code: the axios error
    // carries the request config, X-Vault-Token and body included.
    const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : '';
    if (TIMEOUT_CODES.has(code)) return this.timeoutError(where);
    const what = code || 'request failed';
    return new VaultError('UNAVAILABLE', 'vault_unavailable', `Vault is unreachable (${where}: ${what})`, {
      cause: new Error(what),
    });
  }
}

function asRecord(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

const str = (value: unknown): string => (typeof value === 'string' ? value : '');
const num = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];

function stringMap(value: unknown): Record<string, string> | null {
  const record = asRecord(value);
  if (!record) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(record)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Reads the envelope defensively: missing fields take their empty value, never a guess. */
function parseEnvelope(body: unknown): VaultResponse | undefined {
  const record = asRecord(body);
  if (!record) return undefined; // 204: no body
  const auth = asRecord(record.auth);
  const wrap = asRecord(record.wrap_info);
  const response: VaultResponse = {
    lease_id: str(record.lease_id),
    renewable: record.renewable === true,
    lease_duration: num(record.lease_duration),
    data: asRecord(record.data),
    auth: auth && {
      client_token: str(auth.client_token),
      accessor: str(auth.accessor),
      policies: strings(auth.policies),
      token_policies: strings(auth.token_policies),
      metadata: stringMap(auth.metadata),
      lease_duration: num(auth.lease_duration),
      renewable: auth.renewable === true,
      orphan: auth.orphan === true,
    },
    wrap_info: wrap && {
      token: str(wrap.token),
      accessor: str(wrap.accessor),
      ttl: num(wrap.ttl),
      creation_time: str(wrap.creation_time),
      creation_path: str(wrap.creation_path),
      ...(typeof wrap.wrapped_accessor === 'string' && wrap.wrapped_accessor !== ''
        ? { wrapped_accessor: wrap.wrapped_accessor }
        : {}),
    },
    warnings: Array.isArray(record.warnings) ? strings(record.warnings) : null,
  };
  return response;
}
