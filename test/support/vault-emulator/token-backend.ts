/**
 * The token auth method (`auth/token/`), mounted in every namespace: create (plain, orphan, role),
 * lookups, renewals and revocations, with Vault's rules on who may create what.
 */
import { sanitizePolicies } from './acl.js';
import { badRequest, VaultHttpError, internalError } from './errors.js';
import { rfc3339 } from './ids.js';
import { configSeconds, ttlCappedWarning, type FieldSchema } from './params.js';
import type { Backend, Reply, RequestContext, RouteDef } from './router.js';
import { isWithin, type VaultState } from './state.js';
import type { TokenEntry } from './token-store.js';
import {
  SYSTEM_DEFAULT_TTL,
  SYSTEM_MAX_TTL,
  type NamespaceEntry,
  type TokenType,
  type TtlInput,
} from './types.js';

/** A token role (`auth/token/roles/:name`), configured by the test. */
export interface TokenRoleConfig {
  allowed_policies?: string[];
  disallowed_policies?: string[];
  /** Tokens created with the role have no parent. */
  orphan?: boolean;
  /** Default true. */
  renewable?: boolean;
  token_type?: TokenType;
  token_ttl?: TtlInput;
  token_max_ttl?: TtlInput;
  token_explicit_max_ttl?: TtlInput;
  token_period?: TtlInput;
}

interface TokenRole {
  readonly allowedPolicies: string[];
  readonly disallowedPolicies: string[];
  readonly orphan: boolean;
  readonly renewable: boolean;
  readonly tokenType: TokenType | undefined;
  readonly ttl: number;
  readonly maxTtl: number;
  readonly explicitMaxTtl: number;
  readonly period: number;
}

const CREATE_FIELDS: FieldSchema = {
  id: 'string',
  role_name: 'string',
  policies: 'strings',
  meta: 'kv',
  no_parent: 'bool',
  no_default_policy: 'bool',
  lease: 'duration',
  ttl: 'duration',
  type: 'string',
  explicit_max_ttl: 'duration',
  display_name: 'string',
  num_uses: 'int',
  renewable: 'bool',
  period: 'duration',
  entity_alias: 'string',
};

/** Vault's display name rule: `token` or `token-<name>`, runs of other characters become '-'. */
function tokenDisplayName(name: string | undefined): string {
  if (name === undefined || name === '') return 'token';
  return `token-${name}`.replace(/[^a-zA-Z0-9-]+/g, '-').replace(/-$/, '');
}

function subset(items: readonly string[], of: readonly string[]): boolean {
  return items.every((i) => of.includes(i));
}

function requireCaller(ctx: RequestContext): TokenEntry {
  // Unreachable for authenticated routes; guards handler wiring mistakes.
  if (ctx.token === undefined) throw new Error('vault-emulator: token route reached without a caller');
  return ctx.token;
}

export class TokenBackend implements Backend {
  readonly type = 'token';
  readonly routes: readonly RouteDef[];
  private readonly roles = new Map<string, TokenRole>();

  constructor(private readonly state: VaultState) {
    this.routes = [
      {
        pattern: 'create',
        fields: CREATE_FIELDS,
        operations: { update: (ctx) => this.create(ctx, 'create') },
      },
      {
        pattern: 'create-orphan',
        fields: CREATE_FIELDS,
        operations: { update: (ctx) => this.create(ctx, 'orphan') },
      },
      {
        pattern: 'create/:role',
        fields: CREATE_FIELDS,
        operations: { update: (ctx) => this.create(ctx, 'role') },
      },
      { pattern: 'lookup', fields: { token: 'string' }, operations: { update: (ctx) => this.lookup(ctx) } },
      {
        pattern: 'lookup-self',
        fields: { token: 'string' },
        operations: { read: (ctx) => this.lookupSelf(ctx), update: (ctx) => this.lookupSelf(ctx) },
      },
      {
        pattern: 'lookup-accessor',
        fields: { accessor: 'string' },
        operations: { update: (ctx) => this.lookupAccessor(ctx) },
      },
      {
        pattern: 'renew',
        fields: { token: 'string', increment: 'duration' },
        operations: { update: (ctx) => this.renew(ctx) },
      },
      {
        pattern: 'renew-self',
        fields: { token: 'string', increment: 'duration' },
        operations: {
          update: (ctx) => this.renewToken(requireCaller(ctx), ctx.fields.duration('increment') ?? 0),
        },
      },
      { pattern: 'revoke', fields: { token: 'string' }, operations: { update: (ctx) => this.revoke(ctx) } },
      { pattern: 'revoke-self', fields: {}, operations: { update: (ctx) => this.revokeSelf(ctx) } },
      {
        pattern: 'revoke-accessor',
        fields: { accessor: 'string' },
        operations: { update: (ctx) => this.revokeAccessor(ctx) },
      },
      {
        pattern: 'revoke-orphan',
        fields: { token: 'string' },
        sudo: true,
        operations: { update: (ctx) => this.revokeOrphan(ctx) },
      },
    ];
  }

