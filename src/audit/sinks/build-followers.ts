/**
 * Builds the followers `audit.sinks` lists (the chain file is the keeper, built beside them).
 * Each sink type is its own module under src/audit/sinks/.
 */
import type { AuditSinkConfig } from '../../config/audit-schema.js';
import type { RedisClient } from '../../redis/connect.js';
import type { FollowerLogger, FollowerMetrics, FollowerSink } from '../follower.js';
import { createSsfTransmitter, type SetSigner, type SsfTransmitter } from './ssf-transmitter.js';
import { createWebhookSink } from './webhook-sink.js';
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
  return audit.sinks.flatMap((sink, index) =>
    // SSF transmitters sign with the broker's keys, built later: buildSsfTransmitters.
    sink.type === 'ssf' ? [] : [buildFollower(sink, sinkName(sink, index, audit.sinks), audit.file, deps)],
  );
}

/** The `ssf` sinks of `audit.sinks`, once the signing keys and the ops listener exist. */
export function buildSsfTransmitters(
  audit: { sinks: readonly AuditSinkConfig[] },
  deps: Pick<FollowerDeps, 'logger' | 'metrics'> & { signer: SetSigner; defaultIssuer: string },
): SsfTransmitter[] {
  return audit.sinks.flatMap((sink, index) =>
    sink.type === 'ssf' ? [createSsfTransmitter(sink, sinkName(sink, index, audit.sinks), deps)] : [],
  );
}

function buildFollower(
  sink: AuditSinkConfig,
  name: string,
  auditFile: string,

  deps: FollowerDeps,
): FollowerSink {
  switch (sink.type) {
    // Each case is filled in by the sink's own module (redis_stream, webhook, ssf).
    case 'webhook':
      return createWebhookSink(sink, name, auditFile, deps);
    case 'redis_stream':
      return redisStreamFollower(sink, name, deps);
    default:
      throw new Error(`audit sink ${name}: type ${sink.type} is not available in this build`);
  }
}
