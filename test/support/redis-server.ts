/**
 * A real redis-server for tests: own port, own temp dir, append-only file so a restart keeps data.
 * The whole run shares one (sharedRedis) and tests keep apart by using fresh key prefixes
 * (randomPrefix); tests that kill Redis start their own with startRedisServer.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

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

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this dir
    }
  }
  return undefined;
}

/** Finds redis-server, installing it with apt-get when running as root on Debian (as CI does). */
function findRedisServer(): string {
  const found = onPath('redis-server');
  if (found) return found;
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    console.log('redis-server not found: installing it with apt-get (Debian package redis-server)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', 'redis-server']]) {
      const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
      if (run.status !== 0) throw new Error(`${NOT_FOUND} (apt-get ${args.join(' ')} failed)`);
    }
    // The Debian package starts a system service on 6379; tests use their own servers, so leave it.
    const installed = onPath('redis-server');
    if (installed) return installed;
  }
  throw new Error(NOT_FOUND);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** One raw PING, so waiting for the server does not depend on the client under test. */
function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('utf8');
      // -LOADING while the append-only file is replayed; wait for +PONG.
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startRedisServer(): Promise<RunningRedis> {
  const binary = findRedisServer();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'svb-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'yes',
    '--daemonize',
    'no',
    '--logfile',
    '',
  ];
  let child: ChildProcess;
  let output = '';

  const launch = async (): Promise<void> => {
    output = '';
    child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-4000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${output}`);
      if (await pingOnce(port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`redis-server did not answer PING on ${port} within 10 s: ${output}`);
  };

  // mocha's `exit: true` ends the process without hooks running; never leave a server behind.
  const reap = (): void => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', reap);
  try {
    await launch();
  } catch (err) {
    process.removeListener('exit', reap);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async stop() {
      process.removeListener('exit', reap);
      child.kill('SIGTERM');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    },
    kill() {
      child.kill('SIGKILL');
    },
    async restart() {
      child.kill('SIGTERM');
      await exited(child);
      await launch();
    },
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
