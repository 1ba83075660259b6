/**
 * BreakGlassStore on Redis. Writes are Lua scripts (lua/*.lua), atomic across replicas.
 *
 * Keys (prefix `svb` by default; all carry the one hash tag `{svb}`, so scripts run on Redis Cluster):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:breakglass:<id>` | hash | one grant; `roles` as JSON; `uses`; review fields | none until reviewed; then expiresAt + retention |
 * | `{svb}:breakglass:agent:<spiffeId>` | zset | one agent's grant ids by expiresAt | newest member's expiresAt |
 * | `{svb}:breakglass:unreviewed` | zset | unreviewed grant ids by createdAt | none; a grant leaves when reviewed |
 *
 * A grant is an override of policy, so it must stay in front of a human until reviewed: expiry ends
 * its effect (findActive), never its record. Grant ids may not contain ':' or be `unreviewed`, so a
 * grant key can never be one of the two index keys.
 */
import type { RedisClient } from '../redis/connect.js';
import { BrokerError, invalidArgument, unavailable } from '../errors.js';
import {
  byOldest,
  DEFAULT_RETENTION_SECONDS,
  grantExists,
  isGrantId,
  requireRetentionSeconds,
  validateFindActive,
  validateNewGrant,
  validateReview,
} from './approval-records.js';
import { FieldReader, fieldsOf, hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import type { BreakGlassGrant, BreakGlassStore } from './types.js';

// Shipped next to this module; the build must copy src/approvals/lua/ to dist (as for leases).
const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPT_NAMES = [
  'grant-break-glass',
  'find-active-break-glass',
  'record-break-glass-use',
  'list-unreviewed-break-glass',
  'review-break-glass',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface RedisBreakGlassStoreOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb` (share it with the lease store). */
  prefix?: string;
  /** How long a reviewed grant stays readable after its expiresAt. Default 7 days. */
  retentionSeconds?: number;
}

function storeUnavailable(cause: unknown): BrokerError {
  return unavailable('break_glass_store_unavailable', 'break-glass store unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'break-glass store returned a malformed record', {
    reason: 'break_glass_store_corrupt',
    cause: new Error(what),
  });
}

type ScriptCode = 'break_glass_exists' | 'break_glass_not_found' | 'corrupt';
const SCRIPT_CODES = new Map<number, ScriptCode>([
  [-1, 'break_glass_exists'],
  [-2, 'break_glass_not_found'],
  [-9, 'corrupt'],
]);

type ScriptReply =
  { kind: 'none' } | { kind: 'count'; value: number } | { kind: 'record'; fields: Record<string, string> };

/**
 * The one function that turns a script reply into a result or an error: named negative codes that
 * mean a refused write or an unreadable record become BrokerErrors, not_found becomes `none`, a
 * non-negative number is a count, and anything else must be a record.
 */
function interpretReply(reply: unknown, id: string): ScriptReply {
  if (reply === null) return { kind: 'none' };
  if (typeof reply === 'number') {
    if (reply >= 0) return { kind: 'count', value: reply };
    switch (SCRIPT_CODES.get(reply)) {
      case 'break_glass_exists':
        throw grantExists(id);
      case 'break_glass_not_found':
        return { kind: 'none' };
      case 'corrupt':
        throw malformed(`a grant of ${id} cannot be read by the script`);
      case undefined:
        throw malformed(`unknown script code ${reply}`);
    }
  }
  return { kind: 'record', fields: fieldsOf(reply, malformed) };
}

function grantToFields(g: BreakGlassGrant): string[] {
  const fields = [
    'id',
    g.id,
    'grantedBy',
    g.grantedBy,
    'agent',
    g.agent,
    'roles',
    JSON.stringify(g.roles),
    'reason',
    g.reason,
    'createdAt',
    String(g.createdAt),
    'expiresAt',
    String(g.expiresAt),
    'uses',
    '0',
    'reviewed',
    '0',
  ];
  // Absent, not empty: find-active-break-glass reads a missing taskId as "any task of the agent".
  if (g.taskId !== undefined) fields.push('taskId', g.taskId);
  return fields;
}

function grantFromFields(fields: Record<string, string>): BreakGlassGrant {
  const f = new FieldReader(fields, malformed);
  const roles = f.json('roles');
  if (!Array.isArray(roles) || roles.some((r) => typeof r !== 'string')) throw malformed('roles');
  const reviewed = f.oneOf('reviewed', ['0', '1'] as const) === '1';
  const grant: BreakGlassGrant = {
    id: f.text('id'),
    grantedBy: f.text('grantedBy'),
    agent: f.text('agent'),
    roles: roles as string[],
    reason: f.text('reason'),
    createdAt: f.integer('createdAt'),
    expiresAt: f.integer('expiresAt'),
    uses: f.integer('uses'),
    reviewed,
  };
  const taskId = f.optionalText('taskId');
  if (taskId !== undefined) grant.taskId = taskId;
  const reviewedBy = f.optionalText('reviewedBy');
  if (reviewedBy !== undefined) grant.reviewedBy = reviewedBy;
  const reviewedAt = f.optionalInteger('reviewedAt');
  if (reviewedAt !== undefined) grant.reviewedAt = reviewedAt;
  const reviewNote = f.optionalText('reviewNote');
  if (reviewNote !== undefined) grant.reviewNote = reviewNote;
  return grant;
}

class BreakGlassKeys {
  constructor(readonly tag: string) {}
  grant = (id: string): string => `${this.tag}:breakglass:${id}`;
  agent = (spiffeId: string): string => `${this.tag}:breakglass:agent:${spiffeId}`;
  get unreviewed(): string {
    return `${this.tag}:breakglass:unreviewed`;
  }
}

export class RedisBreakGlassStore implements BreakGlassStore {
  private readonly keys: BreakGlassKeys;
  private readonly retentionMs: number;
  private readonly scripts: ScriptRunner<ScriptName>;

  /**
   * Uses `redis` without owning it (the lease store's client, built with createRedisConnection, so
   * calls fail fast during an outage); the caller closes it.
   */
  constructor(
    private readonly redis: RedisClient,
    opts: RedisBreakGlassStoreOptions = {},
  ) {
    this.keys = new BreakGlassKeys(
      hashTag(opts.prefix ?? 'svb', (message) => invalidArgument('prefix', message)),
    );
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.scripts = new ScriptRunner(
      redis,
      'svbBreakGlass',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'break-glass store'),
      storeUnavailable,
    );
  }

  /** The hash tag every key of this store starts with, e.g. `{svb}`. */
  get keyTag(): string {
    return this.keys.tag;
  }

  async grant(grant: BreakGlassGrant): Promise<void> {
    validateNewGrant(grant);
    const k = this.keys;
    const reply = await this.scripts.run(
      'grant-break-glass',
      [k.grant(grant.id), k.agent(grant.agent), k.unreviewed],
      [grant.id, grant.createdAt, grant.expiresAt, ...grantToFields(grant)],
    );
    interpretReply(reply, grant.id);
  }

  async get(id: string): Promise<BreakGlassGrant | undefined> {
    if (!isGrantId(id)) return undefined;
    const fields = await this.scripts.guard(() => this.redis.hgetall(this.keys.grant(id)));
    return Object.keys(fields).length === 0 ? undefined : grantFromFields(fields);
  }

  async findActive(
    agent: string,
    taskId: string,
    role: string,
    now: number,
  ): Promise<BreakGlassGrant | undefined> {
    validateFindActive(agent, taskId, role, now);
    const reply = await this.scripts.run(
      'find-active-break-glass',
      [this.keys.agent(agent)],
      [this.keys.tag, now, taskId, role],
    );
    const result = interpretReply(reply, agent);
    if (result.kind === 'none') return undefined;
    if (result.kind !== 'record') throw malformed('unexpected reply from find-active-break-glass');
    return grantFromFields(result.fields);
  }

  /** Counts one use; a grant that is not (or no longer) stored is left alone. */
  async recordUse(id: string): Promise<void> {
    if (!isGrantId(id)) return;
    const reply = await this.scripts.run('record-break-glass-use', [this.keys.grant(id)], []);
    interpretReply(reply, id);
  }

  async listUnreviewed(): Promise<BreakGlassGrant[]> {
    const reply = await this.scripts.run(
      'list-unreviewed-break-glass',
      [this.keys.unreviewed],
      [this.keys.tag],
    );
    if (!Array.isArray(reply)) throw malformed('expected an array of records');
    return reply.map((r) => grantFromFields(fieldsOf(r, malformed))).sort(byOldest);
  }

  async review(id: string, reviewer: string, note: string, at: number): Promise<BreakGlassGrant | undefined> {
    validateReview(id, reviewer, note, at);
    if (!isGrantId(id)) return undefined;
    const reply = await this.scripts.run(
      'review-break-glass',
      [this.keys.grant(id), this.keys.unreviewed],
      [id, reviewer, note, at, this.retentionMs],
    );
    const result = interpretReply(reply, id);
    if (result.kind === 'none') return undefined;
    if (result.kind !== 'record') throw malformed('unexpected reply from review-break-glass');
    return grantFromFields(result.fields);
  }
}
