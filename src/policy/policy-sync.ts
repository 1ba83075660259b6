/**
 * One policy set for every replica. Whenever a replica loads a set (at startup, on SIGHUP, on a
 * file change) it stores the set's texts in Redis and announces its digest on the invalidation
 * feed; every replica applies announcements in stream order, so all of them end on the set loaded
 * last, even when two replicas reload at once. A set is validated by each replica as if read from
 * its own directory (all or nothing: an invalid one keeps the set in service and is audited).
 *
 * Keys (same `{prefix}` hash tag as every store):
 *
 * | key | type | holds | TTL |
 * | --- | --- | --- | --- |
 * | `{svb}:policy:set:<digest>` | string | the set's texts (JSON: schema and files) | 7 days |
 * | `{svb}:policy:current` | string | the digest announced last | none |
 */
import type { Logger } from 'pino';
import { invalidArgument, unavailable } from '../errors.js';
import type { FeedEntry, FeedListener } from '../feed/types.js';
import type { RedisClient } from '../redis/connect.js';
import { hashTag } from '../redis/lua-scripts.js';
import type { PolicySources } from './policy-bundle.js';
import type { PolicyProblem } from './policy-load-error.js';
import type { PolicyReloadResult } from './policy-manager.js';

const SET_TTL_SECONDS = 7 * 86_400;

export interface PolicySyncDeps {
  redis: RedisClient;
  prefix: string;
  feedMaxLen: number;
  manager: {
    readonly current: { readonly digest: string; readonly sources: PolicySources };
    adopt(sources: PolicySources, origin: string): PolicyReloadResult;
  };
  /** Names this replica in announcements (for the audit trail). */
  replica: string;
  onSynced: (digest: string, previousDigest: string, from: string) => void;
  onSyncFailed: (digest: string, problems: PolicyProblem[]) => void;
  logger: Logger;
}

export class PolicySync implements FeedListener {
  private readonly tag: string;

  constructor(private readonly deps: PolicySyncDeps) {
    this.tag = hashTag(deps.prefix, (m) => invalidArgument('prefix', m));
  }

  /** Stores the set in service and announces it; the other replicas adopt it. */
  async publish(): Promise<void> {
    const { digest, sources } = this.deps.manager.current;
    try {
      await this.deps.redis
        .multi()
        .set(this.setKey(digest), JSON.stringify(sources), 'EX', SET_TTL_SECONDS)
        .set(this.currentKey, digest)
        .xadd(
          `${this.tag}:feed`,
          'MAXLEN',
          '~',
          this.deps.feedMaxLen,
          '*',
          'kind',
          'policy',
          'digest',
          digest,
          'from',
          this.deps.replica,
        )
        .exec();
    } catch (err) {
      throw unavailable('policy_sync_unavailable', 'cannot publish the policy set', err);
    }
  }

  async onEntry(entry: FeedEntry): Promise<void> {
    if (entry.kind !== 'policy') return;
    const digest = entry.fields.digest ?? '';
    // Our own announcements too: if another set was adopted since, the stream order says ours is newer.
    if (digest && digest !== this.deps.manager.current.digest) {
      await this.apply(digest, entry.fields.from ?? 'unknown');
    }
  }

  async onResync(): Promise<void> {
    const digest = await this.deps.redis.get(this.currentKey);
    if (digest && digest !== this.deps.manager.current.digest) await this.apply(digest, 'resync');
  }

  private async apply(digest: string, from: string): Promise<void> {
    const raw = await this.deps.redis.get(this.setKey(digest));
    if (raw === null) {
      this.deps.logger.warn({ digest, from }, 'announced policy set is no longer in Redis: keeping ours');
      return;
    }
    let sources: PolicySources;
    try {
      sources = parseSources(raw);
    } catch (err) {
      this.deps.onSyncFailed(digest, [{ file: `redis:${digest}`, message: (err as Error).message }]);
      return;
    }
    const previous = this.deps.manager.current.digest;
    const result = this.deps.manager.adopt(sources, `redis:${digest}`);
    if (!result.ok) this.deps.onSyncFailed(digest, result.problems ?? []);
    else if (result.changed) this.deps.onSynced(result.digest, previous, from);
  }

  private setKey(digest: string): string {
    return `${this.tag}:policy:set:${digest}`;
  }

  private get currentKey(): string {
    return `${this.tag}:policy:current`;
  }
}

function parseSources(raw: string): PolicySources {
  const parsed = JSON.parse(raw) as unknown;
  const file = (v: unknown): { name: string; text: string } => {
    const f = v as Record<string, unknown> | null;
    if (!f || typeof f.name !== 'string' || typeof f.text !== 'string')
      throw new Error('malformed policy set');
    return { name: f.name, text: f.text };
  };
  const obj = parsed as Record<string, unknown> | null;
  if (!obj || !Array.isArray(obj.files)) throw new Error('malformed policy set');
  return { schema: file(obj.schema), files: obj.files.map(file) };
}
