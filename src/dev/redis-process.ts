/**
 * Runs a private `redis-server` (Debian's) on a free loopback port with its own data dir: the dev
 * stack's lease store, and the tests' real Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createServer, createConnection } from 'node:net';

export interface RedisProcess {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Graceful stop (SHUTDOWN NOSAVE via SIGTERM); resolves when the process exited. */
  stop(): Promise<void>;
  /** SIGKILL, for outage tests. */
  kill(): void;
  /** Start again on the same port and dir (appendonly data survives). */
  restart(): Promise<void>;
}

/** The absolute path of an executable on PATH, or undefined. */
export function onPath(command: string): string | undefined {
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

export function findRedisServer(): string | undefined {
  return onPath('redis-server');
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One raw PING, so waiting for the server does not depend on a Redis client. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      reply += d.toString('utf8');
      // -LOADING while the append-only file is replayed; wait for +PONG.
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    if (await ping(port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms`);
}

export async function spawnRedisServer(opts: {
  dir: string;
  binary?: string;
  port?: number;
  /** Forward redis-server's own log to this function (default: discarded). */
  log?: (line: string) => void;
  /**
   * Default `always`: every write is fsynced before Redis answers, which the broker's default
   * `redis.durability: fsync` requires of a Redis older than 7.2.
   */
  appendfsync?: 'always' | 'everysec' | 'no';
  /** Called when the process ends without stop() or restart(): a crash, a kill from outside. */
  onUnexpectedExit?: (what: string) => void;
}): Promise<RedisProcess> {
  const binary = opts.binary ?? findRedisServer();
  if (!binary) throw new Error('redis-server not found on PATH');
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const port = opts.port ?? (await freePort());
  let child: ChildProcess;
  let stopping = false;

  const start = async (): Promise<void> => {
    stopping = false;
    child = spawn(
      binary,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        opts.dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        opts.appendfsync ?? 'always',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
        '--loglevel',
        'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const forward = (d: Buffer): void => {
      if (opts.log) for (const line of d.toString().split('\n')) if (line.trim()) opts.log(line);
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    const own = child;
    own.once('exit', (code, signal) => {
      if (stopping || own !== child) return;
      opts.onUnexpectedExit?.(
        `redis-server (pid ${own.pid ?? '?'}, port ${port}) exited ${signal ? `on ${signal}` : `with code ${code}`}`,
      );
    });
    await waitForPing(port, child, 10_000);
  };
  await start();

  const exited = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir: opts.dir,
    async stop() {
      stopping = true;
      const done = exited();
      child.kill('SIGTERM');
      await done;
    },
    kill() {
      child.kill('SIGKILL');
    },
    async restart() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        const done = exited();
        child.kill('SIGTERM');
        await done;
      }
      await start();
    },
  };
}
