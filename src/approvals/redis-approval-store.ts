/**
 * ApprovalStore on Redis: create, decide and consume are Lua scripts (lua/*.lua), so each is atomic
 * across every broker replica sharing the store: N-of-M counts distinct approvers even when they
 * click at the same moment, and an approval is spent exactly once.
 *
 * Keys (prefix `svb` by default; all carry the one hash tag `{svb}`, so scripts run on Redis Cluster):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:approval:<id>` | hash | one request; `approvals` (and `denial`) as JSON | expiresAt + retention, from creation |
 * | `{svb}:approval-digest:<digest>` | zset | request ids by createdAt; the newest open one wins | newest member's expiresAt |
 * | `{svb}:approvals:pending` | zset | pending request ids by expiresAt | newest member's expiresAt |
 * | `{svb}:approvals:all` | zset | every request id by expiresAt, for listing other states | newest member's expiresAt + retention |
 *
 * The digest index is a zset rather than a single id so that "the newest open request" stays right
 * when two requests share a digest (two replicas racing, or a newer one denied while an older one is
 * still pending). Requests need no reaper: one past its expiresAt is reported `expired` by every read
 * and refused by decide and consume, which also write the state down. Retention (7 days by default)
 * keeps decisions inspectable after that.
 */
import type { RedisClient } from '../redis/connect.js';
import { BrokerError, invalidArgument, unavailable } from '../errors.js';
import {
  APPROVAL_STATES,
  approvalExists,
  byNewest,
  decisionRecord,
  DEFAULT_RETENTION_SECONDS,
  isCreateResult,
  listFilter,
  requireCaps,
  requireRetentionSeconds,
  requireTime,
  validateDecision,
  validateNewApproval,
  withEffectiveState,
} from './approval-records.js';
import { FieldReader, fieldsOf, hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import type {
  ApprovalDecisionRecord,
  ApprovalRequest,
  ApprovalState,
  ApprovalStore,
  CreateApprovalResult,
  DecideOutcome,
  OpenApprovalCaps,
} from './types.js';

// Shipped next to this module; the build must copy src/approvals/lua/ to dist (as for leases).
const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPT_NAMES = [
  'create-approval',
  'decide-approval',
  'consume-approval',
  'find-open-approval',
  'list-approvals',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface RedisApprovalStoreOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb` (share it with the lease store). */
  prefix?: string;
  /** How long a request stays readable after its expiresAt. Default 7 days. */
  retentionSeconds?: number;
}

function storeUnavailable(cause: unknown): BrokerError {
  return unavailable('approval_store_unavailable', 'approval store unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'approval store returned a malformed record', {
    reason: 'approval_store_corrupt',
    cause: new Error(what),
  });
}

/** Named codes the scripts return; each script's header lists the ones it can return. */
type ScriptCode =
  | DecideOutcome
  | 'approval_exists'
  | 'digest_mismatch'
  | 'corrupt'
  | 'ok'
  | Exclude<CreateApprovalResult, 'ok'>;
const SCRIPT_CODES = new Map<number, ScriptCode>([
  [1, 'approved'],
  [2, 'recorded'],
  [3, 'denied'],
  [-1, 'not_found'],
  [-2, 'not_pending'],
  [-3, 'expired'],
  [-4, 'self_approval'],
  [-5, 'duplicate_approver'],
  [-6, 'approval_exists'],
  [-8, 'digest_mismatch'],
  [-9, 'corrupt'],
  [-10, 'too_many_open_for_agent'],
  [-11, 'too_many_open_for_task'],
]);

/** Codes that are an answer; the others are thrown by interpretReply. */
type AnswerCode = Exclude<ScriptCode, 'approval_exists' | 'corrupt'>;

type ScriptReply =
  { kind: 'code'; code: AnswerCode } | { kind: 'record'; code?: AnswerCode; fields: Record<string, string> };

/**
 * The one function that turns a script reply into a result or an error: codes that mean a refused
 * write or an unreadable record become BrokerErrors, unknown replies become INTERNAL, and the rest
 * go back to the caller. `create-approval` answers 1 for ok, which decide-approval uses for
 * `approved`, hence `okCode`.
 */
function interpretReply(reply: unknown, id: string, okCode?: AnswerCode): ScriptReply {
  const codeOf = (n: unknown): AnswerCode => {
    if (typeof n !== 'number') throw malformed('expected a script code');
    if (n === 1 && okCode !== undefined) return okCode;
    const code = SCRIPT_CODES.get(n);
    switch (code) {
      case undefined:
        throw malformed(`unknown script code ${n}`);
      case 'approval_exists':
        throw approvalExists(id);
      case 'corrupt':
        throw malformed(`request ${id} cannot be read by the script`);
      default:
        return code;
    }
  };
  if (typeof reply === 'number') return { kind: 'code', code: codeOf(reply) };
  // decide-approval answers {code, record}; the other scripts answer a bare record.
  if (Array.isArray(reply) && reply.length === 2 && typeof reply[0] === 'number') {
    return { kind: 'record', code: codeOf(reply[0]), fields: fieldsOf(reply[1], malformed) };
  }
  return { kind: 'record', fields: fieldsOf(reply, malformed) };
}

function requestToFields(r: ApprovalRequest): string[] {
  return [
    'id',
    r.id,
    'digest',
    r.digest,
    'requester',
    r.requester,
    'taskId',
    r.taskId,
    'role',
    r.role,
    'environment',
    r.environment,
    'ttlSeconds',
    String(r.ttlSeconds),
    'sensitivity',
    r.sensitivity,
    'changeType',
    r.changeType,
    'justification',
    r.justification,
    'tool',
    r.tool,
    'required',
    String(r.required),
    'policyIds',
    JSON.stringify(r.policyIds),
    'createdAt',
    String(r.createdAt),
    'expiresAt',
    String(r.expiresAt),
    'state',
    'pending',
    'approvals',
    '[]',
    ...(r.delegationChain ? ['delegationChain', JSON.stringify(r.delegationChain)] : []),
  ];
}

function decisionOf(value: unknown): ApprovalDecisionRecord {
  if (typeof value !== 'object' || value === null) throw malformed('decision is not an object');
  const { approver, reason, at } = value as Record<string, unknown>;
  if (typeof approver !== 'string' || typeof reason !== 'string') throw malformed('decision fields');
  if (typeof at !== 'number' || !Number.isSafeInteger(at)) throw malformed('decision time');
  return { approver, reason, at };
}

function chainOf(value: unknown): string[] {
  if (!Array.isArray(value) || value.some((id) => typeof id !== 'string')) throw malformed('delegationChain');
  return value as string[];
}

function requestFromFields(fields: Record<string, string>): ApprovalRequest {
  const f = new FieldReader(fields, malformed);
  const policyIds = f.json('policyIds');
  if (!Array.isArray(policyIds) || policyIds.some((p) => typeof p !== 'string')) throw malformed('policyIds');
  const approvals = f.json('approvals');
  if (!Array.isArray(approvals)) throw malformed('approvals is not a list');
  const request: ApprovalRequest = {
    id: f.text('id'),
    digest: f.text('digest'),
    requester: f.text('requester'),
    taskId: f.text('taskId'),
    role: f.text('role'),
    environment: f.text('environment'),
    ttlSeconds: f.integer('ttlSeconds'),
    sensitivity: f.text('sensitivity'),
    changeType: f.text('changeType'),
    justification: f.text('justification'),
    tool: f.text('tool'),
    required: f.integer('required'),
    policyIds: policyIds as string[],
    createdAt: f.integer('createdAt'),
    expiresAt: f.integer('expiresAt'),
    state: f.oneOf('state', APPROVAL_STATES),
    approvals: approvals.map(decisionOf),
  };
  // A record that says it needs no approval is never trusted as one that got enough.
  if (request.required < 1) throw malformed('required < 1');
  if (fields.denial !== undefined) request.denial = decisionOf(f.json('denial'));
  if (fields.delegationChain !== undefined) request.delegationChain = chainOf(f.json('delegationChain'));
  const consumedAt = f.optionalInteger('consumedAt');
  if (consumedAt !== undefined) request.consumedAt = consumedAt;
  return request;
}

class ApprovalKeys {
  constructor(readonly tag: string) {}
  request = (id: string): string => `${this.tag}:approval:${id}`;
  digest = (digest: string): string => `${this.tag}:approval-digest:${digest}`;
  get pending(): string {
    return `${this.tag}:approvals:pending`;
  }
  get all(): string {
    return `${this.tag}:approvals:all`;
  }
  openOfAgent = (agent: string): string => `${this.tag}:approvals:open:agent:${agent}`;
  openOfTask = (taskId: string): string => `${this.tag}:approvals:open:task:${taskId}`;
}

export class RedisApprovalStore implements ApprovalStore {
  private readonly keys: ApprovalKeys;
  private readonly retentionMs: number;
  private readonly scripts: ScriptRunner<ScriptName>;

  /**
   * Uses `redis` without owning it (the lease store's client, built with createRedisConnection, so
   * calls fail fast during an outage); the caller closes it.
   */
  constructor(
    private readonly redis: RedisClient,
    opts: RedisApprovalStoreOptions = {},
  ) {
    this.keys = new ApprovalKeys(
      hashTag(opts.prefix ?? 'svb', (message) => invalidArgument('prefix', message)),
    );
    this.retentionMs = requireRetentionSeconds(opts.retentionSeconds ?? DEFAULT_RETENTION_SECONDS) * 1000;
    this.scripts = new ScriptRunner(
      redis,
      'svbApproval',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'approval store'),
      storeUnavailable,
    );
  }

  /** The hash tag every key of this store starts with, e.g. `{svb}`. */
  get keyTag(): string {
    return this.keys.tag;
  }

  async create(request: ApprovalRequest, caps: OpenApprovalCaps = {}): Promise<CreateApprovalResult> {
    validateNewApproval(request);
    requireCaps(caps);
    const k = this.keys;
    const reply = await this.scripts.run(
      'create-approval',
      [
        k.request(request.id),
        k.digest(request.digest),
        k.pending,
        k.all,
        k.openOfAgent(request.requester),
        k.openOfTask(request.taskId),
      ],
      [
        request.id,
        request.createdAt,
        request.expiresAt,
        this.retentionMs,
        k.tag,
        caps.perAgent ?? 0,
        caps.perTask ?? 0,
        ...requestToFields(request),
      ],
    );
    const result = interpretReply(reply, request.id, 'ok');
    if (result.kind === 'code' && isCreateResult(result.code)) return result.code;
    throw malformed('unexpected reply from create-approval');
  }

  async get(id: string, now: number): Promise<ApprovalRequest | undefined> {
    requireTime('now', now);
    const fields = await this.scripts.guard(() => this.redis.hgetall(this.keys.request(id)));
    return Object.keys(fields).length === 0 ? undefined : withEffectiveState(requestFromFields(fields), now);
  }

  async findOpenByDigest(digest: string, now: number): Promise<ApprovalRequest | undefined> {
    requireTime('now', now);
    const reply = await this.scripts.run(
      'find-open-approval',
      [this.keys.digest(digest)],
      [this.keys.tag, now, digest],
    );
    if (reply === null) return undefined;
    const result = interpretReply(reply, digest);
    if (result.kind !== 'record') throw malformed('unexpected reply from find-open-approval');
    return requestFromFields(result.fields);
  }

  async list(
    filter: { state?: ApprovalState | 'any'; requester?: string },
    now: number,
  ): Promise<ApprovalRequest[]> {
    requireTime('now', now);
    const state = filter.state ?? 'pending';
    const k = this.keys;
    // Pending and unexpired requests have an index of their own; every other state is read from
    // the index of all requests (expired ones may still say `pending` in their hash).
    const args: [string, string, string] =
      state === 'pending' ? [k.pending, `(${now}`, 'pending'] : [k.all, '-inf', ''];
    const reply = await this.scripts.run(
      'list-approvals',
      [args[0]],
      [k.tag, now - this.retentionMs, args[1], args[2]],
    );
    if (!Array.isArray(reply)) throw malformed('expected an array of records');
    return reply
      .map((r) => withEffectiveState(requestFromFields(fieldsOf(r, malformed)), now))
      .filter(listFilter(filter))
      .sort(byNewest);
  }

  /** The task's open index (create-approval adds every request; only closed or expired ones are pruned). */
  async mayHaveOpenForTask(taskId: string, now: number): Promise<boolean> {
    requireTime('now', now);
    const open = await this.scripts.guard(() =>
      this.redis.zcount(this.keys.openOfTask(taskId), `(${now}`, '+inf'),
    );
    return open > 0;
  }

  /**
   * One ZCOUNT of the pending index: every transition out of `pending` (decide-approval) removes the
   * entry, and expired ones are past the lower bound, so no record needs reading.
   */
  async countPending(now: number): Promise<number> {
    requireTime('now', now);
    return this.scripts.guard(() => this.redis.zcount(this.keys.pending, `(${now}`, '+inf'));
  }

  async decide(
    id: string,
    decision: { approver: string; approve: boolean; reason: string; at: number },
  ): Promise<{ outcome: DecideOutcome; request?: ApprovalRequest }> {
    validateDecision(id, decision);
    const reply = await this.scripts.run(
      'decide-approval',
      [this.keys.request(id), this.keys.pending],
      [
        decision.approver,
        decision.approve ? '1' : '0',
        JSON.stringify(decisionRecord(decision)),
        decision.at,
      ],
    );
    const result = interpretReply(reply, id);
    if (result.kind === 'code') {
      if (result.code !== 'not_found') throw malformed(`decide-approval answered ${result.code} alone`);
      return { outcome: 'not_found' };
    }
    const outcome = result.code;
    if (outcome === undefined || outcome === 'digest_mismatch' || isCreateResult(outcome)) {
      throw malformed('unexpected reply from decide-approval');
    }
    return { outcome, request: withEffectiveState(requestFromFields(result.fields), decision.at) };
  }

  async consume(id: string, digest: string, at: number): Promise<ApprovalRequest | undefined> {
    requireTime('at', at);
    if (typeof digest !== 'string' || digest === '') throw invalidArgument('digest', 'must be non-empty');
    const reply = await this.scripts.run('consume-approval', [this.keys.request(id)], [digest, at]);
    const result = interpretReply(reply, id);
    // not_found, not_pending, expired and digest_mismatch all mean: no approval to spend.
    return result.kind === 'record' ? requestFromFields(result.fields) : undefined;
  }
}
