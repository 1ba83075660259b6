/**
 * Test helpers with no broker behind them: polling for a condition, and asserting a BrokerError.
 * (broker-harness.ts re-exports `eventually`; unit tests import from here without starting a broker.)
 */
import { strict as assert } from 'node:assert';
import { isBrokerError } from '../../src/errors.js';

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

/** Asserts `promise` rejects with a BrokerError of this gRPC code and reason. */
export async function rejectsWith(promise: Promise<unknown>, code: string, reason: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.reason, reason);
    return true;
  });
}
