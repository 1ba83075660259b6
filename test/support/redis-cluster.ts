/**
 * Real Redis topologies for tests: a Redis Cluster (masters only, made by `redis-cli --cluster
 * create`) and a Sentinel (one password-protected master, one sentinel with quorum 1). Each has its
 * own free ports and temp dir. The whole run shares one of each (sharedRedisCluster,
 * sharedRedisSentinel), started on first use and stopped by the root hooks; tests keep apart by
 * using fresh key prefixes, and tests that kill a node start their own cluster.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, onPath } from '../../src/dev/redis-process.js';
import type { RedisNodeAddress } from '../../src/redis/connect.js';
import { findOrInstallRedisServer } from './redis-server.js';

const execFileAsync = promisify(execFile);

/** One redis-server process: a cluster node, a Sentinel master or a sentinel. */
export interface RedisNodeProcess extends RedisNodeAddress {
  /** SIGKILL, for outage tests. */
  kill(): void;
  /** Starts again on the same port and dir; a cluster node comes back with its nodes.conf. */
  restart(): Promise<void>;
  /** SIGTERM; resolves once the process exited. */
  stop(): Promise<void>;
}

export interface RunningRedisCluster {
  /** The masters' addresses, in the order their slot ranges go (node 0 has slots 0..5460 of 3). */
  nodes: RedisNodeAddress[];
  processes: RedisNodeProcess[];
  /** Stops every node and deletes the data dirs. */
  stop(): Promise<void>;
}

export interface RunningRedisSentinel {
  sentinels: RedisNodeAddress[];
  /** The name the sentinel monitors the master under (`sentinelName`). */
  name: string;
  /** The master's requirepass; clients give it in the url, `redis://:<password>@<any host>`. */
  password: string;
  master: RedisNodeAddress;
  stop(): Promise<void>;
}

const NO_CLI = 'redis-cli not found: install it (Debian: apt-get install -y redis-tools) and rerun npm test';

