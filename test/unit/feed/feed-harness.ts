/**
 * Helpers for the invalidation feed tests: a listener that records what it was told, a polling
 * `eventually` (the same as test/support/broker-harness.ts has, without starting a broker), and a
 * way to find the feed's own blocking reader among a server's connections.
 */
import type { Redis } from 'ioredis';
import type { FeedEntry, FeedListener } from '../../../src/feed/types.js';

/** Records entries and resyncs in the order the feed delivered them. */
export class RecordingListener implements FeedListener {
  readonly events: ({ type: 'entry'; entry: FeedEntry } | { type: 'resync' })[] = [];

  onEntry(entry: FeedEntry): void {
    this.events.push({ type: 'entry', entry });
  }

  async onResync(): Promise<void> {
    this.events.push({ type: 'resync' });
  }

  get entries(): FeedEntry[] {
    return this.events.flatMap((e) => (e.type === 'entry' ? [e.entry] : []));
  }

  get resyncs(): number {
    return this.events.filter((e) => e.type === 'resync').length;
  }

  /** The `n` field of each entry: the tests number what they publish. */
  numbers(): string[] {
    return this.entries.map((e) => e.fields.n ?? '?');
  }
}

/** Polls `check` until it returns a truthy value (or stops throwing), failing after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
}

/** Ids of the connections whose last command was XREAD: a feed's blocking reader. */
export async function readerClientIds(raw: Redis): Promise<string[]> {
  const list = String(await raw.call('CLIENT', 'LIST', 'TYPE', 'normal'));
  return list
    .split('\n')
    .filter((line) => / cmd=xread( |$)/.test(line))
    .map((line) => /(?:^|\s)id=(\d+)/.exec(line)?.[1] ?? '')
    .filter((id) => id !== '');
}

/** Appends a numbered entry directly, as another replica's Lua script would. */
export async function append(raw: Redis, key: string, n: number | string): Promise<string> {
  return (await raw.xadd(key, '*', 'kind', 'test', 'n', String(n))) ?? '';
}
