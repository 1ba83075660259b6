/**
 * The JWT auth method (`auth/jwt/login`), as vault-plugin-auth-jwt validates a JWT-SVID: signature
 * against the configured JWKS, then time claims with Vault's default leeways, issuer, audience,
 * subject and the user claim; success mints an orphan token with the role's policies.
 */
import {
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  type JSONWebKeySet,
  type JWK,
} from 'jose';
import { sanitizePolicies } from './acl.js';
import { badRequest } from './errors.js';
import { newUuid } from './ids.js';
import { configSeconds } from './params.js';
import type { Backend, Reply, RequestContext, RouteDef } from './router.js';
import type { VaultState } from './state.js';
import { SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, type TokenType, type TtlInput } from './types.js';

export interface JwtRoleConfig {
  /** Any one of them must be in the token's `aud`. */
  bound_audiences: string[];
  bound_subject?: string;
  /** Claim naming the user (entity alias); Vault requires it. Default `sub`. */
  user_claim?: string;
  token_policies: string[];
  token_ttl?: TtlInput;
  token_max_ttl?: TtlInput;
  token_explicit_max_ttl?: TtlInput;
  token_num_uses?: number;
  token_period?: TtlInput;
  token_type?: TokenType;
  token_no_default_policy?: boolean;
  /** claim -> metadata key copied into `auth.metadata`, as Vault's `claim_mappings`. */
  claim_mappings?: Record<string, string>;
  /** Seconds; Vault's defaults are 60 / 150 / 150, and -1 disables one. */
  clock_skew_leeway?: number;
  expiration_leeway?: number;
  not_before_leeway?: number;
}

export interface JwtAuthConfig {
  /** Default `jwt` (so the login path is `auth/jwt/login`). */
  mount?: string;
  namespace?: string;
  /** Called at every login, so a test can rotate keys; `use: "jwt-svid"` keys are accepted. */
  jwks: () => JSONWebKeySet | Promise<JSONWebKeySet>;
  bound_issuer?: string;
  /** Default: every asymmetric algorithm, as Vault allows for JWT (not OIDC) roles. */
  jwt_supported_algs?: string[];
  default_role?: string;
  roles: Record<string, JwtRoleConfig>;
}

const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];
const DEFAULT_CLOCK_SKEW = 60;
const DEFAULT_CLAIM_LEEWAY = 150;

interface JwtRole {
  readonly boundAudiences: readonly string[];
  readonly boundSubject: string | undefined;
  readonly userClaim: string;
  readonly policies: readonly string[];
  readonly ttl: number;
  readonly maxTtl: number;
  readonly explicitMaxTtl: number;
  readonly numUses: number;
  readonly period: number;
  readonly tokenType: TokenType;
  readonly claimMappings: Readonly<Record<string, string>>;
  readonly clockSkew: number;
  readonly expirationLeeway: number;
  readonly notBeforeLeeway: number;
}

function leeway(value: number | undefined, fallback: number): number {
  if (value === undefined || value === 0) return fallback;
  return value < 0 ? 0 : value;
}

function compileRole(name: string, cfg: JwtRoleConfig): JwtRole {
  if (cfg.bound_audiences.length === 0 && cfg.bound_subject === undefined) {
    throw new Error(
      `vault-emulator: jwt role ${name}: must have at least one bound constraint when creating/updating a role`,
    );
  }
  const userClaim = cfg.user_claim ?? 'sub';
  if (userClaim === '')
    throw new Error(`vault-emulator: jwt role ${name}: a user claim must be defined on the role`);
  return {
    boundAudiences: [...cfg.bound_audiences],
    boundSubject: cfg.bound_subject,
    userClaim,
    policies: sanitizePolicies(cfg.token_policies, cfg.token_no_default_policy !== true),
    ttl: configSeconds(cfg.token_ttl, 'token_ttl'),
    maxTtl: configSeconds(cfg.token_max_ttl, 'token_max_ttl'),
    explicitMaxTtl: configSeconds(cfg.token_explicit_max_ttl, 'token_explicit_max_ttl'),
    numUses: cfg.token_num_uses ?? 0,
    period: configSeconds(cfg.token_period, 'token_period'),
    tokenType: cfg.token_type ?? 'service',
    claimMappings: { ...(cfg.claim_mappings ?? {}) },
    clockSkew: leeway(cfg.clock_skew_leeway, DEFAULT_CLOCK_SKEW),
    expirationLeeway: leeway(cfg.expiration_leeway, DEFAULT_CLAIM_LEEWAY),
    notBeforeLeeway: leeway(cfg.not_before_leeway, DEFAULT_CLAIM_LEEWAY),
  };
}

/** jose only uses keys without `use` or with `use: "sig"`; SPIFFE bundles say `jwt-svid`. */
function usableKeys(jwks: JSONWebKeySet): JSONWebKeySet {
  return {
    keys: jwks.keys.map((k): JWK => {
      if (k.use !== 'jwt-svid') return k;
      const { use: _use, ...rest } = k;
      return rest;
    }),
  };
}

const invalid = (reason: string): Error => badRequest(`error validating token: ${reason}`);

function numericClaim(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(`invalid ${name} claim`);
  return v;
}

export class JwtAuthBackend implements Backend {
  readonly type = 'jwt';
  readonly routes: readonly RouteDef[];
  private readonly roles = new Map<string, JwtRole>();
  /** Entity ids by user claim value, stable across logins as Vault's identity store keeps them. */
  private readonly entities = new Map<string, string>();

