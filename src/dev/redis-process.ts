/**
 * Runs a private `redis-server` (Debian's) on a free loopback port with its own data dir: the dev
 * stack's lease store, and the tests' real Redis.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
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

export function findRedisServer(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = r.stdout.trim();
  return r.status === 0 && path ? path : undefined;
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

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG')));
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
}): Promise<RedisProcess> {
  const binary = opts.binary ?? findRedisServer();
  if (!binary) throw new Error('redis-server not found on PATH');
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const port = opts.port ?? (await freePort());
  let child: ChildProcess;

  const start = async (): Promise<void> => {
    child = spawn(
      binary,
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--dir', opts.dir,
        '--save', '',
        '--appendonly', 'yes',
        '--appendfsync', 'everysec',
        '--daemonize', 'no',
        '--protected-mode', 'yes',
        '--loglevel', 'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const forward = (d: Buffer): void => {
      if (opts.log) for (const line of d.toString().split('\n')) if (line.trim()) opts.log(line);
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
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
      const done = exited();
      child.kill('SIGTERM');
      await done;
    },
    kill() {
      child.kill('SIGKILL');
    },
    async restart() {
      if (child.exitCode === null && child.signalCode === null) {
        const done = exited();
        child.kill('SIGKILL');
        await done;
      }
      await start();
    },
  };
}
