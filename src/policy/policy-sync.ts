/**
 * One policy set for every replica, which no stale replica and no write into Redis can roll back
 * or replace.
 *
 * The set in service everywhere is `{svb}:policy:record`: a record `{generation, digest, schema,
 * files, from, at}` sealed with the X.509-SVID of the broker that published it (svid-seal.ts). A
 * publish (an operator's reload: SIGHUP or an edited directory) writes the next generation, one
 * above the highest this replica has verified, with a compare-and-set so two publishers cannot
 * build on the same one, and announces it on the invalidation feed. A replica adopts a record
 * only if it opens (allowed signer, chain in the trust bundle), its generation is higher than the
 * one it holds, and its texts hash to its digest (and to `policy.pinDigest`, when pinned).
 *
 * At startup a replica publishes only into a Redis with no record it can open (none, forged, or
 * sealed by a certificate that has expired); otherwise it adopts the stored set, and a directory
 * that differs is reported (`policy.directory_differs`), never published.
 * Every refresh period a replica that holds a generation writes it back, re-sealed with its own
 * SVID, when the stored record is missing, refused, older, or signed by a certificate about to
 * expire: a record outlives the SVID (and the replica) that sealed it, and a deleted or forged
 * record is repaired by the replicas that still hold the real one.
 *
 * Keys (same `{prefix}` hash tag as every store):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:policy:record` | string | the sealed record of the set in service | none |
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { invalidArgument, unavailable } from '../errors.js';
import type { FeedEntry, FeedListener } from '../feed/types.js';
import { SealRefused, type EntrySeal, type OpenedEntry, type RefusedEntry } from '../identity/svid-seal.js';
import type { RedisClient } from '../redis/connect.js';
import { hashTag, loadLuaScripts, ScriptRunner } from '../redis/lua-scripts.js';
import type { PolicySources } from './policy-bundle.js';
import type { PolicyProblem } from './policy-load-error.js';
import type { PolicyReloadResult } from './policy-manager.js';

const LUA_DIR = new URL('./lua/', import.meta.url);
const SCRIPT_NAMES = ['put-policy'] as const;
const PUBLISH_ATTEMPTS = 5;

/** What a sealed record says. */
interface PolicyRecord {
  generation: number;
  digest: string;
  sources: PolicySources;
}

export interface PolicySyncDeps {
  redis: RedisClient;
  prefix: string;
  feedMaxLen: number;
  manager: {
    readonly current: { readonly digest: string; readonly sources: PolicySources };
    readonly directoryDigest: string;
    adopt(sources: PolicySources, origin: string, digest: string): PolicyReloadResult;
  };
  seal: EntrySeal;
  /** Names this replica in announcements (for the audit trail). */
  replica: string;
  /** How often the stored record is checked and repaired or re-sealed. Default 60 s. */
  refreshMs?: number;
  onSynced: (digest: string, previousDigest: string, from: string, generation: number) => void;
  onSyncFailed: (digest: string, problems: PolicyProblem[]) => void;
  /** A stored record was not adopted: unsigned, forged, not allowed, or older than ours. */
  onRefused: (entry: RefusedEntry) => void;
  /** At startup this replica's directory held another set than the stored one, which it adopted. */
  onDirectoryDiffers: (directoryDigest: string, stored: { digest: string; generation: number }) => void;
  logger: Logger;
  now?: () => number;
}

type Stored =
  | { state: 'missing'; raw: null }
  | { state: 'refused'; raw: string; reason: RefusedEntry['reason'] }
  | { state: 'ok'; raw: string; record: PolicyRecord; opened: OpenedEntry };