  setRole(ns: NamespaceEntry, name: string, cfg: TokenRoleConfig): void {
    this.roles.set(`${ns.path}${name}`, {
      allowedPolicies: sanitizePolicies(cfg.allowed_policies ?? [], false),
      disallowedPolicies: sanitizePolicies(cfg.disallowed_policies ?? [], false),
      orphan: cfg.orphan ?? false,
      renewable: cfg.renewable ?? true,
      tokenType: cfg.token_type,
      ttl: configSeconds(cfg.token_ttl, 'token_ttl'),
      maxTtl: configSeconds(cfg.token_max_ttl, 'token_max_ttl'),
      explicitMaxTtl: configSeconds(cfg.token_explicit_max_ttl, 'token_explicit_max_ttl'),
      period: configSeconds(cfg.token_period, 'token_period'),
    });
  }

  private create(ctx: RequestContext, mode: 'create' | 'orphan' | 'role'): Reply {
    const parent = requireCaller(ctx);
    const f = ctx.fields;
    if (parent.type === 'batch') throw badRequest('batch tokens cannot create more tokens');
    const isRoot = parent.policies.includes('root');
    const isSudo = isRoot || this.state.capabilities(parent, ctx.namespace, ctx.path).has('sudo');

    let role: TokenRole | undefined;
    if (mode === 'role') {
      const name = ctx.params.role ?? '';
      role = this.roles.get(`${ctx.namespace.path}${name}`);
      if (role === undefined) throw badRequest(`unknown role ${name}`);
    }

    const customId = f.string('id');
    if (customId !== undefined && customId !== '') {
      if (!isSudo) throw badRequest('root or sudo privileges required to specify token id');
      if (/^(s|b|hvs|hvb)\./.test(customId))
        throw badRequest('custom token ID cannot have the "s." or "b." prefix');
      if (this.state.tokens.has(customId)) throw badRequest('cannot create a token with a duplicate ID');
    }

    const numUses = f.int('num_uses') ?? 0;
    if (numUses < 0) throw badRequest('number of uses cannot be negative');

    const typeName = f.string('type') || role?.tokenType || 'service';
    if (typeName !== 'service' && typeName !== 'batch')
      throw badRequest(`invalid 'token_type' value "${typeName}"`);
    const type: TokenType = typeName;

    let orphan = mode === 'orphan' || (role?.orphan ?? false);
    if (mode === 'create' && f.bool('no_parent') === true) {
      if (!isSudo) throw badRequest('root or sudo privileges required to create orphan token');
      orphan = true;
    }

    const noDefault = f.bool('no_default_policy') ?? false;
    const requested = f.strings('policies');
    let policies: string[];
    if (role !== undefined) {
      if (requested !== undefined && requested.length > 0) {
        const asked = sanitizePolicies(requested, false);
        const allowed = role.allowedPolicies;
        if (
          allowed.length > 0 &&
          !subset(
            asked.filter((p) => p !== 'default'),
            allowed,
          )
        ) {
          throw badRequest(
            `token policies (${JSON.stringify(asked)}) must be subset of the role's allowed policies (${JSON.stringify(allowed)})`,
          );
        }
        policies = asked;
      } else {
        policies = role.allowedPolicies.length > 0 ? [...role.allowedPolicies] : [...parent.policies];
      }
      const disallowed = policies.find((p) => role.disallowedPolicies.includes(p));
      if (disallowed !== undefined) throw badRequest(`token policy ${disallowed} is disallowed by this role`);
    } else if (requested !== undefined) {
      policies = sanitizePolicies(requested, false);
      if (!isSudo && !subset(policies, parent.policies))
        throw badRequest('child policies must be subset of parent');
    } else {
      policies = [...parent.policies];
    }
    if (policies.includes('root') && !isRoot) {
      throw badRequest('root tokens may not be created without parent token being root');
    }
    if (policies.includes('response-wrapping'))
      throw badRequest('cannot assign the response-wrapping policy');
    policies = sanitizePolicies(policies, !noDefault);

    const requestedPeriod = f.duration('period') ?? 0;
    if (mode !== 'role' && requestedPeriod > 0 && !isSudo) {
      throw badRequest('root or sudo privileges required to create periodic token');
    }
    const period = role !== undefined && role.period > 0 ? role.period : requestedPeriod;
    if (type === 'batch' && period > 0) throw badRequest('batch tokens cannot be periodic');

    let explicitMaxTtl = f.duration('explicit_max_ttl') ?? 0;
    if (role !== undefined && role.explicitMaxTtl > 0) {
      explicitMaxTtl =
        explicitMaxTtl > 0 ? Math.min(explicitMaxTtl, role.explicitMaxTtl) : role.explicitMaxTtl;
    }

    const warnings: string[] = [];
    let ttl = f.duration('ttl') ?? f.duration('lease') ?? 0;
    if (ttl < 0) throw badRequest('ttl must be positive');
    if (period > 0) {
      ttl = period;
    } else {
      // Only root tokens may live forever; everyone else gets the mount default.
      if (ttl === 0) ttl = role?.ttl || (policies.includes('root') ? 0 : SYSTEM_DEFAULT_TTL);
      const maxTtl =
        role !== undefined && role.maxTtl > 0 ? Math.min(role.maxTtl, SYSTEM_MAX_TTL) : SYSTEM_MAX_TTL;
      if (ttl > maxTtl) {
        warnings.push(ttlCappedWarning(ttl, maxTtl));
        ttl = maxTtl;
      }
    }
    if (explicitMaxTtl > 0 && (ttl === 0 || ttl > explicitMaxTtl)) {
      if (ttl > explicitMaxTtl) {
        warnings.push(
          `Explicit max TTL of "${explicitMaxTtl}s" is less than the TTL; TTL value is capped accordingly`,
        );
      }
      ttl = explicitMaxTtl;
    }

    const renewable = type === 'batch' ? false : (f.bool('renewable') ?? true) && (role?.renewable ?? true);
    const meta = f.kv('meta');
    const te = this.state.mintToken({
      namespace: ctx.namespace,
      type,
      kind: 'normal',
      policies,
      meta: meta === undefined || Object.keys(meta).length === 0 ? null : meta,
      displayName: tokenDisplayName(f.string('display_name')),
      path: ctx.path,
      entityId: orphan ? '' : parent.entityId,
      ttl,
      explicitMaxTtl,
      period,
      renewable,
      numUses,
      ...(orphan ? {} : { parent }),
      ...(customId !== undefined && customId !== '' ? { id: customId } : {}),
    });
    return { kind: 'json', auth: this.state.authBlock(te), warnings };
  }

