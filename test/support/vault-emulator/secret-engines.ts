/**
 * The secrets engines: database and AWS (dynamic, leased, with real backend state so a test can see
 * a revoked credential is really gone) and KV v2 (static, no lease).
 */
import { badRequest, VaultHttpError } from './errors.js';
import { BASE62, generatePassword, randomString, rfc3339, UPPER_ALNUM } from './ids.js';
import { leaseDuration } from './lease-store.js';
import { configSeconds, ttlCappedWarning } from './params.js';
import type { Backend, Reply, RequestContext, RouteDef } from './router.js';
import type { VaultState } from './state.js';
import { SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, type TtlInput } from './types.js';

export interface DatabaseRoleConfig {
  /** Lease TTL of issued credentials; 0 or absent = the mount default (768h). */
  default_ttl?: TtlInput;
  /** Ceiling for renewals; 0 or absent = the mount max (768h). */
  max_ttl?: TtlInput;
}

export interface AwsRoleConfig {
  /** Lease TTL of `aws/creds` IAM users and the default TTL of `aws/sts` (else 1h). */
  default_ttl?: TtlInput;
  /** Ceiling for IAM user renewals and for the `ttl` asked of `aws/sts`. */
  max_ttl?: TtlInput;
  /** Makes `aws/sts` answer assumed-role credentials for this role ARN (else a federation token). */
  role_arn?: string;
}

interface RoleTtls {
  readonly defaultTtl: number;
  readonly maxTtl: number;
}

function roleTtls(cfg: { default_ttl?: TtlInput; max_ttl?: TtlInput }): RoleTtls {
  return {
    defaultTtl: configSeconds(cfg.default_ttl, 'default_ttl'),
    maxTtl: configSeconds(cfg.max_ttl, 'max_ttl'),
  };
}

/** Vault username templates truncate the display name and role name to 8 characters. */
function shortName(s: string): string {
  return s.replace(/[^a-zA-Z0-9_-]/g, '-').slice(0, 8);
}

export interface DatabaseUser {
  readonly username: string;
  readonly role: string;
  readonly createdAt: number;
}

export class DatabaseBackend implements Backend {
  readonly type = 'database';
  readonly routes: readonly RouteDef[];
  private readonly roles = new Map<string, RoleTtls>();
  /** The "database": users that exist until their lease is revoked. */
  readonly users = new Map<string, DatabaseUser>();

  constructor(private readonly state: VaultState) {
    this.routes = [{ pattern: 'creds/:name', fields: {}, operations: { read: (ctx) => this.creds(ctx) } }];
  }

  setRole(name: string, cfg: DatabaseRoleConfig): void {
    this.roles.set(name, roleTtls(cfg));
  }

  private creds(ctx: RequestContext): Reply {
    const name = ctx.params.name ?? '';
    const role = this.roles.get(name);
    if (role === undefined) throw badRequest(`unknown role: ${name}`);
    const maxTtl = role.maxTtl || SYSTEM_MAX_TTL;
    // The database engine issues for the role default; a requested TTL is not a parameter here.
    const ttl = Math.min(role.defaultTtl || SYSTEM_DEFAULT_TTL, maxTtl);
    const display = shortName(ctx.token?.displayName ?? 'token');
    const username =
      `v-${display}-${shortName(name)}-${randomString(20)}-${Math.floor(ctx.now / 1000)}`.slice(0, 63);
    const password = generatePassword();
    this.users.set(username, { username, role: name, createdAt: ctx.now });
    const lease = this.state.issueLease(ctx, {
      kind: 'database',
      ttl,
      maxTtl,
      renewable: true,
      defaultTtl: ttl,
      data: { username },
      revokeBackend: () => this.users.delete(username),
    });
    return {
      kind: 'json',
      data: { username, password },
      lease: { id: lease.id, duration: leaseDuration(lease), renewable: true },
    };
  }
}

export interface AwsKey {
  readonly accessKey: string;
  readonly role: string;
  readonly kind: 'iam_user' | 'sts';
  /** STS sessions end on their own (epoch ms); IAM users live until revoked. */
  readonly expiresAt: number | undefined;
}

const AWS_ACCOUNT = '123456789012';
/** AWS refuses STS sessions shorter than 15 minutes. */
const STS_MIN_TTL = 900;
const STS_DEFAULT_TTL = 3600;

export class AwsBackend implements Backend {
  readonly type = 'aws';
  readonly routes: readonly RouteDef[];
  private readonly roles = new Map<string, RoleTtls & { readonly roleArn: string | undefined }>();
  /** The "AWS account": access keys that still work. */
  readonly keys = new Map<string, AwsKey>();

  constructor(private readonly state: VaultState) {
    const stsFields = { ttl: 'duration', role_arn: 'string', role_session_name: 'string' } as const;
    this.routes = [
      {
        pattern: 'creds/:name',
        fields: stsFields,
        operations: { read: (ctx) => this.iamUser(ctx), update: (ctx) => this.iamUser(ctx) },
      },
      {
        pattern: 'sts/:name',
        fields: stsFields,
        operations: { read: (ctx) => this.sts(ctx), update: (ctx) => this.sts(ctx) },
      },
    ];
  }

  setRole(name: string, cfg: AwsRoleConfig): void {
    this.roles.set(name, { ...roleTtls(cfg), roleArn: cfg.role_arn });
  }

  /** Live keys: IAM users not yet deleted and STS sessions not yet past their end. */
  liveKeys(now: number): AwsKey[] {
    return [...this.keys.values()].filter((k) => k.expiresAt === undefined || k.expiresAt > now);
  }

  private role(ctx: RequestContext): RoleTtls & { readonly roleArn: string | undefined } {
    const name = ctx.params.name ?? '';
    const role = this.roles.get(name);
    if (role === undefined) throw badRequest(`Role "${name}" not found`);
    return role;
  }

