/**
 * The `grpc` config block: what an unauthenticated or greedy peer may cost the broker. Connection
 * limits go to grpc-js as server options; the per-peer limits and the `auth.denied` aggregation
 * window are enforced by src/server/call-gate.ts.
 */
import { z } from 'zod';

export const GRPC_SERVER_DEFAULTS = {
  maxConcurrentStreams: 100,
  keepaliveTimeMs: 300_000,
  keepaliveTimeoutMs: 20_000,
  maxConnectionIdleMs: 300_000,
  maxConnectionAgeMs: 1_800_000,
  maxConnectionAgeGraceMs: 900_000,
  maxAwaitApprovalStreamsPerCaller: 8,
  authFailuresPerSecond: 2,
  authFailureBurst: 20,
  callsPerSecond: 0,
  callBurst: 200,
  maxTrackedPeers: 10_000,
  authDeniedWindowSeconds: 60,
} as const;

const d = GRPC_SERVER_DEFAULTS;
const int = (min: number, max: number, def: number): z.ZodDefault<z.ZodNumber> =>
  z.number().int().min(min).max(max).default(def);

export const grpcServerConfigSchema = z
  .object({
    /** HTTP/2 streams (calls) open at once on one connection. */
    maxConcurrentStreams: int(1, 10_000, d.maxConcurrentStreams),
    /** The server pings an idle connection this often, and drops it if no answer in keepaliveTimeoutMs. */
    keepaliveTimeMs: int(1000, 86_400_000, d.keepaliveTimeMs),
    keepaliveTimeoutMs: int(1000, 600_000, d.keepaliveTimeoutMs),
    /** A connection with no call for this long is closed (GOAWAY). */
    maxConnectionIdleMs: int(1000, 86_400_000, d.maxConnectionIdleMs),
    /** A connection is asked to go away after this long (± jitter), then given the grace to finish. */
    maxConnectionAgeMs: int(1000, 86_400_000, d.maxConnectionAgeMs),
    maxConnectionAgeGraceMs: int(0, 86_400_000, d.maxConnectionAgeGraceMs),
    /** AwaitApproval streams one caller (SPIFFE ID) may hold open on one replica. */
    maxAwaitApprovalStreamsPerCaller: int(1, 1000, d.maxAwaitApprovalStreamsPerCaller),
    /** Failed authentications one peer address may make: refill rate and bucket size. */
    authFailuresPerSecond: z.number().positive().max(10_000).default(d.authFailuresPerSecond),
    authFailureBurst: int(1, 100_000, d.authFailureBurst),
    /** Calls one peer address may make, authenticated or not; 0 = no limit. */
    callsPerSecond: z.number().min(0).max(1_000_000).default(d.callsPerSecond),
    callBurst: int(1, 1_000_000, d.callBurst),
    /** Peer addresses tracked at once by each limit and by the auth.denied aggregation. */
    maxTrackedPeers: int(10, 1_000_000, d.maxTrackedPeers),
    /** auth.denied is recorded in full once per peer address and reason per window, then counted. */
    authDeniedWindowSeconds: int(1, 3600, d.authDeniedWindowSeconds),
  })
  .strict();

export type GrpcServerConfig = z.infer<typeof grpcServerConfigSchema>;

/** The grpc-js server options for the connection limits. */
export function grpcServerOptions(c: GrpcServerConfig): Record<string, number> {
  return {
    'grpc.max_concurrent_streams': c.maxConcurrentStreams,
    'grpc.keepalive_time_ms': c.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': c.keepaliveTimeoutMs,
    'grpc.max_connection_idle_ms': c.maxConnectionIdleMs,
    'grpc.max_connection_age_ms': c.maxConnectionAgeMs,
    'grpc.max_connection_age_grace_ms': c.maxConnectionAgeGraceMs,
  };
}
