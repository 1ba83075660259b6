/**
 * The `sys/` paths the broker meets: leases, response unwrapping, health and seal status.
 */
import { badRequest, internalError, WRAPPING_TOKEN_INVALID } from './errors.js';
import { rfc3339 } from './ids.js';
import { ttlCappedWarning, type FieldSchema } from './params.js';
import type { Backend, Handler, Reply, RequestContext, RouteDef } from './router.js';
import { isWithin, type VaultState } from './state.js';

export const VAULT_VERSION = '1.17.6';
const CLUSTER_NAME = 'vault-emulator';
const CLUSTER_ID = '5f6a7e42-7c1d-4cb4-9d0a-3b1f2d5e9c10';

const HEALTH_FIELDS: FieldSchema = {
  standbyok: 'bool',
  perfstandbyok: 'bool',
  activecode: 'int',
  standbycode: 'int',
  drsecondarycode: 'int',
  performancestandbycode: 'int',
  sealedcode: 'int',
  uninitcode: 'int',
};

const RENEW_FIELDS: FieldSchema = { lease_id: 'string', increment: 'duration' };
const REVOKE_FIELDS: FieldSchema = { lease_id: 'string', sync: 'bool' };

export class SysBackend implements Backend {
  readonly type = 'system';
  readonly routes: readonly RouteDef[];

  constructor(private readonly state: VaultState) {
    const renew: Handler = (ctx) => this.renew(ctx);
    const revoke: Handler = (ctx) => this.revoke(ctx);
    const revokePrefix: Handler = (ctx) => this.revokePrefix(ctx);
    this.routes = [
      {
        pattern: 'health',
        unauthenticated: true,
        fields: HEALTH_FIELDS,
        operations: { read: (ctx) => this.healthReply(ctx) },
      },
      {
        pattern: 'seal-status',
        unauthenticated: true,
        fields: {},
        operations: { read: () => this.sealStatus() },
      },
      {
        pattern: 'leases/lookup',
        fields: { lease_id: 'string' },
        operations: { update: (ctx) => this.lookup(ctx) },
      },
      { pattern: 'leases/renew', fields: RENEW_FIELDS, operations: { update: renew } },
      { pattern: 'leases/renew/*url_lease_id', fields: RENEW_FIELDS, operations: { update: renew } },
      { pattern: 'renew', fields: RENEW_FIELDS, operations: { update: renew } },
      { pattern: 'renew/*url_lease_id', fields: RENEW_FIELDS, operations: { update: renew } },
      { pattern: 'leases/revoke', fields: REVOKE_FIELDS, operations: { update: revoke } },
      { pattern: 'leases/revoke/*url_lease_id', fields: REVOKE_FIELDS, operations: { update: revoke } },
      { pattern: 'revoke', fields: REVOKE_FIELDS, operations: { update: revoke } },
      { pattern: 'revoke/*url_lease_id', fields: REVOKE_FIELDS, operations: { update: revoke } },
      {
        pattern: 'leases/revoke-prefix/*prefix',
        sudo: true,
        fields: { sync: 'bool' },
        operations: { update: revokePrefix },
      },
      {
        pattern: 'leases/revoke-force/*prefix',
        sudo: true,
        fields: {},
        operations: { update: revokePrefix },
      },
      {
        pattern: 'wrapping/unwrap',
        unwrap: true,
        fields: { token: 'string' },
        operations: { update: (ctx) => this.unwrap(ctx) },
      },
      {
        pattern: 'wrapping/lookup',
        unauthenticated: true,
        fields: { token: 'string' },
        operations: { update: (ctx) => this.wrapLookup(ctx), read: (ctx) => this.wrapLookup(ctx) },
      },
    ];
  }

  private leaseIdOf(ctx: RequestContext): string | undefined {
    const id = ctx.params.url_lease_id ?? ctx.fields.string('lease_id');
    return id === '' ? undefined : id;
  }

  private lookup(ctx: RequestContext): Reply {
    const id = ctx.fields.string('lease_id');
    if (id === undefined || id === '') throw badRequest('missing lease id');
    const lease = this.state.leaseIn(ctx.namespace, id);
    if (lease === undefined) throw badRequest('invalid lease');
    return {
      kind: 'json',
      data: {
        id: lease.id,
        issue_time: rfc3339(lease.issueTime),
        expire_time: rfc3339(lease.expireAt),
        last_renewal: lease.lastRenewal === null ? null : rfc3339(lease.lastRenewal),
        renewable: lease.renewable,
        ttl: this.state.ttlRemaining(lease.expireAt),
      },
    };
  }