  /** `data` of the lookup endpoints; `id` is hidden for accessor lookups, as in Vault. */
  lookupData(te: TokenEntry, showId: boolean): Record<string, unknown> {
    return {
      accessor: te.accessor,
      creation_time: Math.floor(te.creationTime / 1000),
      creation_ttl: te.creationTtl,
      display_name: te.displayName,
      entity_id: te.entityId,
      expire_time: te.expireAt === null ? null : rfc3339(te.expireAt),
      explicit_max_ttl: te.explicitMaxTtl,
      id: showId ? te.id : '',
      issue_time: rfc3339(te.creationTime),
      ...(te.lastRenewal === null
        ? {}
        : { last_renewal: rfc3339(te.lastRenewal), last_renewal_time: Math.floor(te.lastRenewal / 1000) }),
      meta: te.meta === null ? null : { ...te.meta },
      num_uses: te.numUses,
      orphan: te.parent === undefined,
      path: te.path,
      ...(te.period > 0 ? { period: te.period } : {}),
      policies: [...te.policies],
      renewable: te.renewable,
      ttl: this.state.ttlRemaining(te.expireAt),
      type: te.type,
    };
  }

  /** A token named in the body, as seen from the request's namespace. */
  private tokenIn(ns: NamespaceEntry, id: string | undefined): TokenEntry | undefined {
    if (id === undefined || id === '') return undefined;
    const te = this.state.tokens.get(id);
    return te !== undefined && isWithin(te.namespace, ns) ? te : undefined;
  }

