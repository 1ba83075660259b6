/**
 * QuarantineStore on Redis, shared by every replica. Setting and releasing a quarantine is one Lua
 * script each that also appends to the invalidation feed, so the change and its announcement are
 * atomic.
 *
 * Keys (prefix `svb` by default, the lease store's; every key carries the `{svb}` hash tag):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:quarantines` | hash | pattern -> quarantine record (JSON) | none; release removes an entry, expired ones are ignored |
 * | `{svb}:strikes:<kind>:<spiffeId>` | zset | one agent's recent strikes of a trigger kind, by time | the trigger's window |
 * | `{svb}:feed` | stream | the invalidation feed (see src/feed) | trimmed to about `feedMaxLen` entries |
 *
 * The lease store's put-lease script reads `{svb}:quarantines` too (includes/quarantine-match.lua):
 * that is what refuses a lease to an agent quarantined while its request was in flight.
 */
import { randomUUID } from 'node:crypto';
import { pingKeySlot, type RedisClient } from '../redis/connect.js';
import { BrokerError, invalidArgument, unavailable } from '../errors.js';
import { DEFAULT_FEED_MAX_LEN } from '../feed/redis-feed.js';
import { hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import type { Quarantine, QuarantineStore } from './types.js';

const LUA_DIR = new URL('./lua/', import.meta.url);
const SCRIPT_NAMES = ['put-quarantine', 'release-quarantine', 'record-strike'] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];

export interface RedisQuarantineStoreOptions {
  /** Key prefix; wrapped in `{}` to become the hash tag. Default `svb` (share it with the lease store). */
  prefix?: string;
  /** Approximate length the invalidation feed is trimmed to. Default 10000. */
  feedMaxLen?: number;
}

function storeUnavailable(cause: unknown): BrokerError {
  return unavailable('quarantine_store_unavailable', 'quarantine store unavailable', cause);
}

function malformed(what: string): BrokerError {
  return new BrokerError('INTERNAL', 'quarantine store returned a malformed record', {
    reason: 'quarantine_store_corrupt',
    cause: new Error(what),
  });
}

/** Key names shared with the lease store (put-lease) and the feed. */
export const quarantineKeys = (tag: string): { quarantines: string; feed: string } => ({
  quarantines: `${tag}:quarantines`,
  feed: `${tag}:feed`,
});

export function quarantineToJson(q: Quarantine): string {
  return JSON.stringify({
    pattern: q.pattern,
    reason: q.reason,
    by: q.by,
    trigger: q.trigger,
    createdAt: q.createdAt,
    expiresAt: q.expiresAt,
    ...(q.evidence ? { evidence: q.evidence } : {}),
  });
}

function quarantineFromJson(raw: string): Quarantine {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw malformed('quarantine record is not JSON');
  }
  const r = parsed as Record<string, unknown>;
  const str = (k: string): string => {
    if (typeof r[k] !== 'string') throw malformed(`quarantine field ${k}`);
    return r[k];
  };
  const num = (k: string): number => {
    if (typeof r[k] !== 'number' || !Number.isSafeInteger(r[k])) throw malformed(`quarantine field ${k}`);
    return r[k];
  };
  const q: Quarantine = {
    pattern: str('pattern'),
    reason: str('reason'),
    by: str('by'),
    trigger: str('trigger'),
    createdAt: num('createdAt'),
    expiresAt: num('expiresAt'),
  };
  if (r.evidence !== undefined) {
    if (typeof r.evidence !== 'object' || r.evidence === null) throw malformed('quarantine evidence');
    q.evidence = r.evidence as Record<string, unknown>;
  }
  return q;
}

export class RedisQuarantineStore implements QuarantineStore {
  private readonly scripts: ScriptRunner<ScriptName>;
  private readonly tag: string;
  private readonly feedMaxLen: number;

  /** Shares `redis` with the other stores; closing it is their owner's job. */
  constructor(
    private readonly redis: RedisClient,
    opts: RedisQuarantineStoreOptions = {},
  ) {
    this.tag = hashTag(opts.prefix ?? 'svb', (m) => invalidArgument('prefix', m));
    this.feedMaxLen = opts.feedMaxLen ?? DEFAULT_FEED_MAX_LEN;
    this.scripts = new ScriptRunner(
      redis,
      'svbQuarantine',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'quarantine store'),
      storeUnavailable,
    );
  }

  async put(q: Quarantine): Promise<{ replaced: boolean }> {
    const k = quarantineKeys(this.tag);
    const reply = await this.scripts.run(
      'put-quarantine',
      [k.quarantines, k.feed],
      [q.pattern, quarantineToJson(q), this.feedMaxLen, q.createdAt],
    );
    return { replaced: reply === 0 };
  }

  async release(pattern: string, at: number): Promise<Quarantine | undefined> {
    const k = quarantineKeys(this.tag);
    const reply = await this.scripts.run(
      'release-quarantine',
      [k.quarantines, k.feed],
      [pattern, this.feedMaxLen, at],
    );
    if (reply === null) return undefined;
    if (typeof reply !== 'string') throw malformed('release reply');
    return quarantineFromJson(reply);
  }

  async list(now: number): Promise<Quarantine[]> {
    const all = await this.scripts.guard(() => this.redis.hgetall(quarantineKeys(this.tag).quarantines));
    return Object.values(all)
      .map(quarantineFromJson)
      .filter((q) => q.expiresAt === 0 || q.expiresAt > now)
      .sort((a, b) => a.createdAt - b.createdAt || (a.pattern < b.pattern ? -1 : 1));
  }

  async recordStrike(agent: string, kind: string, now: number, windowMs: number): Promise<number> {
    const reply = await this.scripts.run(
      'record-strike',
      [`${this.tag}:strikes:${kind}:${agent}`],
      [now, windowMs, `${now}:${randomUUID()}`],
    );
    if (typeof reply !== 'number') throw malformed('strike count');
    return reply;
  }

  async ping(): Promise<void> {
    await this.scripts.guard(() => pingKeySlot(this.redis, quarantineKeys(this.tag).quarantines));
  }
}
