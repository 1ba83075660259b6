/**
 * The emulator's public face: configuration calls for the test, fault switches, and read-only views
 * of the state (tokens, leases, backend credentials, requests, revocations) to assert on.
 */
import { sanitizePolicies, type PolicyRules } from './acl.js';
import { JwtAuthBackend, type JwtAuthConfig } from './jwt-auth.js';
import type { LeaseEntry, LeaseKind } from './lease-store.js';
import { configSeconds } from './params.js';
import { normalizeMount, type Backend } from './router.js';
import {
  AwsBackend,
  DatabaseBackend,
  KvV2Backend,
  type AwsKey,
  type AwsRoleConfig,
  type DatabaseRoleConfig,
  type DatabaseUser,
} from './secret-engines.js';
import type { VaultHttpServer } from './server.js';
import type { VaultState } from './state.js';
import { TokenBackend, type TokenRoleConfig } from './token-backend.js';
import type { TokenEntry } from './token-store.js';
import {
  SYSTEM_DEFAULT_TTL,
  type HealthMode,
  type NamespaceEntry,
  type RequestRecord,
  type RevocationRecord,
  type TokenType,
  type TtlInput,
  type VaultFaults,
} from './types.js';

/** Where an engine is mounted: default mount path of its kind, root namespace. */
export interface MountOptions {
  mount?: string;
  namespace?: string;
}

/** A token minted directly by the emulator (like one an operator hands out): always an orphan. */
export interface CreateTokenOptions {
  policies?: string[];
  noDefaultPolicy?: boolean;
  /** Default 768h; tokens with the root policy default to never expiring. */
  ttl?: TtlInput;
  explicitMaxTtl?: TtlInput;
  period?: TtlInput;
  numUses?: number;
  renewable?: boolean;
  type?: TokenType;
  meta?: Record<string, string>;
  displayName?: string;
  namespace?: string;
}

/** A snapshot of a live token. Times are epoch ms, TTLs seconds. */
export interface TokenInfo {
  readonly id: string;
  readonly accessor: string;
  readonly namespace: string;
  readonly type: TokenType;
  readonly wrapping: boolean;
  readonly policies: string[];
  readonly meta: Record<string, string> | null;
  readonly displayName: string;
  readonly path: string;
  readonly numUses: number;
  readonly orphan: boolean;
  readonly parentAccessor: string | undefined;
  readonly childAccessors: string[];
  readonly creationTime: number;
  readonly creationTtl: number;
  readonly expireTime: number | null;
  readonly ttl: number;
  readonly explicitMaxTtl: number;
  readonly period: number;
  readonly renewable: boolean;
  readonly entityId: string;
}

/** A snapshot of an active lease. `owner` is the accessor of the token that took it. */
export interface LeaseInfo {
  readonly id: string;
  readonly path: string;
  readonly namespace: string;
  readonly kind: LeaseKind;
  readonly ownerAccessor: string | undefined;
  readonly issueTime: number;
  readonly expireTime: number;
  readonly lastRenewal: number | null;
  readonly renewable: boolean;
  readonly ttl: number;
  /** Non-secret identification of the credential (username or access key). */
  readonly data: Record<string, unknown>;
}

export class VaultEmulator {
  constructor(
    /** `http://127.0.0.1:<port>`; give it to node-vault as `endpoint`. */
    readonly url: string,
    /** A root token (policy `root`, never expires, orphan) in the root namespace. */
    readonly rootToken: string,
    readonly rootAccessor: string,
    private readonly state: VaultState,
    private readonly server: VaultHttpServer,
    private readonly tokenBackend: TokenBackend,
  ) {}

  /** Fault switches; assign a whole object or set fields. Read at every request. */
  get faults(): VaultFaults {
    return this.state.faults;
  }

  set faults(value: VaultFaults) {
    this.state.faults = { ...value };
  }

  /** What sys/health reports (default `active`). */
  get health(): HealthMode {
    return this.state.health;
  }

  set health(mode: HealthMode) {
    this.state.health = mode;
  }

  /** Every request in arrival order, without token values or bodies. Clearing it is allowed. */
  get requests(): RequestRecord[] {
    return this.state.requests;
  }

  /** Every token and lease revocation, in order, with its reason. */
  get revocations(): readonly RevocationRecord[] {
    return this.state.revocations;
  }

  /** The emulator's clock (epoch ms). */
  now(): number {
    return this.state.now();
  }

