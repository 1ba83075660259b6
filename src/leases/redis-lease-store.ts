/**
 * LeaseStore on Redis: every state transition is one Lua script (lua/*.lua), so it is atomic and
 * happens once even with several broker replicas sharing the store.
 *
 * Keys (prefix `svb` by default; every key carries the one hash tag `{svb}`, so each multi-key
 * script touches a single slot and the store runs on Redis Cluster):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:task:<id>` | hash | one task, its lease tally (`leaseCount`, `leaseRole:<role>`) and version (`leaseVersion`) | none while active; expiresAt + retention once ended/expired |
 * | `{svb}:lease:<id>` | hash | one lease | none while pending, active or revoking; expiresAt + retention once revoked/expired/revoke_failed |
 * | `{svb}:task-children:<id>` | zset | ids of the tasks delegated directly from task <id>, by createdAt | the parent's expiresAt + retention |
 * | `{svb}:active-tasks` | zset | active task ids by expiresAt | none; a task leaves when it ends |
 * | `{svb}:agent-tasks:<spiffeId>` | zset | one agent's active task ids by expiresAt | none; Redis drops it when empty |
 * | `{svb}:active-leases` | zset | active lease ids by expiresAt | none; a lease leaves when it ends |
 * | `{svb}:active-leases:pending` | zset | pending lease ids (written, not yet activated) by write time | none; a lease leaves when activated, ended or claimed as an orphan |
 * | `{svb}:revoked` | zset | deny list: lease ids revoked or being revoked, by expiresAt | none; members pruned once their expiresAt passes |
 * | `{svb}:revoked:tokens` | zset | token deny list: jtis of `token` leases on the deny list, by expiresAt (GET /v1/revoked) | none; members pruned once their expiresAt + the verifiers' clock skew passes |
 * | `{svb}:idx:agent:<spiffeId>` | zset | one agent's lease ids (all states) by expiresAt | newest member's expiresAt + retention |
 * | `{svb}:idx:task:<taskId>` | zset | one task's lease ids (all states) by expiresAt | newest member's expiresAt + retention |
 * | `{svb}:idx:env:<env>` | zset | one environment's lease ids (all states) by expiresAt | newest member's expiresAt + retention |
 * | `{svb}:idx:all` | zset | every lease id by expiresAt | newest member's expiresAt + retention |
 *
 * Retention defaults to 7 days, so history can be listed during an incident. Active records carry
 * no TTL: an active lease must never vanish before it was revoked or claimed by the reaper. Index
 * members whose record Redis has dropped are pruned when the index is listed, and members older
 * than expiresAt + retention are trimmed on every putLease, so an index that is never listed stays
 * bounded.
 *
 * Times written to the hashes are the broker's (callers pass `now`/`at`); the TTLs are absolute
 * (PEXPIREAT) and so assume broker and Redis clocks roughly agree, which only shifts when history
 * disappears.
 */
import { randomUUID } from 'node:crypto';
import { patternMatches } from '../identity/pattern-match.js';
import { loadLuaScripts, type LuaScript } from '../redis/lua-scripts.js';
import { pingKeySlot, type RedisClient } from '../redis/connect.js';
import { BrokerError, invalidArgument, isBrokerError, unavailable } from '../errors.js';
import {
  DEFAULT_RETENTION_SECONDS,
  EXPIRED_REASON,
  LEASE_END_STATES,
  LEASE_STATES,
  leaseExists,
  leaseMatches,
  REVOKE_OUTCOMES,
  requireLimit,
  requirePageSize,
  requireRetentionSeconds,
  requireTime,
  requireVersion,
  TASK_END_STATES,
  taskExists,
  validateEnd,
  validateNewLease,
  validateNewTask,
  delegationFromJson,
} from './lease-records.js';
import type {
  ActivateLeaseResult,
  CreateChildResult,
  Lease,
  LeaseEndState,
  LeaseFilter,
  LeasePage,
  LeaseSelector,
  RevocationOutcome,
  RevocationPage,
  RevokedToken,
  LeaseStore,
  PutLeaseOptions,
  PutLeaseResult,
  RevokeOutcome,
  Task,
  TaskLeaseSummary,
  TaskState,
} from './types.js';