/** redis-server (installed by apt-get as for the single-server tests) and redis-cli beside it. */
function findRedisBinaries(): { server: string; cli: string } {
  const server = findOrInstallRedisServer();
  let cli = onPath('redis-cli');
  if (!cli && process.getuid?.() === 0 && onPath('apt-get')) {
    console.log('redis-cli not found: installing it with apt-get (Debian package redis-tools)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = spawnSync('apt-get', ['install', '-y', 'redis-tools'], { stdio: 'ignore', env });
    if (install.status !== 0) throw new Error(`${NO_CLI} (apt-get install redis-tools failed)`);
    cli = onPath('redis-cli');
  }
  if (!cli) throw new Error(NO_CLI);
  return { server, cli };
}

async function redisCli(cli: string, port: number, args: string[], password?: string): Promise<string> {
  const auth = password === undefined ? [] : ['--no-auth-warning', '-a', password];
  const { stdout } = await execFileAsync(cli, ['-h', '127.0.0.1', '-p', String(port), ...auth, ...args], {
    timeout: 5000,
  });
  return stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it holds; the error names `what` and the last answer. */
async function waitFor(what: string, check: () => Promise<string | true>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const answer = await check().catch((err: Error) => err.message);
    if (answer === true) return;
    last = answer;
    await sleep(30);
  }
  throw new Error(`${what} within ${timeoutMs} ms (last: ${last.trim().slice(0, 300)})`);
}

/** Starts `server args` and waits until it answers PING (a master with requirepass too). */
async function spawnNode(
  bin: { server: string; cli: string },
  port: number,
  args: string[],
  password?: string,
): Promise<RedisNodeProcess & { child(): ChildProcess }> {
  let child: ChildProcess;
  let output = '';
  const start = async (): Promise<void> => {
    output = '';
    child = spawn(bin.server, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await waitFor(`redis-server on port ${port} did not answer PING`, async () => {
      if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}: ${output}`);
      const reply = await redisCli(bin.cli, port, ['PING'], password);
      return reply.trim() === 'PONG' || reply;
    });
  };
  const exited = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  const stop = async (): Promise<void> => {
    const done = exited();
    child.kill('SIGTERM');
    await done;
  };
  await start();
  return {
    host: '127.0.0.1',
    port,
    child: () => child,
    kill: () => child.kill('SIGKILL'),
    async restart() {
      await stop();
      await start();
    },
    stop,
  };
}

/** Every process and dir this file started, so an exiting mocha (`exit: true`) leaves none behind. */
function reapOnExit(children: () => ChildProcess[], dir: string): () => void {
  const reap = (): void => {
    for (const child of children()) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', reap);
  return () => process.removeListener('exit', reap);
}

export interface RedisClusterOptions {
  /** Default 3, the fewest `redis-cli --cluster create` accepts. */
  masters?: number;
}

/**
 * Starts `masters` cluster-enabled redis-servers, joins them with
 * `redis-cli --cluster create ... --cluster-replicas 0` and waits for `cluster_state:ok` on all.
 */
export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RunningRedisCluster> {
  const masters = opts.masters ?? 3;
  if (masters < 3) throw new Error('redis-cli --cluster create needs at least 3 masters');
  const bin = findRedisBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'svb-redis-cluster-'));
  const nodes: Awaited<ReturnType<typeof spawnNode>>[] = [];
  const forget = reapOnExit(() => nodes.map((n) => n.child()), dir);
  const stop = async (): Promise<void> => {
    forget();
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The bus port is set too: the default, port + 10000, may be taken or past 65535.
    const free = await distinctFreePorts(2 * masters);
    const ports = free.slice(0, masters);
    nodes.push(
      ...(await Promise.all(
        ports.map((port, i) => {
          const nodeDir = join(dir, String(port));
          mkdirSync(nodeDir);
          // cluster-node-timeout stays at its 15 s default: a test that kills a node finishes
          // before the others mark it failed and refuse every command with CLUSTERDOWN.
          return spawnNode(bin, port, [
            ...['--port', String(port), '--bind', '127.0.0.1', '--dir', nodeDir],
            ...['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
            ...['--cluster-port', String(free[masters + i])],
            // Always fsynced: the broker's default redis.durability (fsync) refuses anything less.
            ...['--appendonly', 'yes', '--appendfsync', 'always'],
            ...['--save', '', '--daemonize', 'no', '--loglevel', 'warning'],
          ]);
        }),
      )),
    );
    const addresses = ports.map((port) => `127.0.0.1:${port}`);
    await execFileAsync(
      bin.cli,
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      { timeout: 20_000 },
    );
    for (const port of ports) {
      await waitFor(`cluster node ${port} did not reach cluster_state:ok`, async () => {
        const info = await redisCli(bin.cli, port, ['CLUSTER', 'INFO']);
        return info.includes('cluster_state:ok') || info;
      });
    }
    return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), processes: nodes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Starts a master with a random requirepass and one sentinel monitoring it as `name` (quorum 1),
 * and waits until the sentinel gives the master's address.
 */
export async function startRedisSentinel(opts: { name?: string } = {}): Promise<RunningRedisSentinel> {
  const name = opts.name ?? 'svb-master';
  const password = randomBytes(12).toString('hex');
  const bin = findRedisBinaries();
  const dir = mkdtempSync(join(tmpdir(), 'svb-redis-sentinel-'));
  const started: Awaited<ReturnType<typeof spawnNode>>[] = [];
  const forget = reapOnExit(() => started.map((n) => n.child()), dir);
  const stop = async (): Promise<void> => {
    forget();
    await Promise.all(started.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [masterPort, sentinelPort] = await distinctFreePorts(2);
    if (masterPort === undefined || sentinelPort === undefined) throw new Error('no free ports');
    const masterDir = join(dir, 'master');
    mkdirSync(masterDir);
    const master = await spawnNode(
      bin,
      masterPort,
      [
        ...['--port', String(masterPort), '--bind', '127.0.0.1', '--dir', masterDir],
        ...['--requirepass', password, '--masterauth', password],
        // appendfsync always: the broker's default redis.durability (fsync) refuses anything less.
        ...['--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
        ...['--daemonize', 'no', '--loglevel', 'warning'],
      ],
      password,
    );
    started.push(master);
    // Sentinel rewrites its config file, so it lives in the temp dir.
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        'daemonize no',
        'loglevel warning',
        `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
        `sentinel auth-pass ${name} ${password}`,
        `sentinel down-after-milliseconds ${name} 10000`,
        '',
      ].join('\n'),
    );
    const sentinel = await spawnNode(bin, sentinelPort, [conf, '--sentinel']);
    started.push(sentinel);
    await waitFor(`sentinel on port ${sentinelPort} did not give master ${name}`, async () => {
      const reply = await redisCli(bin.cli, sentinelPort, ['SENTINEL', 'get-master-addr-by-name', name]);
      return reply.includes(String(masterPort)) || reply;
    });
    return {
      sentinels: [{ host: '127.0.0.1', port: sentinelPort }],
      name,
      password,
      master: { host: '127.0.0.1', port: masterPort },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** freePort() closes its probe before answering, so two calls may give the same port. */
async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

let sharedCluster: Promise<RunningRedisCluster> | undefined;
let sharedSentinel: Promise<RunningRedisSentinel> | undefined;

/** The run's one 3-master cluster, started on first use; hooks.ts stops it after all tests. */
export function sharedRedisCluster(): Promise<RunningRedisCluster> {
  sharedCluster ??= startRedisCluster({ masters: 3 });
  return sharedCluster;
}

/** The run's one Sentinel setup, started on first use; hooks.ts stops it after all tests. */
export function sharedRedisSentinel(): Promise<RunningRedisSentinel> {
  sharedSentinel ??= startRedisSentinel();
  return sharedSentinel;
}

export async function stopSharedRedisTopologies(): Promise<void> {
  const running: Array<Promise<{ stop(): Promise<void> }> | undefined> = [sharedCluster, sharedSentinel];
  sharedCluster = undefined;
  sharedSentinel = undefined;
  // One that failed to start has nothing to stop; its test already reported why.
  await Promise.all(
    running.map(async (setup) => {
      const started = await setup?.catch(() => undefined);
      await started?.stop();
    }),
  );
}