  private accessorIn(ns: NamespaceEntry, accessor: string | undefined): TokenEntry {
    const te = accessor === undefined || accessor === '' ? undefined : this.state.tokens.byAccessor(accessor);
    if (te === undefined || !isWithin(te.namespace, ns)) throw badRequest('invalid accessor');
    return te;
  }

  private lookup(ctx: RequestContext): Reply {
    const id = ctx.fields.string('token');
    if (id === undefined || id === '') throw badRequest('missing token');
    const te = this.tokenIn(ctx.namespace, id);
    if (te === undefined) throw new VaultHttpError(403, ['bad token']);
    return { kind: 'json', data: this.lookupData(te, true) };
  }

  private lookupSelf(ctx: RequestContext): Reply {
    return { kind: 'json', data: this.lookupData(requireCaller(ctx), true) };
  }

  private lookupAccessor(ctx: RequestContext): Reply {
    const te = this.accessorIn(ctx.namespace, ctx.fields.string('accessor'));
    return { kind: 'json', data: this.lookupData(te, false) };
  }

  private renew(ctx: RequestContext): Reply {
    const te = this.tokenIn(ctx.namespace, ctx.fields.string('token'));
    if (te === undefined) throw badRequest('invalid token');
    return this.renewToken(te, ctx.fields.duration('increment') ?? 0);
  }

  private renewToken(te: TokenEntry, increment: number): Reply {
    if (te.type === 'batch') throw badRequest('batch tokens cannot be renewed');
    if (!te.renewable) throw badRequest('lease is not renewable');
    const now = this.state.now();
    const warnings: string[] = [];
    let ttl = te.period > 0 ? te.period : increment > 0 ? increment : te.creationTtl;
    if (te.maxExpireAt !== null) {
      const left = Math.floor((te.maxExpireAt - now) / 1000);
      if (left <= 0) throw badRequest('past the max TTL, cannot renew');
      if (ttl > left) {
        warnings.push(ttlCappedWarning(ttl, left));
        ttl = left;
      }
    }
    te.expireAt = ttl > 0 ? now + ttl * 1000 : null;
    te.lastRenewal = now;
    return { kind: 'json', auth: this.state.authBlock(te), warnings };
  }

  private revoke(ctx: RequestContext): Reply {
    const te = this.tokenIn(ctx.namespace, ctx.fields.string('token'));
    // Revoking a token that is already gone succeeds, like revoking an unknown lease.
    if (te !== undefined) {
      if (te.type === 'batch') throw badRequest('batch tokens cannot be revoked');
      this.state.revokeTokenTree(te, 'api');
    }
    return { kind: 'empty', status: 204 };
  }

  private revokeSelf(ctx: RequestContext): Reply {
    const te = requireCaller(ctx);
    if (te.type === 'batch') throw badRequest('batch tokens cannot be revoked');
    this.state.revokeTokenTree(te, 'api');
    return { kind: 'empty', status: 204 };
  }

  private revokeAccessor(ctx: RequestContext): Reply {
    if (this.state.consumeRevokeFault()) throw internalError();
    const te = this.accessorIn(ctx.namespace, ctx.fields.string('accessor'));
    this.state.revokeTokenTree(te, 'api');
    return { kind: 'empty', status: 204 };
  }

  private revokeOrphan(ctx: RequestContext): Reply {
    const te = this.tokenIn(ctx.namespace, ctx.fields.string('token'));
    if (te !== undefined) this.state.revokeTokenAlone(te, 'api');
    return { kind: 'empty', status: 204 };
  }
}
