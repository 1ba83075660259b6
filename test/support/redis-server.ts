/**
 * A real redis-server for tests: own port, own temp dir, append-only file so a restart keeps data.
 * The whole run shares one (sharedRedis) and tests keep apart by using fresh key prefixes
 * (randomPrefix); tests that kill Redis start their own with startRedisServer.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findRedisServer, onPath, spawnRedisServer, type RedisProcess } from '../../src/dev/redis-process.js';

export interface RunningRedis {
  url: string;
  port: number;
  /** Shuts down gracefully and deletes the data dir. */
  stop(): Promise<void>;
  /** SIGKILL, for outage tests: no shutdown, data is only what the append-only file holds. */
  kill(): void;
  /** Starts again on the same port and dir, so the data written before is back. */
  restart(): Promise<void>;
}

const NOT_FOUND =
  'redis-server not found: install it (Debian: apt-get install -y redis-server) and rerun npm test';

/** Finds redis-server, installing it with apt-get when running as root on Debian (as CI does). */
export function findOrInstallRedisServer(): string {
  const found = findRedisServer();
  if (found) return found;
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    console.log('redis-server not found: installing it with apt-get (Debian package redis-server)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', 'redis-server']]) {
      const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
      if (run.status !== 0) throw new Error(`${NOT_FOUND} (apt-get ${args.join(' ')} failed)`);
    }
    // The Debian package may start a system service on 6379; tests use their own servers.
    const installed = findRedisServer();
    if (installed) return installed;
  }
  throw new Error(NOT_FOUND);
}

export async function startRedisServer(
  opts: { appendfsync?: 'always' | 'everysec' | 'no' } = {},
): Promise<RunningRedis> {
  const binary = findOrInstallRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'svb-redis-'));
  let proc: RedisProcess;
  try {
    proc = await spawnRedisServer({ dir, binary, ...opts });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  // mocha's `exit: true` ends the process without hooks running; never leave a server behind.
  const reap = (): void => {
    proc.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', reap);
  return {
    url: proc.url,
    port: proc.port,
    async stop() {
      process.removeListener('exit', reap);
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => proc.kill(),
    restart: () => proc.restart(),
  };
}

let shared: Promise<RunningRedis> | undefined;

/** The run's one redis-server, started on first use; hooks.ts stops it after all tests. */
export function sharedRedis(): Promise<RunningRedis> {
  shared ??= startRedisServer();
  return shared;
}

export async function stopSharedRedis(): Promise<void> {
  const running = shared;
  shared = undefined;
  // A server that failed to start has nothing to stop; its test already reported why.
  const server = await running?.catch(() => undefined);
  await server?.stop();
}

/** A fresh key prefix, so tests sharing one server never see each other's keys. */
export function randomPrefix(): string {
  return `t${randomBytes(6).toString('hex')}`;
}