// The Lua scripts ship as files next to this module. `npm run build` compiles to dist/src/leases/
// and does not copy non-TS files by itself: the build must copy src/leases/lua/ to
// dist/src/leases/lua/ (the constructor fails at startup, naming the path, if it did not).
const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPT_NAMES = [
  'create-task',
  'create-child-task',
  'end-task',
  'put-lease',
  'activate-lease',
  'claim-orphaned-leases',
  'mark-lease-ended',
  'mark-revoke-outcome',
  'claim-expired-leases',
  'claim-expired-tasks',
  'list-leases',
  'list-revoked-unexpired',
  'list-revoked-tokens',
  'backfill-revoked-tokens',
  'select-leases',
  'complete-revocations',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

/** Reads lua/<name>-<numKeys>.lua (includes spliced in); fails at startup, naming the path, if one is missing. */
export function loadLeaseScripts(dir: URL = LUA_DIR): Map<ScriptName, LuaScript> {
  return loadLuaScripts(dir, SCRIPT_NAMES, 'lease store');
}

// The client builders moved to src/redis/connect.ts (all three topologies); re-exported for callers
// that build a single-server client.
export { createRedisClient, failFastRedisOptions, type CreateRedisClientOptions } from '../redis/connect.js';

export interface RedisLeaseStoreOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb`. */
  prefix?: string;
  /** How long ended records stay listable after their expiresAt. Default 7 days. */
  retentionSeconds?: number;
  /**
   * Run after each lease write the script accepted, before putLease resolves: makes it durable as
   * `redis.durability` asks (WAITAOF / WAIT, src/redis/durability.ts); rejects when it is not.
   */
  confirmWrite?: () => Promise<void>;
}

/** The one place a storage failure becomes an error, so callers fail closed on any of them. */
function storeUnavailable(cause: unknown): BrokerError {
  return unavailable('lease_store_unavailable', 'lease store unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'lease store returned a malformed record', {
    reason: 'lease_store_corrupt',
    cause: new Error(what),
  });
}

/** Named codes the scripts return; each script's header lists the ones it can return. */
const SCRIPT_CODES = new Map<number, ScriptCode>([
  [1, 'ok'],
  [-1, 'task_not_found'],
  [-2, 'task_not_active'],
  [-3, 'task_expired'],
  [-4, 'lease_exceeds_task'],
  [-5, 'lease_exists'],
  [-6, 'task_exists'],
  [-7, 'lease_not_found'],
  [-8, 'lease_not_active'],
  [-9, 'lease_not_revoking'],
  [-10, 'agent_quarantined'],
  [-11, 'task_changed'],
  [-12, 'lease_not_pending'],
  [-13, 'parent_not_found'],
  [-14, 'parent_not_active'],
  [-15, 'parent_expired'],
  [-16, 'child_outlives_parent'],
]);
type ScriptCode =
  | PutLeaseResult
  | ActivateLeaseResult
  | CreateChildResult
  | 'lease_exists'
  | 'task_exists'
  | 'lease_not_found'
  | 'lease_not_active'
  | 'lease_not_revoking';

const PUT_LEASE_RESULTS: readonly PutLeaseResult[] = [
  'ok',
  'task_not_found',
  'task_not_active',
  'task_expired',
  'lease_exceeds_task',
  'agent_quarantined',
  'task_changed',
];
const ACTIVATE_RESULTS: readonly ActivateLeaseResult[] = [
  'ok',
  'lease_not_found',
  'lease_not_pending',
  'task_not_found',
  'task_not_active',
  'task_expired',
];
const CREATE_CHILD_RESULTS: readonly CreateChildResult[] = [
  'ok',
  'parent_not_found',
  'parent_not_active',
  'parent_expired',
  'child_outlives_parent',
];
const isCreateChildResult = (code: ScriptCode): code is CreateChildResult =>
  (CREATE_CHILD_RESULTS as readonly string[]).includes(code);
const isActivateResult = (code: ScriptCode): code is ActivateLeaseResult =>
  (ACTIVATE_RESULTS as readonly string[]).includes(code);
const isPutLeaseResult = (code: ScriptCode): code is PutLeaseResult =>
  (PUT_LEASE_RESULTS as readonly string[]).includes(code);

/** Codes that are a normal answer; every other code is an error. */
type AnswerCode = Exclude<ScriptCode, 'lease_exists' | 'task_exists'>;

type ScriptReply = { kind: 'code'; code: AnswerCode } | { kind: 'record'; fields: Record<string, string> };

/**
 * The one function that turns a script reply into a result or an error (after BullMQ's
 * finishedErrors): named codes that mean a refused write become BrokerErrors, unknown replies
 * become INTERNAL, and the rest are handed back for the caller to map.
 */
function interpretReply(reply: unknown, id: string): ScriptReply {
  if (typeof reply === 'number') {
    const code = SCRIPT_CODES.get(reply);
    switch (code) {
      case undefined:
        throw malformed(`unknown script code ${reply}`);
      case 'task_exists':
        throw taskExists(id);
      case 'lease_exists':
        throw leaseExists(id);
      default:
        return { kind: 'code', code };
    }
  }
  return { kind: 'record', fields: fieldsOf(reply) };
}

/** HGETALL as a Lua script returns it: a flat [field, value, ...] array. */
function fieldsOf(reply: unknown): Record<string, string> {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) throw malformed('expected a flat field/value array');
  const fields: Record<string, string> = {};
  for (let i = 0; i < reply.length; i += 2) {
    const [field, value] = [reply[i] as unknown, reply[i + 1] as unknown];
    if (typeof field !== 'string' || typeof value !== 'string') throw malformed('non-string field');
    fields[field] = value;
  }
  return fields;
}

/** select-leases' reply in list mode: next offset, entries looked at, then each lease as its hash. */
function selectPage(reply: unknown): { next: number; scanned: number; leases: Lease[] } {
  const [next, scanned, ...rest] = listOf(reply);
  if (typeof next !== 'number' || typeof scanned !== 'number') throw malformed('select-leases header');
  return { next, scanned, leases: rest.map((r) => leaseFromFields(fieldsOf(r))) };
}

/**
 * select-leases' reply in revoke mode: the header, then the moved leases as one JSON array (if
 * any). The header is read now, the moved leases parsed once, when first read.
 */
function revokedPage(
  reply: unknown,
  reason: string,
  at: number,
): { next: number; scanned: number; leases: () => Lease[] } {
  const [next, scanned, moved, ...extra] = listOf(reply);
  if (typeof next !== 'number' || typeof scanned !== 'number' || extra.length > 0) {
    throw malformed('select-leases header');
  }
  if (moved !== undefined && typeof moved !== 'string') throw malformed('select-leases revoked leases');
  let leases: Lease[] | undefined;
  return { next, scanned, leases: () => (leases ??= movedLeases(moved, reason, at)) };
}

function movedLeases(moved: string | undefined, reason: string, at: number): Lease[] {
  if (moved === undefined) return [];
  let rows: unknown;
  try {
    rows = JSON.parse(moved);
  } catch {
    throw malformed('select-leases revoked leases are not JSON');
  }
  return listOf(rows).map((r) => movedLease(r, reason, at));
}

/** A lease select-leases moved to `revoking`, from its compact form. */
function movedLease(r: unknown, reason: string, at: number): Lease {
  if (!Array.isArray(r) || r.length !== 9 || !r.every((v) => typeof v === 'string')) {
    throw malformed('select-leases revoked lease');
  }
  const [id, agent, taskId, environment, role, backend, backendRef, issuedAt, expiresAt] = r as string[];
  const fields = { issuedAt, expiresAt } as Record<string, string>;
  return {
    id: id as string,
    agent: agent as string,
    taskId: taskId as string,
    environment: environment as string,
    role: role as string,
    backend: backend as string,
    backendRef: backendRef as string,
    issuedAt: time(fields, 'issuedAt'),
    expiresAt: time(fields, 'expiresAt'),
    state: 'revoking',
    revokeReason: reason,
    revokedAt: at,
  };
}

/** `spiffe://td/a/*` -> base `spiffe://td/a/`, depth one; `/**` -> depth many. */
export function agentPatternParts(pattern: string): { base: string; depth: 'one' | 'many' } {
  if (pattern.endsWith('/**')) return { base: pattern.slice(0, -2), depth: 'many' };
  if (pattern.endsWith('/*')) return { base: pattern.slice(0, -1), depth: 'one' };
  throw invalidArgument('agent', 'a pattern must end in /* or /**');
}

function listOf(reply: unknown): unknown[] {
  if (!Array.isArray(reply)) throw malformed('expected an array of records');
  return reply;
}

const TASK_STATES: readonly TaskState[] = ['active', 'ended', 'expired'];

function text(fields: Record<string, string>, name: string): string {
  const value = fields[name];
  if (value === undefined) throw malformed(`missing field ${name}`);
  return value;
}

function time(fields: Record<string, string>, name: string): number {
  const value = Number(text(fields, name));
  if (!Number.isSafeInteger(value)) throw malformed(`field ${name} is not a time`);
  return value;
}

function oneOf<S extends string>(allowed: readonly S[], value: string): S {
  const found = allowed.find((s) => s === value);
  if (found === undefined) throw malformed(`unknown state ${value}`);
  return found;
}

function leaseToFields(lease: Lease): string[] {
  return [
    'id',
    lease.id,
    'agent',
    lease.agent,
    'taskId',
    lease.taskId,
    'environment',
    lease.environment,
    'role',
    lease.role,
    'backend',
    lease.backend,
    'backendRef',
    lease.backendRef,
    'issuedAt',
    String(lease.issuedAt),
    'expiresAt',
    String(lease.expiresAt),
    'state',
    lease.state,
  ];
}

function leaseFromFields(fields: Record<string, string>): Lease {
  const lease: Lease = {
    id: text(fields, 'id'),
    agent: text(fields, 'agent'),
    taskId: text(fields, 'taskId'),
    environment: text(fields, 'environment'),
    role: text(fields, 'role'),
    backend: text(fields, 'backend'),
    backendRef: text(fields, 'backendRef'),
    issuedAt: time(fields, 'issuedAt'),
    expiresAt: time(fields, 'expiresAt'),
    state: oneOf(LEASE_STATES, text(fields, 'state')),
  };
  if (fields.revokeReason !== undefined) lease.revokeReason = fields.revokeReason;
  if (fields.revokedAt !== undefined) lease.revokedAt = time(fields, 'revokedAt');
  return lease;
}

function taskToFields(task: Task): string[] {
  return [
    'id',
    task.id,
    'agent',
    task.agent,
    'environment',
    task.environment,
    'intent',
    task.intent,
    'labels',
    JSON.stringify(task.labels),
    'createdAt',
    String(task.createdAt),
    'expiresAt',
    String(task.expiresAt),
    'state',
    'active',
    ...(task.delegation ? ['delegation', JSON.stringify(task.delegation)] : []),
    // The lease tally put-lease keeps (taskLeaseSummary); its presence marks a task as tallied.
    LEASE_COUNT_FIELD,
    '0',
  ];
}

const LEASE_COUNT_FIELD = 'leaseCount';
const LEASE_ROLE_FIELD = 'leaseRole:';
const LEASE_VERSION_FIELD = 'leaseVersion';

function countField(fields: Record<string, string>, name: string): number {
  const count = Number(fields[name] ?? '0');
  if (!Number.isSafeInteger(count) || count < 0) throw malformed(`field ${name} is not a count`);
  return count;
}

/** The tally put-lease keeps in the task hash; undefined for a task written before it existed. */
function leaseSummaryFromFields(fields: Record<string, string>): TaskLeaseSummary | undefined {
  if (fields[LEASE_COUNT_FIELD] === undefined) return undefined;
  const roles = Object.keys(fields)
    .filter((f) => f.startsWith(LEASE_ROLE_FIELD))
    .map((f) => f.slice(LEASE_ROLE_FIELD.length))
    .sort();
  return {
    count: countField(fields, LEASE_COUNT_FIELD),
    roles,
    version: countField(fields, LEASE_VERSION_FIELD),
  };
}

function labelsOf(raw: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw malformed('labels are not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw malformed('labels');
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== 'string') throw malformed('label value is not a string');
    labels[k] = v;
  }
  return labels;
}

