/**
 * The emulator's whole state and the rules that cut across stores: namespaces, ACL checks, lease
 * issue, and revocation cascades (a token takes its children, their leases and their wraps with it).
 */
import { PolicyStore, type Capability } from './acl.js';
import { randomString, rfc3339 } from './ids.js';
import { LeaseStore, type LeaseEntry, type LeaseKind } from './lease-store.js';
import { MountTable, type RequestContext } from './router.js';
import { TokenStore, type NewToken, type TokenEntry } from './token-store.js';
import {
  ROOT_NAMESPACE,
  type AuthBlock,
  type Envelope,
  type HealthMode,
  type NamespaceEntry,
  type RequestRecord,
  type RevocationReason,
  type RevocationRecord,
  type VaultFaults,
} from './types.js';
import { WrapStore } from './wrap-store.js';

/** '' for the root namespace, `a/b/` otherwise; accepts `ns1`, `/ns1/`, `ns1/`. */
export function normalizeNamespacePath(value: string | undefined): string {
  const trimmed = (value ?? '').trim().replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

/** Whether `inner` is `outer` or one of its descendants. */
export function isWithin(inner: NamespaceEntry, outer: NamespaceEntry): boolean {
  return inner.path.startsWith(outer.path);
}

export interface LeaseSpec {
  readonly kind: LeaseKind;
  readonly ttl: number;
  readonly maxTtl: number;
  readonly renewable: boolean;
  readonly defaultTtl: number;
  readonly data: Readonly<Record<string, unknown>>;
  readonly revokeBackend: () => void;
}

export class VaultState {
  readonly tokens: TokenStore;
  readonly leases = new LeaseStore();
  readonly policies = new PolicyStore();
  readonly mounts = new MountTable();
  readonly wraps = new WrapStore();
  readonly namespaces = new Map<string, NamespaceEntry>();
  readonly revocations: RevocationRecord[] = [];
  readonly requests: RequestRecord[] = [];
  faults: VaultFaults = {};
  health: HealthMode = 'active';

  constructor(
    readonly now: () => number,
    namespaces: readonly string[],
  ) {
    this.tokens = new TokenStore(now);
    this.namespaces.set('', ROOT_NAMESPACE);
    for (const ns of namespaces) {
      // Declaring `a/b` also creates `a`, as a namespace can only live inside an existing one.
      const parts = normalizeNamespacePath(ns).split('/').filter(Boolean);
      for (let i = 1; i <= parts.length; i++) {
        const path = `${parts.slice(0, i).join('/')}/`;
        if (!this.namespaces.has(path)) this.namespaces.set(path, { path, id: randomString(5) });
      }
    }
  }

  /** A configured namespace for emulator configuration calls; throws for unknown ones. */
  namespace(value: string | undefined): NamespaceEntry {
    const ns = this.namespaces.get(normalizeNamespacePath(value));
    if (ns === undefined) throw new Error(`vault-emulator: namespace "${value ?? ''}" is not configured`);
    return ns;
  }

  /**
   * The request's namespace from `X-Vault-Namespace` and the path, which may itself begin with
   * child namespaces (`/v1/ns1/secret/...`). `namespace` is undefined when the header names none.
   */
  resolve(header: string | undefined, rawPath: string): { namespace?: NamespaceEntry; path: string } {
    const headerPath = normalizeNamespacePath(header);
    const base = this.namespaces.get(headerPath);
    if (base === undefined) return { path: rawPath };
    const full = headerPath + rawPath;
    let best = base;
    for (const ns of this.namespaces.values()) {
      if (ns.path.length > best.path.length && ns.path.startsWith(headerPath) && full.startsWith(ns.path)) {
        best = ns;
      }
    }
    return { namespace: best, path: full.slice(best.path.length) };
  }

  /** What `te` may do on `path` in `ns`: its policies live in its own namespace, paths are relative to it. */
  capabilities(te: TokenEntry, ns: NamespaceEntry, path: string): Set<Capability> {
    const relative = ns.path.slice(te.namespace.path.length) + path;
    return this.policies.capabilities(te.namespace.path, te.policies, relative);
  }

  /** Consumes one injected revoke failure, if any is left. */
  consumeRevokeFault(): boolean {
    const left = this.faults.failRevokes ?? 0;
    if (left <= 0) return false;
    this.faults.failRevokes = left - 1;
    return true;
  }

  mintToken(spec: NewToken): TokenEntry {
    return this.tokens.insert(spec);
  }

  ttlRemaining(expireAt: number | null): number {
    return expireAt === null ? 0 : Math.max(0, Math.round((expireAt - this.now()) / 1000));
  }

  authBlock(te: TokenEntry): AuthBlock {
    return {
      client_token: te.id,
      accessor: te.accessor,
      policies: [...te.policies],
      token_policies: [...te.policies],
      metadata: te.meta === null ? null : { ...te.meta },
      lease_duration: this.ttlRemaining(te.expireAt),
      renewable: te.renewable,
      entity_id: te.entityId,
      token_type: te.type,
      orphan: te.parent === undefined,
      num_uses: te.numUses,
    };
  }

  /** Records a lease for a secret the caller just got; the caller's token owns it. */
  issueLease(ctx: RequestContext, spec: LeaseSpec): LeaseEntry {
    const now = this.now();
    let owner = ctx.token;
    let ttl = spec.ttl;
    if (owner?.type === 'batch') {
      // A batch token's leases live no longer than it does and belong to its parent, if any.
      if (owner.expireAt !== null) ttl = Math.min(ttl, Math.floor((owner.expireAt - now) / 1000));
      owner = owner.parent === undefined ? undefined : this.tokens.peek(owner.parent);
    }
    const suffix = ctx.namespace.path === '' ? '' : `.${ctx.namespace.id}`;
    const lease: LeaseEntry = {
      id: `${ctx.path}/${randomString(24)}${suffix}`,
      path: ctx.path,
      namespace: ctx.namespace,
      kind: spec.kind,
      owner: owner?.id,
      issueTime: now,
      expireAt: now + ttl * 1000,
      lastRenewal: null,
      renewable: spec.renewable,
      maxExpireAt: now + spec.maxTtl * 1000,
      defaultTtl: spec.defaultTtl,
      data: { ...spec.data },
      revokeBackend: spec.revokeBackend,
    };
    this.leases.add(lease);
    return lease;
  }

  /** The lease if it exists and is visible from `ns` (its own namespace or an ancestor). */
  leaseIn(ns: NamespaceEntry, id: string): LeaseEntry | undefined {
    const lease = this.leases.get(id);
    return lease !== undefined && isWithin(lease.namespace, ns) ? lease : undefined;
  }

  revokeLease(lease: LeaseEntry, reason: RevocationReason): void {
    if (this.leases.get(lease.id) !== lease) return;
    lease.revokeBackend();
    this.leases.remove(lease.id);
    this.revocations.push({
      kind: 'lease',
      id: lease.id,
      namespace: lease.namespace.path,
      reason,
      at: this.now(),
    });
  }

  private dropToken(te: TokenEntry, reason: RevocationReason): void {
    for (const lease of this.leases.ownedBy(te.id)) this.revokeLease(lease, 'token-revoked');
    this.tokens.remove(te);
    this.wraps.delete(te.id);
    this.revocations.push({
      kind: 'token',
      id: te.accessor,
      namespace: te.namespace.path,
      reason,
      at: this.now(),
    });
  }

  /** Revokes `root`, every token under it and every lease any of them created. */
  revokeTokenTree(root: TokenEntry, reason: RevocationReason): void {
    if (!this.tokens.has(root.id)) return;
    for (const te of this.tokens.subtree(root)) this.dropToken(te, te === root ? reason : 'parent-revoked');
  }

  /** revoke-orphan: the token and its leases go, its children become orphans. */
  revokeTokenAlone(te: TokenEntry, reason: RevocationReason): void {
    if (!this.tokens.has(te.id)) return;
    this.tokens.orphanChildren(te);
    this.dropToken(te, reason);
  }

  /** Revokes what has expired, as Vault's expiration manager does in the background. */
  sweep(): void {
    const now = this.now();
    for (const te of this.tokens.entries()) {
      if (te.expireAt !== null && te.expireAt <= now) this.revokeTokenTree(te, 'expired');
    }
    for (const lease of this.leases.entries()) {
      if (lease.expireAt <= now) this.revokeLease(lease, 'expired');
    }
  }

  /** Puts `body` behind a new single-use wrapping token and returns the wrap-only envelope. */
  wrap(ns: NamespaceEntry, path: string, body: Envelope, ttl: number, requestId: string): Envelope {
    const te = this.mintToken({
      namespace: ns,
      type: 'service',
      kind: 'wrapping',
      policies: ['response-wrapping'],
      meta: null,
      displayName: '',
      path,
      entityId: '',
      ttl,
      explicitMaxTtl: ttl,
      period: 0,
      renewable: false,
      numUses: 1,
    });
    const creationTime = this.now();
    const wrappedAccessor = body.auth?.accessor ?? '';
    this.wraps.add({ tokenId: te.id, body, creationPath: path, creationTime, ttl, wrappedAccessor });
    return {
      request_id: requestId,
      lease_id: '',
      renewable: false,
      lease_duration: 0,
      data: null,
      wrap_info: {
        token: te.id,
        accessor: te.accessor,
        ttl,
        creation_time: rfc3339(creationTime),
        creation_path: path,
        ...(wrappedAccessor === '' ? {} : { wrapped_accessor: wrappedAccessor }),
      },
      warnings: null,
      auth: null,
    };
  }
}
