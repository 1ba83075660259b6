/**
 * Helpers for the invalidation feed tests: a listener that records what it was told, `eventually`
 * (from test/support, no broker started), and a way to find the feed's own blocking reader among a
 * server's connections.
 */
import type { Redis } from 'ioredis';
export { eventually } from '../../support/eventually.js';
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