export class PolicySync implements FeedListener {
  private readonly key: string;
  private readonly feedKey: string;
  private readonly scripts: ScriptRunner<(typeof SCRIPT_NAMES)[number]>;
  private readonly refreshMs: number;
  private readonly now: () => number;
  /** The generation of the set in service (0: none verified yet). */
  private held = 0;
  /** The last refused raw record, so one forged record is reported once, not on every feed entry. */
  private lastRefused: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: PolicySyncDeps) {
    const tag = hashTag(deps.prefix, (m) => invalidArgument('prefix', m));
    this.key = `${tag}:policy:record`;
    this.feedKey = `${tag}:feed`;
    this.refreshMs = deps.refreshMs ?? 60_000;
    this.now = deps.now ?? Date.now;
    this.scripts = new ScriptRunner(
      deps.redis,
      'svbPolicy',
      loadLuaScripts(LUA_DIR, SCRIPT_NAMES, 'policy sync'),
      (cause) => unavailable('policy_sync_unavailable', 'cannot reach the shared policy set', cause),
    );
  }

  /** The generation of the set in service (0 until one was published or adopted). */
  get generation(): number {
    return this.held;
  }

  /**
   * At startup: into a Redis with no record this replica can open, publishes its set; otherwise
   * adopts the stored set and never publishes, so an older directory cannot roll the others back.
   */
  initialize(): Promise<void> {
    return this.serial(async () => {
      const stored = await this.readStored();
      // A record no replica can open counts as none: forged, or sealed by an SVID that expired
      // while every replica was down. Left in place, nobody would ever replace it (refresh needs a
      // held generation), and each replica would serve its own directory. A live replica holding
      // a higher generation writes that back over this one (refresh), and this replica follows.
      if (stored.state !== 'ok') return this.publishLocked();
      const { digest, generation } = stored.record;
      if (digest !== this.deps.manager.directoryDigest) {
        this.deps.onDirectoryDiffers(this.deps.manager.directoryDigest, { digest, generation });
      }
      this.adopt(stored.record, 'startup');
    });
  }

  /**
   * Publishes the set in service as the next generation, after an operator's reload made `digest`
   * current. If a set from another replica was adopted in between (both operators acted at once),
   * that newer generation stands and nothing is published: the reload is logged as superseded.
   */
  publish(digest: string): Promise<void> {
    return this.serial(async () => {
      if (this.deps.manager.current.digest === digest) return this.publishLocked();
      this.deps.logger.warn(
        { digest, generation: this.held },
        'reloaded policy set superseded by a newer shared one before it was published: reload again to publish it',
      );
    });
  }

  async onEntry(entry: FeedEntry): Promise<void> {
    if (entry.kind !== 'policy') return;
    // The feed is a hint only (anyone who can write Redis can write it): the record decides.
    const generation = Number(entry.fields.generation);
    if (Number.isFinite(generation) && generation <= this.held) return;
    await this.serial(() => this.applyStored(entry.fields.from ?? 'unknown'));
  }

  onResync(): Promise<void> {
    return this.serial(() => this.applyStored('resync'));
  }

  /** Checks the stored record every refreshMs until stop(); failures are logged. */
  start(): void {
    this.stop();
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) =>
        this.deps.logger.warn({ err: { message: (err as Error).message } }, 'policy record refresh failed'),
      );
    }, this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Writes the set this replica holds back, sealed by it, when the stored record is missing,
   * refused, older than ours, or ours but signed by a certificate that expires within two refresh
   * periods. A newer record is left to the feed (adopting it here would report a refusal, a
   * pinned replica's say, every period).
   */
  refresh(): Promise<void> {
    return this.serial(async () => {
      if (this.held === 0) return;
      const stored = await this.readStored();
      if (this.shouldRewrite(stored)) await this.write(stored.raw, this.held);
    });
  }

  private shouldRewrite(stored: Stored): boolean {
    if (stored.state !== 'ok') return true;
    const { generation, digest } = stored.record;
    if (generation !== this.held) return generation < this.held;
    if (digest !== this.deps.manager.current.digest) return false;
    return stored.opened.expiresAt <= this.now() + 2 * this.refreshMs;
  }

  private async publishLocked(): Promise<void> {
    for (let attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
      const stored = await this.readStored();
      const base = stored.state === 'ok' ? Math.max(stored.record.generation, this.held) : this.held;
      if (await this.write(stored.raw, base + 1)) return;
    }
    throw unavailable(
      'policy_sync_conflict',
      `the stored policy set kept changing (${PUBLISH_ATTEMPTS} tries)`,
    );
  }

  /** Seals the set in service as `generation` and stores it if the stored record is still `seen`. */
  private async write(seen: string | null, generation: number): Promise<boolean> {
    const { digest, sources } = this.deps.manager.current;
    const payload = JSON.stringify({
      generation,
      digest,
      schema: sources.schema,
      files: sources.files,
      from: this.deps.replica,
      at: this.now(),
    });
    const sealed = await this.deps.seal.seal(payload);
    const written = await this.scripts.run(
      'put-policy',
      [this.key, this.feedKey],
      [seen === null ? '' : sha1(seen), sealed, this.deps.feedMaxLen, generation, digest, this.deps.replica],
    );
    if (written !== 1) return false;
    this.held = generation;
    return true;
  }

  private async applyStored(from: string): Promise<void> {
    const stored = await this.readStored();
    if (stored.state !== 'ok') return;
    if (stored.record.generation < this.held) {
      this.refuse(stored.raw, {
        reason: 'stale_generation',
        signer: stored.opened.signer,
        message: `generation ${stored.record.generation} is older than the ${this.held} in service`,
      });
      return;
    }
    if (stored.record.generation > this.held) this.adopt(stored.record, from);
  }

  private adopt(record: PolicyRecord, from: string): void {
    const previous = this.deps.manager.current.digest;
    const result = this.deps.manager.adopt(record.sources, `redis:${record.digest}`, record.digest);
    if (!result.ok) {
      this.deps.onSyncFailed(record.digest, result.problems ?? []);
      return;
    }
    this.held = record.generation;
    if (result.changed) this.deps.onSynced(result.digest, previous, from, record.generation);
  }

  /** Reads and opens the stored record; a refused one is reported once. */
  private async readStored(): Promise<Stored> {
    const raw = await this.scripts.guard(() => this.deps.redis.get(this.key));
    if (raw === null) return { state: 'missing', raw };
    try {
      const opened = await this.deps.seal.open(raw);
      return { state: 'ok', raw, record: parseRecord(opened), opened };
    } catch (err) {
      const refusal = err instanceof SealRefused ? err : new SealRefused('malformed', String(err));
      this.refuse(raw, {
        reason: refusal.reason,
        ...(refusal.signer === undefined ? {} : { signer: refusal.signer }),
        message: refusal.message,
      });
      return { state: 'refused', raw, reason: refusal.reason };
    }
  }

  private refuse(raw: string, what: Omit<RefusedEntry, 'kind' | 'key'>): void {
    if (this.lastRefused === raw) return;
    this.lastRefused = raw;
    this.deps.logger.warn({ key: this.key, reason: what.reason }, 'stored policy set refused');
    this.deps.onRefused({ kind: 'policy', key: this.key, ...what });
  }

  /** One step at a time: startup, publishes, feed entries and refreshes never interleave. */
  private serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step, step);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function sha1(text: string): string {
  return createHash('sha1').update(text, 'utf8').digest('hex');
}

function parseRecord(opened: OpenedEntry): PolicyRecord {
  const malformed = (what: string): SealRefused =>
    new SealRefused('malformed', `policy record: ${what}`, opened.signer);
  let obj: Record<string, unknown> | null;
  try {
    obj = JSON.parse(opened.payload) as Record<string, unknown> | null;
  } catch {
    throw malformed('not JSON');
  }
  if (!obj || !Number.isSafeInteger(obj.generation) || (obj.generation as number) < 1) {
    throw malformed('no generation');
  }
  if (typeof obj.digest !== 'string' || !Array.isArray(obj.files)) throw malformed('no digest or files');
  const file = (v: unknown): { name: string; text: string } => {
    const f = v as Record<string, unknown> | null;
    if (!f || typeof f.name !== 'string' || typeof f.text !== 'string') throw malformed('bad file');
    return { name: f.name, text: f.text };
  };
  return {
    generation: obj.generation as number,
    digest: obj.digest,
    sources: { schema: file(obj.schema), files: obj.files.map(file) },
  };
}