  private iamUser(ctx: RequestContext): Reply {
    const name = ctx.params.name ?? '';
    const role = this.role(ctx);
    const maxTtl = role.maxTtl || SYSTEM_MAX_TTL;
    const ttl = Math.min(role.defaultTtl || SYSTEM_DEFAULT_TTL, maxTtl);
    const accessKey = `AKIA${randomString(16, UPPER_ALNUM)}`;
    const user = `vault-${shortName(ctx.token?.displayName ?? 'token')}-${shortName(name)}-${Math.floor(ctx.now / 1000)}-${randomString(5, '0123456789')}`;
    this.keys.set(accessKey, { accessKey, role: name, kind: 'iam_user', expiresAt: undefined });
    const lease = this.state.issueLease(ctx, {
      kind: 'aws-iam',
      ttl,
      maxTtl,
      renewable: true,
      defaultTtl: ttl,
      data: { access_key: accessKey },
      revokeBackend: () => this.keys.delete(accessKey),
    });
    return {
      kind: 'json',
      data: {
        access_key: accessKey,
        secret_key: randomString(40, `${BASE62}+/`),
        session_token: null,
        arn: `arn:aws:iam::${AWS_ACCOUNT}:user/${user}`,
      },
      lease: { id: lease.id, duration: leaseDuration(lease), renewable: true },
    };
  }

  private sts(ctx: RequestContext): Reply {
    const name = ctx.params.name ?? '';
    const role = this.role(ctx);
    const warnings: string[] = [];
    let ttl = ctx.fields.duration('ttl') || role.defaultTtl || STS_DEFAULT_TTL;
    if (role.maxTtl > 0 && ttl > role.maxTtl) {
      warnings.push(ttlCappedWarning(ttl, role.maxTtl));
      ttl = role.maxTtl;
    }
    if (ttl < STS_MIN_TTL) {
      // What AWS answers, and Vault passes on, for a DurationSeconds below the floor.
      throw badRequest(
        `Error generating STS keys: ValidationError: 1 validation error detected: Value '${ttl}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to ${STS_MIN_TTL}`,
      );
    }
    const accessKey = `ASIA${randomString(16, UPPER_ALNUM)}`;
    const sessionName =
      ctx.fields.string('role_session_name') || `vault-${shortName(name)}-${Math.floor(ctx.now / 1000)}`;
    const arn =
      role.roleArn === undefined
        ? `arn:aws:sts::${AWS_ACCOUNT}:federated-user/vault-${shortName(name)}-${randomString(8, UPPER_ALNUM)}`
        : `${role.roleArn.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/${sessionName}`;
    this.keys.set(accessKey, { accessKey, role: name, kind: 'sts', expiresAt: ctx.now + ttl * 1000 });
    const lease = this.state.issueLease(ctx, {
      kind: 'aws-sts',
      ttl,
      maxTtl: ttl,
      renewable: false,
      defaultTtl: ttl,
      data: { access_key: accessKey },
      // STS sessions cannot be revoked: the lease goes away, the session runs to its end.
      revokeBackend: () => undefined,
    });
    return {
      kind: 'json',
      data: {
        access_key: accessKey,
        secret_key: randomString(40, `${BASE62}+/`),
        session_token: randomString(356, `${BASE62}+/`),
        arn,
      },
      lease: { id: lease.id, duration: leaseDuration(lease), renewable: false },
      warnings,
    };
  }
}

interface KvVersion {
  readonly data: Record<string, unknown>;
  readonly createdTime: number;
}

export class KvV2Backend implements Backend {
  readonly type = 'kv';
  readonly routes: readonly RouteDef[];
  private readonly secrets = new Map<string, KvVersion[]>();

  constructor(private readonly state: VaultState) {
    this.routes = [
      {
        pattern: 'data/*path',
        fields: { version: 'int', data: 'object', options: 'object' },
        exists: ({ params }) => this.secrets.has(params.path ?? ''),
        operations: {
          read: (ctx) => this.read(ctx),
          create: (ctx) => this.write(ctx),
          update: (ctx) => this.write(ctx),
        },
      },
    ];
  }

  put(path: string, data: Record<string, unknown>): number {
    const versions = this.secrets.get(path) ?? [];
    versions.push({ data: { ...data }, createdTime: this.state.now() });
    this.secrets.set(path, versions);
    return versions.length;
  }

  private metadata(version: KvVersion, number: number): Record<string, unknown> {
    return {
      created_time: rfc3339(version.createdTime),
      custom_metadata: null,
      deletion_time: '',
      destroyed: false,
      version: number,
    };
  }

  private read(ctx: RequestContext): Reply {
    const versions = this.secrets.get(ctx.params.path ?? '') ?? [];
    const asked = ctx.fields.int('version') ?? 0;
    const number = asked > 0 ? asked : versions.length;
    const version = versions[number - 1];
    // KV v2 answers a missing secret with 404 and an empty error list.
    if (version === undefined) throw new VaultHttpError(404, []);
    return { kind: 'json', data: { data: { ...version.data }, metadata: this.metadata(version, number) } };
  }

  private write(ctx: RequestContext): Reply {
    const path = ctx.params.path ?? '';
    const data = ctx.fields.object('data');
    if (data === undefined) throw badRequest('no data provided');
    const cas = ctx.fields.object('options')?.cas;
    const current = this.secrets.get(path)?.length ?? 0;
    if (typeof cas === 'number' && cas !== current) {
      throw badRequest('check-and-set parameter did not match the current version');
    }
    const number = this.put(path, data);
    const version = this.secrets.get(path)?.[number - 1] as KvVersion;
    return { kind: 'json', data: this.metadata(version, number) };
  }
}
