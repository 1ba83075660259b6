/**
 * Throttling from a cloud API (AWS `Throttling`, HTTP 429) is retried with jittered exponential
 * backoff, but only while the request's deadline allows; then the call fails UNAVAILABLE and no
 * credential leaves the broker.
 */
import { unavailable } from '../../errors.js';

export interface RetryOptions {
  /** epoch ms after which no new attempt starts. */
  deadline: number;
  /** First backoff; doubles per attempt (full jitter). */
  baseDelayMs: number;
  /** Names the cloud in the UNAVAILABLE message, e.g. `AWS STS`. */
  service: string;
  /** Stable reason of the final error, e.g. `aws_throttled`. */
  reason: string;
  now?: () => number;
  random?: () => number;
}

/**
 * Runs `attempt` until it succeeds, throws something not retryable, or the deadline passes. Each
 * attempt gets a signal that aborts at the deadline, so no attempt runs past it.
 */
export async function retryThrottled<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  isThrottled: (err: unknown) => boolean,
  opts: RetryOptions,
): Promise<T> {
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const throttled = (err: unknown) =>
    unavailable(opts.reason, `${opts.service} is throttling requests: try again later`, err);
  for (let n = 0; ; n++) {
    const signal = AbortSignal.timeout(Math.max(1, opts.deadline - now()));
    try {
      return await attempt(signal);
    } catch (err) {
      // A retry the deadline cut short failed because of the throttling before it.
      if (n > 0 && signal.aborted) throw throttled(err);
      if (!isThrottled(err)) throw err;
      const delay = Math.floor(random() * opts.baseDelayMs * 2 ** n);
      if (now() + delay >= opts.deadline) throw throttled(err);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