  private renew(ctx: RequestContext): Reply {
    const id = this.leaseIdOf(ctx);
    if (id === undefined) throw badRequest('lease_id must be specified');
    const lease = this.state.leaseIn(ctx.namespace, id);
    if (lease === undefined) throw badRequest('lease not found');
    if (!lease.renewable) throw badRequest('lease is not renewable');
    const now = this.state.now();
    const increment = ctx.fields.duration('increment') ?? 0;
    // Engines renew to the increment asked for, else their role default, never past the max TTL.
    let ttl = increment > 0 ? increment : lease.defaultTtl;
    const left = Math.floor((lease.maxExpireAt - now) / 1000);
    if (left <= 0) throw badRequest('past the max TTL, cannot renew');
    const warnings: string[] = [];
    if (ttl > left) {
      warnings.push(ttlCappedWarning(ttl, left));
      ttl = left;
    }
    lease.expireAt = now + ttl * 1000;
    lease.lastRenewal = now;
    return { kind: 'json', lease: { id: lease.id, duration: ttl, renewable: true }, warnings };
  }

  private revoke(ctx: RequestContext): Reply {
    if (this.state.consumeRevokeFault()) throw internalError();
    const id = this.leaseIdOf(ctx);
    if (id === undefined) throw badRequest('lease_id must be specified');
    const sync = ctx.fields.bool('sync') ?? true;
    // An unknown (or already revoked) lease is not an error: revocation is idempotent.
    const lease = this.state.leaseIn(ctx.namespace, id);
    if (lease !== undefined) this.state.revokeLease(lease, 'api');
    return { kind: 'empty', status: sync ? 204 : 202 };
  }

  private revokePrefix(ctx: RequestContext): Reply {
    const prefix = ctx.params.prefix ?? '';
    for (const lease of this.state.leases.entries()) {
      if (lease.namespace === ctx.namespace && lease.id.startsWith(prefix))
        this.state.revokeLease(lease, 'prefix');
    }
    return { kind: 'empty', status: 204 };
  }

  private unwrap(ctx: RequestContext): Reply {
    const id = ctx.fields.string('token') || ctx.rawToken || '';
    const te = this.state.tokens.get(id);
    const wrapped = this.state.wraps.get(id);
    if (
      te === undefined ||
      te.kind !== 'wrapping' ||
      wrapped === undefined ||
      !isWithin(ctx.namespace, te.namespace)
    ) {
      throw badRequest(WRAPPING_TOKEN_INVALID);
    }
    this.state.revokeTokenTree(te, 'unwrapped');
    this.state.wraps.recordUnwrap(id);
    return { kind: 'raw', status: 200, body: wrapped.body };
  }

  private wrapLookup(ctx: RequestContext): Reply {
    const id = ctx.fields.string('token') || ctx.rawToken || '';
    const te = this.state.tokens.get(id);
    const wrapped = this.state.wraps.get(id);
    if (te === undefined || te.kind !== 'wrapping' || wrapped === undefined)
      throw badRequest(WRAPPING_TOKEN_INVALID);
    return {
      kind: 'json',
      data: {
        creation_path: wrapped.creationPath,
        creation_time: rfc3339(wrapped.creationTime),
        creation_ttl: wrapped.ttl,
      },
    };
  }

  private healthReply(ctx: RequestContext): Reply {
    const f = ctx.fields;
    const mode = this.state.health;
    const initialized = mode !== 'uninitialized';
    const sealed = !initialized || this.state.faults.sealed === true;
    let status: number;
    if (!initialized) status = f.int('uninitcode') ?? 501;
    else if (sealed) status = f.int('sealedcode') ?? 503;
    else if (mode === 'dr_secondary') status = f.int('drsecondarycode') ?? 472;
    else if (mode === 'performance_standby') {
      status = f.bool('perfstandbyok') === true ? 200 : (f.int('performancestandbycode') ?? 473);
    } else if (mode === 'standby')
      status = f.bool('standbyok') === true ? 200 : (f.int('standbycode') ?? 429);
    else status = f.int('activecode') ?? 200;
    return {
      kind: 'raw',
      status,
      body: {
        initialized,
        sealed,
        standby: mode === 'standby' || mode === 'performance_standby',
        performance_standby: mode === 'performance_standby',
        replication_performance_mode: 'disabled',
        replication_dr_mode: mode === 'dr_secondary' ? 'secondary' : 'disabled',
        server_time_utc: Math.floor(ctx.now / 1000),
        version: VAULT_VERSION,
        // A sealed node does not know its cluster.
        ...(sealed ? {} : { cluster_name: CLUSTER_NAME, cluster_id: CLUSTER_ID }),
      },
    };
  }

  private sealStatus(): Reply {
    const initialized = this.state.health !== 'uninitialized';
    const sealed = !initialized || this.state.faults.sealed === true;
    return {
      kind: 'raw',
      status: 200,
      body: {
        type: 'shamir',
        initialized,
        sealed,
        t: 1,
        n: 1,
        progress: 0,
        nonce: '',
        version: VAULT_VERSION,
        migration: false,
        recovery_seal: false,
        storage_type: 'inmem',
        ...(sealed ? {} : { cluster_name: CLUSTER_NAME, cluster_id: CLUSTER_ID }),
      },
    };
  }
}
