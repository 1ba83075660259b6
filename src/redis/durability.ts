/**
 * How durable a lease write is before the credential leaves (`redis.durability`):
 *
 * - `fsync`: on the master's disk. Redis 7.2+ is asked per write (WAITAOF 1 0: the write is in the
 *   fsynced append-only file). Older servers cannot be asked, so the broker only starts when the
 *   server fsyncs every write before answering (`appendonly yes` + `appendfsync always`), checked
 *   with CONFIG GET, or asserted by the operator where CONFIG is disabled.
 * - `replica`: on N replicas (WAIT N): survives losing the master, not a power cut of all of them.
 * - `none`: whatever the server's settings give (with `appendfsync everysec`, up to a second of
 *   acknowledged writes can be lost).
 *
 * WAIT and WAITAOF cover the writes made on the connection they are sent on, so they go to the
 * connection that ran the lease script: the client itself, or on a Cluster the master of the
 * store's slot.
 */
import { Cluster } from 'ioredis';
import { unavailable } from '../errors.js';
import type { RedisClient } from './connect.js';

export const DURABILITY_MODES = ['fsync', 'replica', 'none'] as const;
export type DurabilityMode = (typeof DURABILITY_MODES)[number];

export interface DurabilityConfig {
  readonly durability: DurabilityMode;
  /** `replica`: how many replicas must have the write. */
  readonly replicas: number;
  /** How long one WAIT / WAITAOF may block before the write counts as not durable. */
  readonly durabilityTimeoutMs: number;
  /** `fsync` on Redis < 7.2 where CONFIG is disabled: the operator vouches for `appendfsync always`. */
  readonly assumeAppendfsyncAlways: boolean;
}

/** Called after each lease write; rejects (UNAVAILABLE) when the write is not yet durable. */
export type ConfirmWrite = () => Promise<void>;

/** What startup learnt: the per-write confirmation (if any) and what to tell the operator. */
export interface DurabilityPlan {
  confirm?: ConfirmWrite;
  /** One line for the startup log. */
  summary: string;
  /** Set when the operator accepted a possible loss (`none`), logged as a warning. */
  warning?: string;
}

export class DurabilityRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DurabilityRefused';
  }
}

const WAITAOF_SINCE: readonly [number, number] = [7, 2];

/**
 * Checks the server against `cfg` and returns how to confirm each write; throws
 * DurabilityRefused (the broker must not start) when the server cannot give what was chosen.
 * `key` is any key of the store, to find its node on a Cluster.
 */
export async function planDurability(
  client: RedisClient,
  key: string,
  cfg: DurabilityConfig,
): Promise<DurabilityPlan> {
  const node = storeNode(client, key);
  switch (cfg.durability) {
    case 'none':
      return {
        summary: 'redis.durability none',
        warning:
          'redis.durability is none: a lease write is acknowledged before Redis makes it durable, so a Redis ' +
          'or host crash can lose leases of credentials already handed out (set fsync or replica)',
      };
    case 'replica':
      return {
        confirm: () => confirmReplicas(node, cfg.replicas, cfg.durabilityTimeoutMs),
        summary: `redis.durability replica: each lease write waits for ${cfg.replicas} replica(s) (WAIT)`,
      };
    case 'fsync':
      return planFsync(node, cfg);
  }
}

