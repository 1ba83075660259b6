/**
 * Types shared by the Vault emulator's parts and by its public API. Wire shapes follow
 * ../../../../shared/spec/vault.md section 1; names keep Vault's snake_case where they are on the wire.
 */

/** A Vault request operation, as ACL capabilities name them. */
export type Operation = 'create' | 'read' | 'update' | 'patch' | 'delete' | 'list';

/** A namespace: `path` is '' for the root namespace or `a/b/` (with the trailing slash) for a child. */
export interface NamespaceEntry {
  readonly path: string;
  /** Vault's short namespace id, appended to token, accessor and lease ids made inside the namespace. */
  readonly id: string;
}

export const ROOT_NAMESPACE: NamespaceEntry = { path: '', id: 'root' };

export type TokenType = 'service' | 'batch';

/** `auth` of the envelope, filled by token creation and logins. */
export interface AuthBlock {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  metadata: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
  entity_id: string;
  token_type: TokenType;
  orphan: boolean;
  num_uses: number;
}

/** `wrap_info` of a wrapped response. */
export interface WrapInfo {
  token: string;
  accessor: string;
  ttl: number;
  creation_time: string;
  creation_path: string;
  /** Present only when the wrapped response created a token (Vault omits it otherwise). */
  wrapped_accessor?: string;
}

/** The JSON body of every non-error, non-raw Vault response. */
export interface Envelope {
  request_id: string;
  lease_id: string;
  renewable: boolean;
  lease_duration: number;
  data: Record<string, unknown> | null;
  wrap_info: WrapInfo | null;
  warnings: string[] | null;
  auth: AuthBlock | null;
}

/** Switchable faults; every field is optional so a test can assign `{ sealed: true }` alone. */
export interface VaultFaults {
  /** Every path except sys/health and sys/seal-status answers 503 `Vault is sealed`. */
  sealed?: boolean;
  /** Added before each answer (including errors and health). */
  latencyMs?: number;
  /** Every path except sys/health and sys/seal-status answers 429 `rate limit quota exceeded`. */
  rateLimited?: boolean;
  /** The next N calls to sys/leases/revoke (or sys/revoke) and auth/token/revoke-accessor fail with 500 and change nothing. */
  failRevokes?: number;
  /** Requests are read and then never answered, as behind a blocked audit device. */
  hang?: boolean;
  /**
   * Every request (sys/health included) answers `status` (default 307) with `Location` = this
   * origin + the request's path and query, as a standby or a hijacked load balancer would: a client
   * that follows it sends its request, `X-Vault-Token` included, to that origin.
   */
  redirectTo?: { origin: string; status?: 301 | 302 | 303 | 307 | 308 };
}

/** What sys/health reports; `uninitialized` also makes every other path answer 503. */
export type HealthMode = 'active' | 'standby' | 'performance_standby' | 'dr_secondary' | 'uninitialized';

/** One HTTP request as the emulator saw it. Token values and bodies are never kept. */
export interface RequestRecord {
  readonly at: number;
  readonly method: string;
  /** Path relative to the namespace, without `/v1/` and the query. */
  path: string;
  /** Namespace path ('' for root, `ns1/` otherwise); the normalised header value when it names no known namespace. */
  namespace: string;
  readonly hadToken: boolean;
  /** The request asked for response wrapping and got a wrapped answer. */
  wrapped: boolean;
  /** 0 until answered (stays 0 for hung requests). */
  status: number;
  /** Why the emulator itself failed (an emulator bug, answered 500). */
  error?: string;
}

export type RevocationReason =
  | 'api'
  | 'expired'
  | 'token-revoked'
  | 'parent-revoked'
  | 'uses-exhausted'
  | 'prefix'
  | 'emulator'
  | 'unwrapped';

/** A token or lease that went away, and why. Tokens are named by accessor ('' for batch tokens). */
export interface RevocationRecord {
  readonly kind: 'token' | 'lease';
  readonly id: string;
  readonly namespace: string;
  readonly reason: RevocationReason;
  readonly at: number;
}

/** Vault's built-in default and maximum lease TTL (768h). */
export const SYSTEM_DEFAULT_TTL = 768 * 3600;
export const SYSTEM_MAX_TTL = 768 * 3600;

/** A TTL in configuration: seconds, or a Vault duration string such as "15m". */
export type TtlInput = number | string;
