/**
 * BudgetStore on Redis, shared by every broker replica: a reservation is one Lua script over the
 * counters of all its scopes (lua/reserve-budget-n.lua), so limits hold across replicas and a
 * refused reservation consumes nothing in any scope.
 *
 * Keys (prefix `svb` by default; all carry the one hash tag `{svb}`, so one script can touch the
 * counters of many scopes on Redis Cluster). Scopes such as `agent:spiffe://...` go into key names
 * as they are.
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:budget:<scope>:rate` | zset | lease ids by reservation time, the last 60 s (rolling window log) | 2 min after the newest reservation |
 * | `{svb}:budget:<scope>:leases` | zset | lease ids by expiresAt; the unexpired ones are active | 1 min after the latest expiresAt |
 * | `{svb}:budget:<scope>:tasks` | zset | task ids by expiresAt; the unexpired ones are open | 1 min after the latest expiresAt |
 *
 * The rate counter is a log, not a sliding-window estimate: exact at every instant, and bounded by
 * the limit because a reservation is refused (and not recorded) once the window holds `max`. A
 * scope records only the counters it has limits for. Counters are pruned on every reservation, so
 * an expired lease frees its place without anyone calling releaseLease.
 */
import type { RedisClient } from '../redis/connect.js';
import { hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import { BrokerError, invalidArgument, unavailable } from '../errors.js';
import {
  IDLE_SLACK_MS,
  overLimit,
  planReservation,
  RATE_WINDOW_MS,
  validateRelease,
  type Counter,
  type CounterName,
} from './budget-records.js';
import type { BudgetCheck, BudgetStore, ScopedLimits } from './types.js';

// Shipped next to this module; the build must copy src/budgets/lua/ to dist (as for leases).
const LUA_DIR = new URL('./lua/', import.meta.url);

const SCRIPT_NAMES = ['reserve-budget', 'release-budget'] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface RedisBudgetStoreOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb` (share it with the lease store). */
  prefix?: string;
}

function storeUnavailable(cause: unknown): BrokerError {
  return unavailable('budget_store_unavailable', 'budget store unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'budget store returned a malformed reply', {
    reason: 'budget_store_corrupt',
    cause: new Error(what),
  });
}

/** Named codes of reserve-budget-n.lua. */
const OK = 1;
const OVER_LIMIT = -1;

/** The one function that turns a reserve-budget reply into a result: ok, the first violation, or INTERNAL. */
function interpretReserveReply(reply: unknown, counters: Counter[]): BudgetCheck {
  if (reply === OK) return { ok: true };
  if (Array.isArray(reply) && reply[0] === OVER_LIMIT) {
    const [, index, current] = reply as unknown[];
    const counter = typeof index === 'number' ? counters[index - 1] : undefined;
    if (counter !== undefined && typeof current === 'number') return overLimit(counter, current);
  }
  throw malformed('unexpected reply from reserve-budget');
}

export class RedisBudgetStore implements BudgetStore {
  private readonly tag: string;
  private readonly scripts: ScriptRunner<ScriptName>;

  /**
   * Uses `redis` without owning it (the lease store's client, built with createRedisConnection, so
   * calls fail fast during an outage); the caller closes it.
   */
  constructor(redis: RedisClient, opts: RedisBudgetStoreOptions = {}) {
    this.tag = hashTag(opts.prefix ?? 'svb', (message) => invalidArgument('prefix', message));
    this.scripts = new ScriptRunner(
      redis,
      'svbBudget',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'budget store'),
      storeUnavailable,
    );
  }

  /** The hash tag every key of this store starts with, e.g. `{svb}`. */
  get keyTag(): string {
    return this.tag;
  }

  async reserveCredential(
    scopes: ScopedLimits[],
    leaseId: string,
    leaseExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck> {
    return this.reserve(
      planReservation(scopes, 'credential', leaseId, leaseExpiresAt, now),
      leaseId,
      leaseExpiresAt,
      now,
    );
  }

  async releaseLease(scopes: string[], leaseId: string): Promise<void> {
    validateRelease(scopes, 'leaseId', leaseId);
    await this.release(scopes, 'leases', leaseId);
  }

  async reserveTask(
    scopes: ScopedLimits[],
    taskId: string,
    taskExpiresAt: number,
    now: number,
  ): Promise<BudgetCheck> {
    return this.reserve(
      planReservation(scopes, 'task', taskId, taskExpiresAt, now),
      taskId,
      taskExpiresAt,
      now,
    );
  }

  async releaseTask(scopes: string[], taskId: string): Promise<void> {
    validateRelease(scopes, 'taskId', taskId);
    await this.release(scopes, 'tasks', taskId);
  }

  private key(scope: string, name: CounterName): string {
    return `${this.tag}:budget:${scope}:${name}`;
  }

  private async reserve(
    counters: Counter[],
    member: string,
    expiresAt: number,
    now: number,
  ): Promise<BudgetCheck> {
    // Nothing limited, nothing to record (and no reason to fail when Redis is down).
    if (counters.length === 0) return { ok: true };
    const reply = await this.scripts.run(
      'reserve-budget',
      counters.map((c) => this.key(c.scope, c.name)),
      [now, member, expiresAt, RATE_WINDOW_MS, IDLE_SLACK_MS, ...counters.flatMap((c) => [c.kind, c.max])],
    );
    return interpretReserveReply(reply, counters);
  }

  private async release(scopes: string[], name: CounterName, member: string): Promise<void> {
    if (scopes.length === 0) return;
    await this.scripts.run(
      'release-budget',
      scopes.map((s) => this.key(s, name)),
      [member],
    );
  }
}