function delegationOf(raw: string): Task['delegation'] {
  try {
    return delegationFromJson(raw);
  } catch {
    throw malformed('delegation is not valid JSON');
  }
}

function taskFromFields(fields: Record<string, string>): Task {
  const task: Task = {
    id: text(fields, 'id'),
    agent: text(fields, 'agent'),
    environment: text(fields, 'environment'),
    intent: text(fields, 'intent'),
    labels: labelsOf(text(fields, 'labels')),
    createdAt: time(fields, 'createdAt'),
    expiresAt: time(fields, 'expiresAt'),
    state: oneOf(TASK_STATES, text(fields, 'state')),
  };
  if (fields.endedAt !== undefined) task.endedAt = time(fields, 'endedAt');
  if (fields.endReason !== undefined) task.endReason = fields.endReason;
  if (fields.delegation !== undefined) task.delegation = delegationOf(fields.delegation);
  return task;
}

/** Key names; `tag` is the `{prefix}` hash tag every key starts with. */
class LeaseKeys {
  constructor(readonly tag: string) {}
  task = (id: string): string => `${this.tag}:task:${id}`;
  lease = (id: string): string => `${this.tag}:lease:${id}`;
  agentTasks = (agent: string): string => `${this.tag}:agent-tasks:${agent}`;
  agentIndex = (agent: string): string => `${this.tag}:idx:agent:${agent}`;
  taskIndex = (taskId: string): string => `${this.tag}:idx:task:${taskId}`;
  children = (taskId: string): string => `${this.tag}:task-children:${taskId}`;
  envIndex = (env: string): string => `${this.tag}:idx:env:${env}`;
  get allLeases(): string {
    return `${this.tag}:idx:all`;
  }
  get activeLeases(): string {
    return `${this.tag}:active-leases`;
  }
  get activeTasks(): string {
    return `${this.tag}:active-tasks`;
  }
  get revoked(): string {
    return `${this.tag}:revoked`;
  }
  /** Written by end-lease and select-leases as `<revoked>:tokens` (they derive it from `revoked`). */
  get revokedTokens(): string {
    return `${this.tag}:revoked:tokens`;
  }
  get activeByBackend(): string {
    return `${this.tag}:active-leases:by-backend`;
  }
  /** Pending leases by write time; the scripts derive it from activeLeases (`<activeLeases>:pending`). */
  get pendingLeases(): string {
    return `${this.tag}:active-leases:pending`;
  }
  /** The revocation queue's zset (src/leases/redis-revocation-queue.ts); bulk revokes enqueue into it. */
  get revokeQueue(): string {
    return `${this.tag}:revoke:queue`;
  }
  /** The quarantine store's hash (src/quarantine/redis-quarantine-store.ts); put-lease checks it. */
  get quarantines(): string {
    return `${this.tag}:quarantines`;
  }
  run = (id: string): string => `${this.tag}:revoke-run:${id}`;
}