  constructor(
    private readonly state: VaultState,
    private readonly mountPath: string,
    private readonly config: JwtAuthConfig,
  ) {
    for (const [name, role] of Object.entries(config.roles)) this.roles.set(name, compileRole(name, role));
    this.routes = [
      {
        pattern: 'login',
        unauthenticated: true,
        fields: { role: 'string', jwt: 'string' },
        operations: { update: (ctx) => this.login(ctx) },
      },
    ];
  }

  private async verify(jwt: string): Promise<Record<string, unknown>> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(jwt).alg;
    } catch {
      throw invalid('malformed token');
    }
    const allowed = this.config.jwt_supported_algs ?? ASYMMETRIC_ALGS;
    if (typeof alg !== 'string' || !allowed.includes(alg)) {
      throw invalid(`token signed with unsupported algorithm "${String(alg)}"`);
    }
    const keySet = createLocalJWKSet(usableKeys(await this.config.jwks()));
    let payload: Uint8Array;
    try {
      payload = (await compactVerify(jwt, keySet, { algorithms: allowed })).payload;
    } catch (err) {
      if (err instanceof joseErrors.JWSInvalid) throw invalid('malformed token');
      throw invalid('failed to verify id token signature');
    }
    let claims: unknown;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      throw invalid('malformed token claims');
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
      throw invalid('malformed token claims');
    return claims as Record<string, unknown>;
  }

  private async login(ctx: RequestContext): Promise<Reply> {
    const roleName = ctx.fields.string('role') || this.config.default_role || '';
    if (roleName === '') throw badRequest('missing role');
    const role = this.roles.get(roleName);
    if (role === undefined) throw badRequest(`role "${roleName}" could not be found`);
    const jwt = ctx.fields.string('jwt') ?? '';
    if (jwt === '') throw badRequest('missing token');

    const claims = await this.verify(jwt);
    const now = ctx.now / 1000;
    const exp = numericClaim(claims, 'exp');
    const nbf = numericClaim(claims, 'nbf');
    const iat = numericClaim(claims, 'iat');
    if (exp === undefined && nbf === undefined && iat === undefined) {
      throw invalid('no issue time, notbefore or expiration time encoded in token');
    }
    if (exp !== undefined && now > exp + role.clockSkew + role.expirationLeeway) {
      throw invalid('invalid expiration time (exp) claim: token is expired');
    }
    if (nbf !== undefined && now < nbf - role.clockSkew - role.notBeforeLeeway) {
      throw invalid('invalid not before (nbf) claim: token not yet valid');
    }
    if (iat !== undefined && now < iat - role.clockSkew) {
      throw invalid('invalid issued at (iat) claim: token issued in the future');
    }
    if (this.config.bound_issuer !== undefined && claims.iss !== this.config.bound_issuer) {
      throw invalid('invalid issuer (iss) claim');
    }
    const rawAud: unknown = claims.aud;
    const aud: string[] =
      typeof rawAud === 'string'
        ? [rawAud]
        : Array.isArray(rawAud)
          ? rawAud.filter((a): a is string => typeof a === 'string')
          : [];
    if (role.boundAudiences.length === 0 && aud.length > 0) {
      throw badRequest('audience claim found in JWT but no audiences bound to the role');
    }
    if (role.boundAudiences.length > 0 && !aud.some((a) => role.boundAudiences.includes(a))) {
      throw invalid('invalid audience (aud) claim: audience claim does not match any expected audience');
    }
    if (role.boundSubject !== undefined && claims.sub !== role.boundSubject) {
      throw invalid('invalid subject (sub) claim');
    }
    const userValue = claims[role.userClaim];
    if (typeof userValue !== 'string' && typeof userValue !== 'number') {
      throw badRequest(`claim "${role.userClaim}" not found in token`);
    }
    const user = String(userValue);

    const metadata: Record<string, string> = { role: roleName };
    for (const [claim, key] of Object.entries(role.claimMappings)) {
      const v = claims[claim];
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') metadata[key] = String(v);
    }
    const entityKey = `${ctx.namespace.path}${this.mountPath}${user}`;
    const entityId = this.entities.get(entityKey) ?? newUuid();
    this.entities.set(entityKey, entityId);

    let ttl = role.period > 0 ? role.period : role.ttl || SYSTEM_DEFAULT_TTL;
    const maxTtl = role.maxTtl > 0 ? Math.min(role.maxTtl, SYSTEM_MAX_TTL) : SYSTEM_MAX_TTL;
    if (role.period === 0 && ttl > maxTtl) ttl = maxTtl;
    if (role.explicitMaxTtl > 0 && ttl > role.explicitMaxTtl) ttl = role.explicitMaxTtl;
    const te = this.state.mintToken({
      namespace: ctx.namespace,
      type: role.tokenType,
      kind: 'normal',
      policies: role.policies,
      meta: metadata,
      displayName: `${this.mountPath.replace(/^auth\/|\/$/g, '')}-${user}`.replace(/[^a-zA-Z0-9-]+/g, '-'),
      path: ctx.path,
      entityId,
      ttl,
      explicitMaxTtl: role.explicitMaxTtl,
      period: role.period,
      renewable: role.tokenType === 'service',
      numUses: role.numUses,
    });
    return { kind: 'json', auth: this.state.authBlock(te) };
  }
}
