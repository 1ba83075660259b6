/**
 * The credential backend seam (after Vault's sdk/logical): a backend is a factory plus this
 * interface; revoke is required, renew optional.
 */

/** One role from the role catalog. `name` is `<backend>/<role>`. */
export interface RoleDefinition {
  name: string;
  backend: string;
  /** Upper bound for any credential of this role. */
  maxTtlSeconds: number;
  sensitivity: 'public' | 'internal' | 'confidential' | 'restricted';
  /** Environments the role may be issued in (empty = any configured environment). */
  environments: string[];
  description: string;
  /** Backend-specific settings, validated by the backend's validateRole. */
  settings: Record<string, unknown>;
}

export interface IssueRequest {
  leaseId: string;
  agent: string;
  taskId: string;
  environment: string;
  role: RoleDefinition;
  /** Already bounded by the broker: min(requested, role max, task remaining). */
  ttlSeconds: number;
  /** epoch ms; the credential must not outlive this. */
  notAfter: number;
  now: number;
  /**
   * Set in a delegated task: the agents from the root task's owner down to `agent` (the last
   * entry). A backend that can say who acts for whom (the token backend's RFC 8693 `act` claim)
   * names them.
   */
  delegationChain?: readonly string[];
}

/** What the agent receives. Everything in `secret` and `token` is secret; `metadata` is not. */
export interface Credential {
  /** e.g. `jwt`, `vault_token`, `vault_secret`, `vault_wrapped`, `aws_sts`. */
  kind: string;
  token: string;
  data: Record<string, string>;
  metadata: Record<string, string>;
}

export interface IssuedCredential {
  credential: Credential;
  /** Opaque reference for revoke (a jti, a lease id, an accessor); never a secret. */
  backendRef: string;
  /** epoch ms, as the backend reports it (the truth for the lease). */
  expiresAt: number;
  renewable: boolean;
}

export interface RevokeTarget {
  leaseId: string;
  backendRef: string;
  expiresAt: number;
}

export interface CredentialBackend {
  readonly name: string;
  /** Returns every problem with a role's settings (empty = valid). Called at startup. */
  validateRole(role: RoleDefinition): string[];
  issue(req: IssueRequest): Promise<IssuedCredential>;
  /** Idempotent: revoking an already-revoked or expired credential succeeds. */
  revoke(target: RevokeTarget): Promise<void>;
  /**
   * `expires_only` for a role whose credentials cannot be revoked one by one (cloud STS sessions):
   * the broker still calls revoke (it cleans up the backend's bookkeeping) but reports such leases
   * as not revocable, never as revoked. Default: `revocable`.
   */
  revocability?(role: RoleDefinition): 'revocable' | 'expires_only';
  /**
   * For an `expires_only` credential whose real end is not the lease's (a wrapped Vault dynamic
   * secret lives for its Vault role's TTL, whatever the task): when it ends at the latest (epoch
   * ms), Infinity when the backend cannot say, undefined when the lease's own expiry is the truth.
   */
  validUntil?(target: RevokeTarget): number | undefined;
  renew?(target: RevokeTarget, ttlSeconds: number): Promise<{ expiresAt: number }>;
  close?(): Promise<void>;
}

/** Builds a backend from its config section. */
export type CredentialBackendFactory = (config: Record<string, unknown>) => Promise<CredentialBackend>;