/** The narrowest index a selector names (every lease is in idx:all). */
function indexFor(k: LeaseKeys, sel: LeaseSelector, activeOnly: boolean): string {
  if (sel.taskId) return k.taskIndex(sel.taskId);
  if (sel.agent) return k.agentIndex(sel.agent);
  if (sel.environment) return k.envIndex(sel.environment);
  return activeOnly ? k.activeLeases : k.allLeases;
}

/** ARGV[5..14] of select-leases. */
function selectorArgs(sel: LeaseSelector, state: string): string[] {
  const pattern = sel.agentPattern ? agentPatternParts(sel.agentPattern) : { base: '', depth: '' };
  return [
    state,
    sel.leaseId ?? '',
    sel.agent ?? '',
    pattern.base,
    pattern.depth,
    sel.taskId ?? '',
    sel.environment ?? '',
    sel.role ?? '',
    sel.backend ?? '',
    sel.trustDomain ? `spiffe://${sel.trustDomain}/` : '',
  ];
}

type ScriptArg = string | number;
type ScriptCommand = (...args: ScriptArg[]) => Promise<unknown>;

/** ioredis method name for a script; namespaced so it cannot clash with other users of the client. */
const commandName = (name: ScriptName): string =>
  'svbLease' + name.replace(/(^|-)([a-z])/g, (_m, _dash, c: string) => c.toUpperCase());

