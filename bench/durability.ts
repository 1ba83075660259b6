/**
 * What each `redis.durability` setting costs an issuance, beside `none`, in one run: the same
 * in-process broker (the integration harness: real gRPC over mTLS, Cedar, token backend, fsync'd
 * audit file) on its own private redis-server per setting, IssueCredential in closed loops at
 * concurrency 1 and 16, the settings interleaved round by round so drift hits them alike.
 *
 *   none    appendonly yes, appendfsync everysec (what most servers run): no wait
 *   fsync   appendonly yes, appendfsync always (Redis 7.0: checked at startup, no per-write call;
 *           on 7.2+ the broker would send WAITAOF after each lease write instead)
 *   replica appendfsync everysec plus one replica; WAIT 1 after each lease write
 *
 * Figures are printed, never asserted. `npx tsx bench/durability.ts [--seconds=N] [--rounds=N]`
 * runs this section alone.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import type { BrokerClient } from '../src/client/broker-client.js';
import { eventually, startHarness, type Harness } from '../test/support/broker-harness.js';
import { randomPrefix, startRedisServer, type RunningRedis } from '../test/support/redis-server.js';

export interface DurabilityBenchOptions {
  /** Measured seconds per setting and concurrency, split over the rounds. Default 4. */
  seconds?: number;
  rounds?: number;
  concurrencies?: number[];
}

const SETTINGS = ['none', 'fsync', 'replica'] as const;
type Setting = (typeof SETTINGS)[number];

interface Rig {
  setting: Setting;
  harness: Harness;
  clients: BrokerClient[];
  tasks: string[];
  servers: RunningRedis[];
}

async function startRig(setting: Setting, workers: number): Promise<Rig> {
  const master = await startRedisServer({ appendfsync: setting === 'fsync' ? 'always' : 'everysec' });
  const servers = [master];
  if (setting === 'replica') {
    const replica = await startRedisServer({ appendfsync: 'everysec' });
    servers.push(replica);
    const [toMaster, toReplica] = [new Redis(master.url), new Redis(replica.url)];
    await toReplica.call('REPLICAOF', '127.0.0.1', String(master.port));
    await eventually(async () => /slave0:.*state=online/.test(await toMaster.info('replication')), 15_000);
    toMaster.disconnect();
    toReplica.disconnect();
  }
  const harness = await startHarness({
    // Its own server, not the tests' shared one (which would keep this process alive when done).
    redisUrl: master.url,
    config: { redis: { prefix: randomPrefix(), store: 'redis', durability: setting } },
  });
  const clients: BrokerClient[] = [];
  const tasks: string[] = [];
  for (let w = 0; w < workers; w += 1) {
    // One client per worker, so no two share an HTTP/2 connection's flow control.
    const client = await harness.client('demo');
    clients.push(client);
    tasks.push((await client.beginTask({ environment: 'dev', intent: 'bench', ttl_seconds: 3600 })).task_id);
  }
  return { setting, harness, clients, tasks, servers };
}

async function closeRig(rig: Rig): Promise<void> {
  await rig.harness.close();
  for (const server of rig.servers.reverse()) await server.stop();
}

/** `concurrency` workers issue until `ms` has passed; latencies in ms. */
async function issueFor(rig: Rig, concurrency: number, ms: number): Promise<number[]> {
  const latencies: number[] = [];
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      const client = rig.clients[w] as BrokerClient;
      while (performance.now() < end) {
        const t0 = performance.now();
        const res = await client.issueCredential({
          task_id: rig.tasks[w] as string,
          role: 'token/demo',
          ttl_seconds: 300,
        });
        if (!res.credential?.token) throw new Error(`${rig.setting}: IssueCredential returned no token`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies;
}

interface Row {
  setting: Setting;
  concurrency: number;
  rps: number;
  p50: number;
  p99: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

export async function runDurabilityBench(opts: DurabilityBenchOptions = {}): Promise<string[]> {
  const seconds = opts.seconds ?? 4;
  const rounds = opts.rounds ?? 2;
  const concurrencies = opts.concurrencies ?? [1, 16];
  const rigs: Rig[] = [];
  try {
    for (const setting of SETTINGS) rigs.push(await startRig(setting, Math.max(...concurrencies)));
    const rows: Row[] = [];
    for (const concurrency of concurrencies) {
      for (const rig of rigs) await issueFor(rig, concurrency, 500); // warm-up
      const samples = new Map<Setting, number[]>(SETTINGS.map((s) => [s, []]));
      const sliceMs = (seconds * 1000) / rounds;
      for (let round = 0; round < rounds; round += 1) {
        for (const rig of rigs)
          samples.get(rig.setting)?.push(...(await issueFor(rig, concurrency, sliceMs)));
      }
      for (const setting of SETTINGS) {
        const latencies = (samples.get(setting) ?? []).sort((a, b) => a - b);
        rows.push({
          setting,
          concurrency,
          rps: latencies.length / seconds,
          p50: quantile(latencies, 0.5),
          p99: quantile(latencies, 0.99),
        });
      }
    }
    return report(rows);
  } finally {
    for (const rig of rigs) await closeRig(rig);
  }
}

function report(rows: Row[]): string[] {
  const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const lines = [
    `${'durability'.padEnd(12)}${'conc'.padStart(6)}${'req/s'.padStart(10)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'vs none (req/s, p50)'.padStart(24)}`,
  ];
  for (const r of rows) {
    const none = rows.find((n) => n.setting === 'none' && n.concurrency === r.concurrency);
    const vs = none ? `${fx(r.rps / none.rps)}x, ${fx(r.p50 / none.p50)}x` : 'n/a';
    lines.push(
      `${r.setting.padEnd(12)}${String(r.concurrency).padStart(6)}${fx(r.rps, 0).padStart(10)}${fx(r.p50).padStart(9)}${fx(r.p99).padStart(9)}${vs.padStart(24)}`,
    );
  }
  lines.push(
    'none = appendfsync everysec, no wait; fsync = appendfsync always (Redis 7.0, checked at startup);',
    'replica = everysec + WAIT 1 on one local replica. Each on its own redis-server, same broker code.',
  );
  return lines;
}

function parseArgs(argv: readonly string[]): DurabilityBenchOptions {
  const opts: DurabilityBenchOptions = {};
  for (const arg of argv) {
    const m = /^--(seconds|rounds)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown option ${arg} (see the header of bench/durability.ts)`);
    if (m[1] === 'seconds') opts.seconds = Math.max(1, Number(m[2]));
    else opts.rounds = Math.max(1, Number(m[2]));
  }
  return opts;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  console.log('issuance by redis.durability, beside none (same run):');
  for (const line of await runDurabilityBench(parseArgs(process.argv.slice(2)))) console.log(line);
}
