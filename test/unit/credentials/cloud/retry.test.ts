/** retryThrottled: throttling is retried within the deadline, then UNAVAILABLE with the cloud's reason. */
import assert from 'node:assert/strict';
import { retryThrottled } from '../../../../src/credentials/cloud/retry.js';
import { rejectsWith } from '../../../support/eventually.js';

class Throttled extends Error {}

const opts = (deadlineInMs: number) => ({
  deadline: Date.now() + deadlineInMs,
  baseDelayMs: 1,
  service: 'Test cloud',
  reason: 'test_throttled',
});

describe('credentials/cloud: retryThrottled', () => {
  it('retries throttling until an attempt succeeds', async () => {
    let n = 0;
    const out = await retryThrottled(
      () => (++n < 3 ? Promise.reject(new Throttled()) : Promise.resolve('ok')),
      (err) => err instanceof Throttled,
      opts(1000),
    );
    assert.equal(out, 'ok');
    assert.equal(n, 3);
  });

  it('an error that is not throttling is thrown as it is', async () => {
    const boom = new Error('boom');
    await assert.rejects(
      retryThrottled(
        () => Promise.reject(boom),
        (err) => err instanceof Throttled,
        opts(1000),
      ),
      (err) => err === boom,
    );
  });

  it('a retry still in flight at the deadline ends as throttled, not as its abort', async () => {
    // Every answer is throttling after 40 ms; the deadline falls inside a retry.
    const attempt = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => {
        const timer = setTimeout(() => reject(new Throttled()), 40);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(signal.reason as Error);
        });
      });
    await rejectsWith(
      retryThrottled(attempt, (err) => err instanceof Throttled, opts(100)),
      'UNAVAILABLE',
      'test_throttled',
    );
  });
});
