/**
 * Reading an async source ahead of its consumer, up to a bound: how a bulk revocation keeps the
 * ledger's pages coming while the backends work on earlier ones (broker/lease-admin.ts, and the
 * revoke-ledger bench, which walks the ledger the same way).
 */

/**
 * Reads `source` up to `depth` items ahead of its consumer, so a slow consumer does not hold the
 * producer back (nor lets it run further than `depth`). A consumer that stops early stops the
 * producer at its next item (ending `source`); a producer failure is thrown after the items it
 * produced.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, depth: number): AsyncGenerator<T> {
  const ready: T[] = [];
  let finished = false;
  let stopped = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  let space: (() => void) | undefined;
  const producer = (async () => {
    try {
      for await (const item of source) {
        while (ready.length >= depth && !stopped) await new Promise<void>((r) => (space = r));
        if (stopped) break;
        ready.push(item);
        wake?.();
      }
    } catch (err) {
      failure = err;
    } finally {
      finished = true;
      wake?.();
    }
  })();
  try {
    for (;;) {
      if (ready.length === 0) {
        if (finished) break;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      const item = ready.shift() as T;
      space?.();
      space = undefined;
      yield item;
    }
  } finally {
    stopped = true;
    space?.();
    await producer;
  }
  if (failure !== undefined) throw failure;
}
