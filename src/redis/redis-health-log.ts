/**
 * What an operator reads in the log when Redis goes away: one line when the outage starts, a
 * reminder every `remindMs` while it lasts, one line when it is back. The stores fail closed on
 * their own; this only says so once, instead of every job failing loudly on every tick.
 */
import { isBrokerError } from '../errors.js';

export interface RedisHealthLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** The events ioredis (one server, Sentinel or Cluster) emits about its connection. */
export interface RedisConnectionEvents {
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'ready' | 'close', listener: () => void): unknown;
}

export interface RedisHealthLogOptions {
  logger: RedisHealthLogger;
  /** Where Redis is, without secrets (describeRedisTarget). */
  target: string;
  /** Default 60 s. */
  remindMs?: number;
  now?: () => number;
}

/** Starts logging the connection's outages and recoveries. */
export function watchRedisHealth(client: RedisConnectionEvents, opts: RedisHealthLogOptions): void {
  const now = opts.now ?? Date.now;
  const remindMs = opts.remindMs ?? 60_000;
  let downSince: number | undefined;
  let lastLogged: number | undefined;
  let failures = 0;
  client.on('close', () => {
    downSince ??= now();
  });
  client.on('error', (err: Error) => {
    const at = now();
    downSince ??= at;
    failures++;
    if (lastLogged === undefined) {
      lastLogged = at;
      opts.logger.warn({ redis: opts.target }, `redis unavailable: ${err.message}, failing closed`);
    } else if (at - lastLogged >= remindMs) {
      lastLogged = at;
      const seconds = Math.round((at - downSince) / 1000);
      opts.logger.warn(
        { redis: opts.target, failures },
        `redis still unavailable after ${seconds} s (${err.message}), failing closed`,
      );
    }
  });
  client.on('ready', () => {
    if (downSince !== undefined && lastLogged !== undefined) {
      const seconds = Math.round((now() - downSince) / 1000);
      opts.logger.info({ redis: opts.target, failures }, `redis available again after ${seconds} s`);
    }
    downSince = undefined;
    lastLogged = undefined;
    failures = 0;
  });
}

/** A store refusing because Redis is down: reported once by watchRedisHealth, not per caller. */
export function isStoreOutage(err: unknown): boolean {
  return isBrokerError(err) && err.code === 'UNAVAILABLE';
}
