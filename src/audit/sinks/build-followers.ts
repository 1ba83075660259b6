/**
 * Builds the followers `audit.sinks` lists (the chain file is the keeper, built beside them).
 * Each sink type is its own module under src/audit/sinks/.
 */
import type { AuditSinkConfig } from '../../config/audit-schema.js';
import type { RedisClient } from '../../redis/connect.js';
import type { FollowerLogger, FollowerMetrics, FollowerSink } from '../follower.js';
import { redisStreamFollower } from './redis-stream-sink.js';

export interface FollowerDeps {
  logger: FollowerLogger;
  /** The broker's Redis connection (undefined with the in-process dev store). */
  redis: RedisClient | undefined;
  metrics?: FollowerMetrics;
}

/** The sink's name in logs and metrics: its `name`, else its type (and index when the type repeats). */
export function sinkName(sink: AuditSinkConfig, index: number, all: readonly AuditSinkConfig[]): string {
  if (sink.name !== undefined) return `${sink.type}:${sink.name}`;
  const sameType = all.filter((s) => s.type === sink.type).length;
  return sameType > 1 ? `${sink.type}:${index}` : sink.type;
}

export function buildFollowers(
  audit: { file: string; sinks: readonly AuditSinkConfig[] },
  deps: FollowerDeps,
): FollowerSink[] {
  return audit.sinks.map((sink, index) =>
    buildFollower(sink, sinkName(sink, index, audit.sinks), audit.file, deps),
  );
}

function buildFollower(
  sink: AuditSinkConfig,
  name: string,
  _auditFile: string,
  deps: FollowerDeps,
): FollowerSink {
  switch (sink.type) {
    // Each case is filled in by the sink's own module (redis_stream, webhook, ssf).
    case 'redis_stream':
      return redisStreamFollower(sink, name, deps);
    default:
      throw new Error(`audit sink ${name}: type ${sink.type} is not available in this build`);
  }
}
