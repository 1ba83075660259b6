/**
 * The invalidation feed within one process (dev stack without Redis): entries are delivered
 * synchronously to the listeners, and it is always up to date because there is no other replica.
 */
import type { FeedEntry, FeedListener, InvalidationFeed } from './types.js';

export class MemoryInvalidationFeed implements InvalidationFeed {
  private readonly listeners: FeedListener[] = [];
  private seq = 0;
  private started = false;
  private closed = false;
  constructor(private readonly now: () => number = Date.now) {}

  publish(kind: string, fields: Record<string, string>): Promise<string> {
    return Promise.resolve(this.append({ kind, ...fields }));
  }

  /** Appends `{kind, ...fields}`; used by the in-memory stores in place of their Lua XADD. */
  append(fields: Record<string, string> & { kind: string }): string {
    const id = `${this.now()}-${this.seq++}`;
    const { kind, ...rest } = fields;
    const entry: FeedEntry = { id, kind, fields: rest };
    if (this.started && !this.closed) {
      for (const l of this.listeners) void Promise.resolve(l.onEntry(entry)).catch(() => undefined);
    }
    return id;
  }

  listen(listener: FeedListener): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    for (const l of this.listeners) await l.onResync();
    this.started = true;
  }

  /** 0 before start (the listeners have loaded nothing yet) and after close, as on Redis. */
  lastConfirmedAt(): number {
    return this.closed || !this.started ? 0 : this.now();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