  /** Revokes whatever has expired by now; requests and inspection calls do this too. */
  tick(): void {
    this.state.sweep();
  }

  /** Defines or replaces a policy: namespace-relative path patterns -> capabilities. */
  setPolicy(name: string, rules: PolicyRules, opts: { namespace?: string } = {}): void {
    this.state.policies.set(this.state.namespace(opts.namespace).path, name, rules);
  }

  /** A role for `auth/token/create/:role`. */
  configureTokenRole(name: string, cfg: TokenRoleConfig, opts: { namespace?: string } = {}): void {
    this.tokenBackend.setRole(this.state.namespace(opts.namespace), name, cfg);
  }

  configureDatabaseRole(name: string, cfg: DatabaseRoleConfig & MountOptions = {}): void {
    this.engine(cfg, 'database', (s) => new DatabaseBackend(s), DatabaseBackend).setRole(name, cfg);
  }

  configureAwsRole(name: string, cfg: AwsRoleConfig & MountOptions = {}): void {
    this.engine(cfg, 'aws', (s) => new AwsBackend(s), AwsBackend).setRole(name, cfg);
  }

  /** Writes a KV v2 secret version (mount default `secret`); returns the version number. */
  putKv(path: string, data: Record<string, unknown>, opts: MountOptions = {}): number {
    return this.engine(opts, 'secret', (s) => new KvV2Backend(s), KvV2Backend).put(path, data);
  }

  /** Enables JWT auth at `auth/<mount>/` (default `auth/jwt/`), replacing an earlier configuration. */
  configureJwtAuth(cfg: JwtAuthConfig): void {
    const ns = this.state.namespace(cfg.namespace);
    const mountPath = `auth/${normalizeMount(cfg.mount ?? 'jwt')}`;
    const existing = this.state.mounts.get(ns, mountPath);
    if (existing !== undefined && !(existing instanceof JwtAuthBackend)) {
      throw new Error(`vault-emulator: ${mountPath} is already a ${existing.type} mount`);
    }
    this.state.mounts.mount(ns, mountPath, new JwtAuthBackend(this.state, mountPath, cfg));
  }

  /** Mints an orphan token without a request, e.g. the broker's own token. */
  createToken(opts: CreateTokenOptions = {}): { token: string; accessor: string } {
    const policies = sanitizePolicies(opts.policies ?? [], opts.noDefaultPolicy !== true);
    const explicitMaxTtl = configSeconds(opts.explicitMaxTtl, 'explicitMaxTtl');
    const period = configSeconds(opts.period, 'period');
    let ttl = period > 0 ? period : configSeconds(opts.ttl, 'ttl');
    if (ttl === 0 && !policies.includes('root')) ttl = SYSTEM_DEFAULT_TTL;
    if (explicitMaxTtl > 0 && (ttl === 0 || ttl > explicitMaxTtl)) ttl = explicitMaxTtl;
    const type = opts.type ?? 'service';
    const te = this.state.mintToken({
      namespace: this.state.namespace(opts.namespace),
      type,
      kind: 'normal',
      policies,
      meta: opts.meta === undefined ? null : { ...opts.meta },
      displayName: opts.displayName ?? 'token',
      path: 'auth/token/create',
      entityId: '',
      ttl,
      explicitMaxTtl,
      period,
      renewable: type === 'service' && opts.renewable !== false,
      numUses: opts.numUses ?? 0,
    });
    return { token: te.id, accessor: te.accessor };
  }

  /** Revokes a token as `auth/token/revoke` would (children and their leases too). False if not live. */
  revokeToken(token: string): boolean {
    this.state.sweep();
    const te = this.state.tokens.get(token);
    if (te === undefined) return false;
    this.state.revokeTokenTree(te, 'emulator');
    return true;
  }

  /** A live token by value; undefined once revoked, expired or used up. */
  lookupToken(token: string): TokenInfo | undefined {
    this.state.sweep();
    const te = this.state.tokens.get(token);
    return te === undefined ? undefined : this.tokenInfo(te);
  }

  /** A live token by accessor; undefined once revoked, expired or used up. */
  tokenByAccessor(accessor: string): TokenInfo | undefined {
    this.state.sweep();
    const te = this.state.tokens.byAccessor(accessor);
    return te === undefined ? undefined : this.tokenInfo(te);
  }