function byExpiry(a: { expiresAt: number; id: string }, b: { expiresAt: number; id: string }): number {
  return a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export class RedisLeaseStore implements LeaseStore {
  readonly durable = true;
  private readonly keys: LeaseKeys;
  private readonly retentionMs: number;
  private readonly confirmWrite: (() => Promise<void>) | undefined;

  /** Takes ownership of `redis`: close() quits it. Build it with createRedisConnection. */
  constructor(
    private readonly redis: RedisClient,
    opts: RedisLeaseStoreOptions = {},
  ) {
    const prefix = opts.prefix ?? 'svb';
    // A brace in the prefix would move the hash tag and scatter keys over slots.
    if (prefix === '' || /[{}]/.test(prefix))
      throw invalidArgument('prefix', 'must be non-empty, without braces');
    this.keys = new LeaseKeys(`{${prefix}}`);
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.confirmWrite = opts.confirmWrite;
    for (const [name, script] of loadLeaseScripts()) {
      redis.defineCommand(commandName(name), script);
    }
  }

  /** The hash tag every key of this store starts with, e.g. `{svb}`. */
  get keyTag(): string {
    return this.keys.tag;
  }

  async createTask(task: Task): Promise<void> {
    validateNewTask(task);
    const k = this.keys;
    const reply = await this.run(
      'create-task',
      [k.task(task.id), k.activeTasks, k.agentTasks(task.agent)],
      [task.id, task.expiresAt, ...taskToFields(task)],
    );
    interpretReply(reply, task.id);
  }

  async createChildTask(task: Task, now: number): Promise<CreateChildResult> {
    validateNewTask(task);
    requireTime('now', now);
    const parentId = task.delegation?.parentTaskId;
    if (parentId === undefined) throw invalidArgument('task.delegation', 'a child task needs its parent');
    const k = this.keys;
    const reply = await this.run(
      'create-child-task',
      [k.task(task.id), k.activeTasks, k.agentTasks(task.agent), k.task(parentId), k.children(parentId)],
      [task.id, task.expiresAt, now, this.retentionMs, task.createdAt, ...taskToFields(task)],
    );
    const result = interpretReply(reply, task.id);
    if (result.kind === 'code' && isCreateChildResult(result.code)) return result.code;
    throw malformed('unexpected reply from create-child-task');
  }

  async listChildTasks(parentId: string): Promise<string[]> {
    return this.guard(() => this.redis.zrange(this.keys.children(parentId), 0, -1));
  }

  async listActiveTasks(agent: string): Promise<Task[]> {
    const k = this.keys;
    const wild = agent.endsWith('/*') || agent.endsWith('/**');
    const index = wild ? k.activeTasks : k.agentTasks(agent);
    const ids = await this.guard(() => this.redis.zrange(index, 0, -1));
    const found = await Promise.all(ids.map((id) => this.getTask(id)));
    return found.filter(
      (t): t is Task => t !== undefined && t.state === 'active' && patternMatches(agent, t.agent),
    );
  }

  async getTask(id: string): Promise<Task | undefined> {
    const fields = await this.guard(() => this.redis.hgetall(this.keys.task(id)));
    return Object.keys(fields).length === 0 ? undefined : taskFromFields(fields);
  }

  async endTask(
    id: string,
    state: 'ended' | 'expired',
    reason: string,
    at: number,
  ): Promise<Task | undefined> {
    validateEnd(TASK_END_STATES, state, at);
    const k = this.keys;
    const reply = await this.run(
      'end-task',
      [k.task(id), k.activeTasks],
      [k.tag, id, state, reason, at, this.retentionMs],
    );
    const result = interpretReply(reply, id);
    return result.kind === 'record' ? taskFromFields(result.fields) : undefined;
  }

  async countActiveTasks(agent: string, now: number): Promise<number> {
    requireTime('now', now);
    return this.guard(() => this.redis.zcount(this.keys.agentTasks(agent), `(${now}`, '+inf'));
  }

  async putLease(lease: Lease, now: number, opts: PutLeaseOptions = {}): Promise<PutLeaseResult> {
    validateNewLease(lease);
    requireTime('now', now);
    requireVersion(opts.expectVersion);
    const k = this.keys;
    const reply = await this.run(
      'put-lease',
      [
        k.task(lease.taskId),
        k.lease(lease.id),
        k.activeLeases,
        k.agentIndex(lease.agent),
        k.taskIndex(lease.taskId),
        k.envIndex(lease.environment),
        k.allLeases,
        k.quarantines,
      ],
      [
        now,
        this.retentionMs,
        lease.id,
        lease.expiresAt,
        lease.agent,
        lease.backend,
        opts.expectVersion ?? '',
        ...leaseToFields(lease),
      ],
    );
    const result = interpretReply(reply, lease.id);
    if (result.kind !== 'code' || !isPutLeaseResult(result.code))
      throw malformed('unexpected reply from put-lease');
    const confirm = this.confirmWrite;
    if (result.code === 'ok' && confirm) await this.guard(confirm);
    return result.code;
  }

  async activateLease(id: string, taskId: string, now: number): Promise<ActivateLeaseResult> {
    requireTime('now', now);
    const k = this.keys;
    const reply = await this.run('activate-lease', [k.lease(id), k.task(taskId), k.activeLeases], [id, now]);
    const result = interpretReply(reply, id);
    if (result.kind === 'code' && isActivateResult(result.code)) return result.code;
    throw malformed('unexpected reply from activate-lease');
  }

  async claimOrphanedLeases(
    writtenBefore: number,
    limit: number,
    opts: { reason: string; at: number; runAt: number },
  ): Promise<Lease[]> {
    requireTime('writtenBefore', writtenBefore);
    requireLimit(limit);
    requireTime('at', opts.at);
    requireTime('runAt', opts.runAt);
    if (limit === 0) return [];
    const k = this.keys;
    const reply = await this.run(
      'claim-orphaned-leases',
      [k.activeLeases, k.revoked, k.revokeQueue],
      [k.tag, writtenBefore, limit, opts.reason, opts.at, opts.runAt],
    );
    return listOf(reply).map((r) => leaseFromFields(fieldsOf(r)));
  }

  async pendingLeaseCount(): Promise<number> {
    return this.guard(() => this.redis.zcard(this.keys.pendingLeases));
  }

  async getTaskWithSummary(id: string): Promise<{ task: Task; summary: TaskLeaseSummary } | undefined> {
    const fields = await this.guard(() => this.redis.hgetall(this.keys.task(id)));
    if (Object.keys(fields).length === 0) return undefined;
    return { task: taskFromFields(fields), summary: await this.summaryOf(id, fields) };
  }

  async taskLeaseSummary(taskId: string): Promise<TaskLeaseSummary | undefined> {
    const fields = await this.guard(() => this.redis.hgetall(this.keys.task(taskId)));
    return Object.keys(fields).length === 0 ? undefined : this.summaryOf(taskId, fields);
  }

  /** The summary of a task from its hash (the tally put-lease keeps, or its leases when untallied). */
  private async summaryOf(taskId: string, fields: Record<string, string>): Promise<TaskLeaseSummary> {
    const tallied = leaseSummaryFromFields(fields);
    if (tallied !== undefined) return tallied;
    // Written before the tally existed: summarize its leases. The version was read first, so a
    // lease written meanwhile makes the decision's put-lease refuse (task_changed), never pass.
    const leases = await this.listLeases({ taskId });
    return {
      count: leases.length,
      roles: [...new Set(leases.map((l) => l.role))].sort(),
      version: countField(fields, LEASE_VERSION_FIELD),
    };
  }

  async getLease(id: string): Promise<Lease | undefined> {
    const fields = await this.guard(() => this.redis.hgetall(this.keys.lease(id)));
    return Object.keys(fields).length === 0 ? undefined : leaseFromFields(fields);
  }

  async listLeases(filter: LeaseFilter): Promise<Lease[]> {
    const k = this.keys;
    // Start from the narrowest index the filter names; the script checks the other criteria.
    const index = filter.taskId
      ? k.taskIndex(filter.taskId)
      : filter.agent
        ? k.agentIndex(filter.agent)
        : filter.environment
          ? k.envIndex(filter.environment)
          : filter.state === 'active'
            ? k.activeLeases
            : k.allLeases;
    const reply = await this.run(
      'list-leases',
      [index],
      [k.tag, filter.agent ?? '', filter.taskId ?? '', filter.environment ?? '', filter.state ?? ''],
    );
    return listOf(reply)
      .map((r) => leaseFromFields(fieldsOf(r)))
      .sort(byExpiry);
  }

  async markLeaseEnded(
    id: string,
    state: LeaseEndState,
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    validateEnd(LEASE_END_STATES, state, at);
    const k = this.keys;
    const reply = await this.run(
      'mark-lease-ended',
      [k.lease(id), k.activeLeases, k.revoked],
      [id, state, reason, at, this.retentionMs],
    );
    const result = interpretReply(reply, id);
    return result.kind === 'record' ? leaseFromFields(result.fields) : undefined;
  }

  async markRevokeOutcome(
    id: string,
    outcome: RevokeOutcome,
    reason: string,
    at: number,
  ): Promise<Lease | undefined> {
    validateEnd(REVOKE_OUTCOMES, outcome, at);
    const reply = await this.run(
      'mark-revoke-outcome',
      [this.keys.lease(id)],
      [outcome, reason, at, this.retentionMs],
    );
    const result = interpretReply(reply, id);
    return result.kind === 'record' ? leaseFromFields(result.fields) : undefined;
  }

  async claimExpiredLeases(now: number, limit: number): Promise<Lease[]> {
    requireTime('now', now);
    requireLimit(limit);
    if (limit === 0) return [];
    const k = this.keys;
    const reply = await this.run(
      'claim-expired-leases',
      [k.activeLeases, k.revoked],
      [k.tag, now, limit, this.retentionMs, EXPIRED_REASON],
    );
    return listOf(reply).map((r) => leaseFromFields(fieldsOf(r)));
  }

  async claimExpiredTasks(now: number, limit: number): Promise<Task[]> {
    requireTime('now', now);
    requireLimit(limit);
    if (limit === 0) return [];
    const k = this.keys;
    const reply = await this.run(
      'claim-expired-tasks',
      [k.activeTasks],
      [k.tag, now, limit, this.retentionMs, EXPIRED_REASON],
    );
    return listOf(reply).map((r) => taskFromFields(fieldsOf(r)));
  }

  async listRevokedUnexpired(now: number, backend?: string): Promise<Lease[]> {
    requireTime('now', now);
    const k = this.keys;
    const reply = await this.run('list-revoked-unexpired', [k.revoked], [k.tag, now, backend ?? '']);
    return listOf(reply).map((r) => leaseFromFields(fieldsOf(r)));
  }

  async listRevokedTokens(
    since: number,
    page: { after?: RevokedToken; limit: number },
  ): Promise<RevokedToken[]> {
    requireTime('since', since);
    requirePageSize(page.limit);
    const after = page.after;
    const reply = listOf(
      await this.run(
        'list-revoked-tokens',
        [this.keys.revokedTokens],
        [since, after?.jti ?? '', after?.expiresAt ?? '', page.limit],
      ),
    );
    const tokens: RevokedToken[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const [jti, score] = [reply[i] as unknown, reply[i + 1] as unknown];
      const expiresAt = Number(score);
      if (typeof jti !== 'string' || !Number.isSafeInteger(expiresAt)) throw malformed('revoked token entry');
      tokens.push({ jti, expiresAt });
    }
    return tokens;
  }

  /**
   * Copies the deny list's unexpired `token` leases onto the token deny list, a page at a time (one
   * short script each, so Redis is never held long); returns how many it copied. For a store written
   * before the token deny list existed: run at startup, it is idempotent.
   */
  async backfillRevokedTokens(now: number, pageSize = 500): Promise<number> {
    requireTime('now', now);
    requirePageSize(pageSize);
    const k = this.keys;
    let copied = 0;
    for (let offset = 0; ; offset += pageSize) {
      const reply = listOf(
        await this.run(
          'backfill-revoked-tokens',
          [k.revoked, k.revokedTokens],
          [k.tag, now, offset, pageSize],
        ),
      );
      const [looked, added] = reply;
      if (typeof looked !== 'number' || typeof added !== 'number') throw malformed('backfill-revoked-tokens');
      copied += added;
      if (looked < pageSize) return copied;
    }
  }

  async scanLeases(
    selector: LeaseSelector,
    cursor: string | undefined,
    pageSize: number,
  ): Promise<LeasePage> {
    requirePageSize(pageSize);
    const offset = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isSafeInteger(offset) || offset < 0) throw invalidArgument('page_token', 'is not valid');
    if (selector.leaseId) {
      const lease = offset === 0 ? await this.getLease(selector.leaseId) : undefined;
      return { leases: lease && leaseMatches(selector, lease) ? [lease] : [], scanned: lease ? 1 : 0 };
    }
    const k = this.keys;
    const source = indexFor(k, selector, selector.state === 'active');
    const reply = await this.run(
      'select-leases',
      [source, k.activeLeases, k.revoked, k.revokeQueue],
      [k.tag, 'list', offset, pageSize, ...selectorArgs(selector, selector.state ?? '')],
    );
    const page = selectPage(reply);
    return {
      leases: page.leases,
      scanned: page.scanned,
      ...(page.next >= 0 ? { cursor: String(page.next) } : {}),
    };
  }

  async *revokeSelected(
    selector: LeaseSelector,
    opts: { reason: string; at: number; runAt: number; pageSize: number },
  ): AsyncGenerator<RevocationPage> {
    requirePageSize(opts.pageSize);
    requireTime('at', opts.at);
    const k = this.keys;
    const source = indexFor(k, selector, true);
    // A snapshot nobody else changes, so rank paging cannot skip a lease while others leave the
    // active set. Same hash tag, so it lives in the store's slot; the TTL cleans up after a crash.
    const run = k.run(randomUUID());
    const total = await this.guard(async () => {
      // Only leases active when the run starts: an index of history (an agent's, a task's) is
      // intersected with the active set, so a second revocation does not walk the first one's leases.
      const n = selector.leaseId
        ? await this.redis.zadd(run, 0, selector.leaseId)
        : source === k.activeLeases
          ? await this.redis.zrangestore(run, source, 0, -1)
          : await this.redis.zinterstore(run, 2, source, k.activeLeases, 'WEIGHTS', 1, 0);
      await this.redis.pexpire(run, 3_600_000);
      return n;
    });
    const page = (offset: number): Promise<unknown> =>
      this.run(
        'select-leases',
        [run, k.activeLeases, k.revoked, k.revokeQueue],
        [
          k.tag,
          'revoke',
          offset,
          opts.pageSize,
          ...selectorArgs(selector, 'active'),
          opts.reason,
          opts.at,
          opts.runAt,
        ],
      );
    // One page at a time, only when asked: a page the caller never reads is never moved, so
    // every lease this run moves is in a page it handed out (and counted in the caller's report).
    // The moved leases are parsed when the consumer reads them, not here: a consumer reading
    // ahead (LeaseAdmin) has the next page under way in Redis while it parses this one.
    try {
      for (let offset = 0; offset >= 0;) {
        const parsed = revokedPage(await page(offset), opts.reason, opts.at);
        offset = parsed.next;
        yield {
          get leases() {
            return parsed.leases();
          },
          scanned: parsed.scanned,
          total,
        };
      }
    } finally {
      await this.redis.del(run).catch(() => 0);
    }
  }

  async completeRevocations(outcomes: readonly RevocationOutcome[], at: number): Promise<Lease[]> {
    requireTime('at', at);
    if (outcomes.length === 0) return [];
    for (const o of outcomes) validateEnd(REVOKE_OUTCOMES, o.outcome, at);
    const k = this.keys;
    const reply = await this.run(
      'complete-revocations',
      [k.revokeQueue],
      [k.tag, at, this.retentionMs, ...outcomes.flatMap((o) => [o.id, o.outcome, o.reason])],
    );
    return listOf(reply).map((r) => leaseFromFields(fieldsOf(r)));
  }

  async activeLeaseCounts(): Promise<Record<string, number>> {
    const raw = await this.guard(() => this.redis.hgetall(this.keys.activeByBackend));
    const counts: Record<string, number> = {};
    for (const [backend, n] of Object.entries(raw)) {
      const count = Number(n);
      if (Number.isSafeInteger(count) && count > 0) counts[backend] = count;
    }
    return counts;
  }

  /** Checks the server holding this store's keys (on a Cluster, the node serving its slot). */
  async ping(): Promise<void> {
    await this.guard(() => pingKeySlot(this.redis, this.keys.activeTasks));
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      // Not connected (Redis down): there is nothing to flush, so just drop the socket and timers.
      this.redis.disconnect();
    }
  }

  private run(name: ScriptName, keys: string[], args: ScriptArg[]): Promise<unknown> {
    const command = (this.redis as unknown as Record<string, ScriptCommand | undefined>)[commandName(name)];
    if (command === undefined)
      return Promise.reject(storeUnavailable(new Error(`script ${name} not defined`)));
    return this.guard(() => command.call(this.redis, ...keys, ...args));
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw isBrokerError(err) ? err : storeUnavailable(err);
    }
  }
}
