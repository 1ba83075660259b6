/**
 * This replica's view of the quarantines: a copy of the store's list, reloaded whenever the
 * invalidation feed announces a change (or asks for a resync), so checking a caller costs no
 * round trip. The copy is only trusted while the feed is fresh: a replica that has lost the feed
 * beyond its bound refuses to decide (UNAVAILABLE) rather than miss a quarantine.
 *
 * This check is the fast path. The authoritative one is in the lease store: put-lease refuses a
 * lease to a quarantined agent, so a request in flight when the quarantine landed never returns
 * its credential, whatever this copy says.
 */
import type { FeedEntry, FeedFreshness, FeedListener } from '../feed/types.js';
import { type BrokerError, permissionDenied, unavailable } from '../errors.js';
import { findQuarantine, type Quarantine, type QuarantineStore } from './types.js';

export class QuarantineView implements FeedListener {
  private current: Quarantine[] = [];

  constructor(
    private readonly store: QuarantineStore,
    private readonly freshness: FeedFreshness,
    private readonly now: () => number = Date.now,
  ) {}

  async onEntry(entry: FeedEntry): Promise<void> {
    if (entry.kind === 'quarantine') await this.reload();
  }

  async onResync(): Promise<void> {
    await this.reload();
  }

  /** The quarantines this replica enforces now. */
  list(): readonly Quarantine[] {
    const now = this.now();
    return this.current.filter((q) => q.expiresAt === 0 || q.expiresAt > now);
  }

  /**
   * Throws PERMISSION_DENIED "quarantined" when `agent` is quarantined, UNAVAILABLE when this
   * replica's feed is stale (it cannot know).
   */
  check(agent: string): void {
    if (!this.freshness.fresh()) {
      throw unavailable(
        'invalidation_feed_stale',
        `this replica has not heard from the invalidation feed for ${Math.round(this.freshness.lagMs())} ms`,
      );
    }
    const now = this.now();
    const q = findQuarantine(this.current, agent, now);
    if (q) throw quarantinedError(q);
  }

  private async reload(): Promise<void> {
    this.current = await this.store.list(this.now());
  }
}

/** The one error a quarantined caller sees; names the pattern when known, never the reason text. */
export function quarantinedError(q?: Pick<Quarantine, 'pattern'>): BrokerError {
  return permissionDenied(
    q ? `quarantined: agent matches quarantine "${q.pattern}"` : 'quarantined',
    [],
    'quarantined',
  );
}
