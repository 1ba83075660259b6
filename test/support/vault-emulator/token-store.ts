/**
 * Tokens with their parent/child tree and accessors. The store only keeps entries and answers
 * "is this token usable now"; revocation cascades (children, leases, wraps) live in VaultState.
 */
import { randomString } from './ids.js';
import { SYSTEM_MAX_TTL, type NamespaceEntry, type TokenType } from './types.js';

export interface TokenEntry {
  readonly id: string;
  /** '' for batch tokens, which have no accessor. */
  readonly accessor: string;
  readonly namespace: NamespaceEntry;
  readonly type: TokenType;
  /** Response-wrapping tokens only unwrap; they are kept apart from ordinary tokens. */
  readonly kind: 'normal' | 'wrapping';
  readonly policies: readonly string[];
  readonly meta: Readonly<Record<string, string>> | null;
  readonly displayName: string;
  readonly path: string;
  readonly entityId: string;
  readonly creationTime: number;
  readonly creationTtl: number;
  readonly explicitMaxTtl: number;
  readonly period: number;
  readonly renewable: boolean;
  /** Remaining uses; 0 means unlimited. */
  numUses: number;
  /** The last allowed use has begun: the token serves that request, then it is revoked. */
  exhausted: boolean;
  /** Epoch ms; null for tokens that never expire (root). */
  expireAt: number | null;
  /** Ceiling for renewals (explicit max TTL, else the system max TTL); null for none. */
  readonly maxExpireAt: number | null;
  lastRenewal: number | null;
  /** Parent token id; undefined for orphans. */
  parent: string | undefined;
  readonly children: Set<string>;
}

export interface NewToken {
  readonly namespace: NamespaceEntry;
  readonly type: TokenType;
  readonly kind: 'normal' | 'wrapping';
  readonly policies: readonly string[];
  readonly meta: Readonly<Record<string, string>> | null;
  readonly displayName: string;
  readonly path: string;
  readonly entityId: string;
  /** Seconds; 0 = never expires. */
  readonly ttl: number;
  readonly explicitMaxTtl: number;
  readonly period: number;
  readonly renewable: boolean;
  readonly numUses: number;
  readonly parent?: TokenEntry;
  /** A caller-chosen id (root-only `id` parameter); generated otherwise. */
  readonly id?: string;
}

/** Batch tokens are long encrypted blobs in Vault; the length only keeps them looking different. */
const BATCH_TOKEN_LENGTH = 120;

export class TokenStore {
  private readonly byId = new Map<string, TokenEntry>();
  private readonly idByAccessor = new Map<string, string>();

  constructor(private readonly now: () => number) {}

  insert(spec: NewToken): TokenEntry {
    const now = this.now();
    // Vault appends the namespace id to ids minted inside a child namespace.
    const suffix = spec.namespace.path === '' ? '' : `.${spec.namespace.id}`;
    const id =
      spec.id ??
      (spec.type === 'batch'
        ? `hvb.${randomString(BATCH_TOKEN_LENGTH)}`
        : `hvs.${randomString(24)}${suffix}`);
    const accessor = spec.type === 'batch' ? '' : `${randomString(24)}${suffix}`;
    let maxTtl = spec.explicitMaxTtl;
    // Periodic and non-expiring tokens have no ceiling but an explicit one.
    if (maxTtl === 0 && spec.period === 0 && spec.ttl > 0) maxTtl = SYSTEM_MAX_TTL;
    const entry: TokenEntry = {
      id,
      accessor,
      namespace: spec.namespace,
      type: spec.type,
      kind: spec.kind,
      policies: [...spec.policies],
      meta: spec.meta === null ? null : { ...spec.meta },
      displayName: spec.displayName,
      path: spec.path,
      entityId: spec.entityId,
      creationTime: now,
      creationTtl: spec.ttl,
      explicitMaxTtl: spec.explicitMaxTtl,
      period: spec.period,
      renewable: spec.renewable,
      numUses: spec.numUses,
      exhausted: false,
      expireAt: spec.ttl > 0 ? now + spec.ttl * 1000 : null,
      maxExpireAt: maxTtl > 0 ? now + maxTtl * 1000 : null,
      lastRenewal: null,
      parent: spec.parent?.id,
      children: new Set(),
    };
    spec.parent?.children.add(id);
    this.byId.set(id, entry);
    if (accessor !== '') this.idByAccessor.set(accessor, id);
    return entry;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** The entry even when expired (for the sweep and inspection of the tree). */
  peek(id: string): TokenEntry | undefined {
    return this.byId.get(id);
  }

  isLive(te: TokenEntry): boolean {
    return this.byId.get(te.id) === te && !te.exhausted && (te.expireAt === null || te.expireAt > this.now());
  }

  /** The token if it exists and can still be used now. */
  get(id: string): TokenEntry | undefined {
    const te = this.byId.get(id);
    return te !== undefined && this.isLive(te) ? te : undefined;
  }

  byAccessor(accessor: string): TokenEntry | undefined {
    const id = this.idByAccessor.get(accessor);
    return id === undefined ? undefined : this.get(id);
  }

  entries(): TokenEntry[] {
    return [...this.byId.values()];
  }

  /** `root` and everything under it, descendants before ancestors, so a cascade revokes leaves first. */
  subtree(root: TokenEntry): TokenEntry[] {
    const out: TokenEntry[] = [];
    const visit = (te: TokenEntry): void => {
      for (const childId of te.children) {
        const child = this.byId.get(childId);
        if (child !== undefined) visit(child);
      }
      out.push(te);
    };
    visit(root);
    return out;
  }

  /** Makes the children of `te` orphans (revoke-orphan). */
  orphanChildren(te: TokenEntry): void {
    for (const childId of te.children) {
      const child = this.byId.get(childId);
      if (child !== undefined) child.parent = undefined;
    }
    te.children.clear();
  }

  remove(te: TokenEntry): void {
    this.byId.delete(te.id);
    if (te.accessor !== '') this.idByAccessor.delete(te.accessor);
    if (te.parent !== undefined) this.byId.get(te.parent)?.children.delete(te.id);
  }
}