async function planFsync(node: StoreNode, cfg: DurabilityConfig): Promise<DurabilityPlan> {
  const version = await serverVersion(node);
  if (atLeast(version, WAITAOF_SINCE)) {
    try {
      await waitAof(node, cfg.durabilityTimeoutMs);
    } catch (err) {
      throw new DurabilityRefused(
        `redis.durability fsync: Redis ${version} refused WAITAOF (${(err as Error).message}); ` +
          'turn on appendonly yes, or choose redis.durability replica or none',
      );
    }
    return {
      confirm: () => waitAof(node, cfg.durabilityTimeoutMs),
      summary: `redis.durability fsync: each lease write waits for the fsynced append-only file (WAITAOF, Redis ${version})`,
    };
  }
  const settings = await appendSettings(node);
  if (settings === undefined) {
    if (cfg.assumeAppendfsyncAlways) {
      return {
        summary: `redis.durability fsync: Redis ${version}, CONFIG is disabled; the operator asserts appendfsync always (redis.assumeAppendfsyncAlways)`,
      };
    }
    throw new DurabilityRefused(
      `redis.durability fsync: Redis ${version} has no WAITAOF (7.2+) and CONFIG GET is refused, so the broker ` +
        'cannot tell whether every write is fsynced. Run the server with appendonly yes and appendfsync always and ' +
        'set redis.assumeAppendfsyncAlways: true, upgrade to Redis 7.2+, or choose redis.durability replica or none',
    );
  }
  if (settings.appendonly !== 'yes' || settings.appendfsync !== 'always') {
    throw new DurabilityRefused(
      `redis.durability fsync: Redis ${version} runs appendonly ${settings.appendonly} with appendfsync ` +
        `${settings.appendfsync}, so it acknowledges writes before they are on disk and a crash can lose leases ` +
        'of credentials already handed out. Set appendonly yes and appendfsync always, upgrade to Redis 7.2+ ' +
        '(WAITAOF), or choose redis.durability replica or none',
    );
  }
  return {
    summary: `redis.durability fsync: Redis ${version} runs appendonly yes with appendfsync always (fsync before every reply)`,
  };
}

async function waitAof(node: StoreNode, timeoutMs: number): Promise<void> {
  const reply = await node('WAITAOF', '1', '0', String(timeoutMs));
  const local = Array.isArray(reply) ? Number(reply[0]) : 0;
  if (local < 1) {
    throw unavailable(
      'lease_store_unavailable',
      'lease store unavailable',
      new Error(`WAITAOF: the lease write was not fsynced within ${timeoutMs} ms`),
    );
  }
}

async function confirmReplicas(node: StoreNode, replicas: number, timeoutMs: number): Promise<void> {
  const acked = Number(await node('WAIT', String(replicas), String(timeoutMs)));
  // Written so that a reply that is not a count (NaN) refuses too.
  if (!(acked >= replicas)) {
    throw unavailable(
      'lease_store_unavailable',
      'lease store unavailable',
      new Error(`WAIT: ${acked} of ${replicas} replica(s) confirmed the lease write within ${timeoutMs} ms`),
    );
  }
}

/** CONFIG GET appendonly / appendfsync, or undefined where CONFIG is disabled or not allowed. */
async function appendSettings(
  node: StoreNode,
): Promise<{ appendonly: string; appendfsync: string } | undefined> {
  let reply: unknown;
  try {
    reply = await node('CONFIG', 'GET', 'append*');
  } catch {
    return undefined;
  }
  const values = new Map<string, string>();
  const flat = Array.isArray(reply) ? reply.map(String) : [];
  for (let i = 0; i + 1 < flat.length; i += 2) values.set(flat[i] as string, flat[i + 1] as string);
  return {
    appendonly: values.get('appendonly') ?? 'unknown',
    appendfsync: values.get('appendfsync') ?? 'unknown',
  };
}

async function serverVersion(node: StoreNode): Promise<string> {
  const info = String(await node('INFO', 'server'));
  return /redis_version:([0-9.]+)/.exec(info)?.[1] ?? '0.0.0';
}

function atLeast(version: string, [major, minor]: readonly [number, number]): boolean {
  const [ma = 0, mi = 0] = version.split('.').map(Number);
  return ma > major || (ma === major && mi >= minor);
}

/** Sends one command on the connection that writes the store's keys. */
type StoreNode = (...args: string[]) => Promise<unknown>;

/**
 * The client itself; on a Cluster, a pipeline led by a read of `key` goes to the master serving its
 * slot, on the same connection the lease scripts use there, and the keyless command follows it.
 */
function storeNode(client: RedisClient, key: string): StoreNode {
  if (!(client instanceof Cluster)) return (command, ...args) => client.call(command, ...args);
  return async (command, ...args) => {
    const replies = await client
      .pipeline()
      .exists(key)
      .call(command, ...args)
      .exec();
    const [err, value] = replies?.[1] ?? [new Error(`${command}: no reply`), undefined];
    if (err) throw err;
    return value;
  };
}