  /** Every live token, wrapping tokens included. */
  tokens(): TokenInfo[] {
    this.state.sweep();
    return this.state.tokens
      .entries()
      .filter((te) => this.state.tokens.isLive(te))
      .map((te) => this.tokenInfo(te));
  }

  /** Active leases. */
  leases(): LeaseInfo[] {
    this.state.sweep();
    return this.state.leases.entries().map((l) => this.leaseInfo(l));
  }

  /** An active lease; undefined once revoked or expired. */
  lease(id: string): LeaseInfo | undefined {
    this.state.sweep();
    const l = this.state.leases.get(id);
    return l === undefined ? undefined : this.leaseInfo(l);
  }

  /** Users that exist in the emulated databases (dropped when their lease is revoked). */
  databaseUsers(opts: MountOptions = {}): DatabaseUser[] {
    this.state.sweep();
    const backend = this.existingEngine(opts, 'database', DatabaseBackend);
    return backend === undefined ? [] : [...backend.users.values()];
  }

  /** AWS access keys that still work: IAM users until revoked, STS sessions until they end. */
  awsKeys(opts: MountOptions = {}): AwsKey[] {
    this.state.sweep();
    return this.existingEngine(opts, 'aws', AwsBackend)?.liveKeys(this.state.now()) ?? [];
  }

  /** Successful unwraps of a wrapping token. */
  unwrapCount(wrappingToken: string): number {
    return this.state.wraps.unwrapCount(wrappingToken);
  }

  async close(): Promise<void> {
    await this.server.close();
  }

  private mountOf(opts: MountOptions, defaultMount: string): { ns: NamespaceEntry; mountPath: string } {
    return {
      ns: this.state.namespace(opts.namespace),
      mountPath: normalizeMount(opts.mount ?? defaultMount),
    };
  }

  private existingEngine<T extends Backend>(
    opts: MountOptions,
    defaultMount: string,
    kind: abstract new (...args: never[]) => T,
  ): T | undefined {
    const { ns, mountPath } = this.mountOf(opts, defaultMount);
    const backend = this.state.mounts.get(ns, mountPath);
    return backend instanceof kind ? backend : undefined;
  }

  /** The engine at the mount, mounting a new one on first use. */
  private engine<T extends Backend>(
    opts: MountOptions,
    defaultMount: string,
    create: (state: VaultState) => T,
    kind: abstract new (...args: never[]) => T,
  ): T {
    const { ns, mountPath } = this.mountOf(opts, defaultMount);
    const existing = this.state.mounts.get(ns, mountPath);
    if (existing instanceof kind) return existing;
    if (existing !== undefined)
      throw new Error(`vault-emulator: ${mountPath} is already a ${existing.type} mount`);
    const backend = create(this.state);
    this.state.mounts.mount(ns, mountPath, backend);
    return backend;
  }

  private tokenInfo(te: TokenEntry): TokenInfo {
    const accessorOf = (id: string): string | undefined => this.state.tokens.peek(id)?.accessor;
    return {
      id: te.id,
      accessor: te.accessor,
      namespace: te.namespace.path,
      type: te.type,
      wrapping: te.kind === 'wrapping',
      policies: [...te.policies],
      meta: te.meta === null ? null : { ...te.meta },
      displayName: te.displayName,
      path: te.path,
      numUses: te.numUses,
      orphan: te.parent === undefined,
      parentAccessor: te.parent === undefined ? undefined : accessorOf(te.parent),
      childAccessors: [...te.children].map((id) => accessorOf(id) ?? ''),
      creationTime: te.creationTime,
      creationTtl: te.creationTtl,
      expireTime: te.expireAt,
      ttl: this.state.ttlRemaining(te.expireAt),
      explicitMaxTtl: te.explicitMaxTtl,
      period: te.period,
      renewable: te.renewable,
      entityId: te.entityId,
    };
  }

  private leaseInfo(l: LeaseEntry): LeaseInfo {
    return {
      id: l.id,
      path: l.path,
      namespace: l.namespace.path,
      kind: l.kind,
      ownerAccessor: l.owner === undefined ? undefined : this.state.tokens.peek(l.owner)?.accessor,
      issueTime: l.issueTime,
      expireTime: l.expireAt,
      lastRenewal: l.lastRenewal,
      renewable: l.renewable,
      ttl: this.state.ttlRemaining(l.expireAt),
      data: { ...l.data },
    };
  }
}
