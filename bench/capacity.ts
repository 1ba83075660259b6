/**
 * Capacity, in one run: the broker as `svid-broker serve` runs it (compiled, as `npm run build`
 * does), on a private redis-server (appendfsync always, as the dev stack and the main bench run it).
 *
 * 1. Memory: `serve` under node's and glibc's defaults, as shipped (`svid-broker serve` through
 *    bin/svid-broker, with the launcher's settings) and under each of MEMORY_VARIANTS, a process
 *    each, all started before 100,000 active leases are written into their Redis through
 *    RedisLeaseStore.putLease (the broker holds no per-lease state: its RSS should not follow the
 *    count); then IssueCredential load runs taking turns between them. Each row: RSS idle, with
 *    the leases, after the load, its peak (VmHWM), V8's heap, throughput, broker CPU and GC pause
 *    time per issuance, and whether it stays within 150 MB; with the load average.
 * 2. Workers: IssueCredential (token backend) at concurrency 64 against `serve` (one process) and
 *    `serve --workers 2`, both started through bin/svid-broker as shipped, each after a warm-up:
 *    throughput, p50, p99, and the CPU of the broker processes and of this load driver per
 *    request. The driver shares the machine's cores with the workers, so a second worker can gain
 *    at most what the driver leaves idle: read the driver's CPU column beside the gain.
 * 3. Redis per issuance: Redis's own CPU (INFO cpu, used_cpu_user + used_cpu_sys of redis-server)
 *    and the scripts' time (INFO commandstats: usec of EVALSHA/EVAL/FCALL, which includes the
 *    commands they call) per issuance in the run, and the ceiling that puts on one Redis primary
 *    (one core of commands): 1,000,000 us / (Redis CPU us per issuance).
 *
 * `npx tsx bench/capacity.ts [--duration=S] [--leases=N] [--conc=N] [--rounds=N] [--no-workers]`,
 * or through `npm run bench` (skip with --no-capacity). Figures are printed, never asserted.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Channel, Client, Metadata, credentials } from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { Redis } from 'ioredis';
import type { PeerCertificate } from 'node:tls';
import { checkBrokerIdentity } from '../src/client/broker-client.js';
import { devAgents, devRoles } from '../src/dev/dev-stack.js';
import { freePort, spawnRedisServer, type RedisProcess } from '../src/dev/redis-process.js';
import { X509Source } from '../src/identity/workload-api.js';
import { derToPem } from '../src/identity/x509-verify.js';
import { createRedisClient, RedisLeaseStore } from '../src/leases/redis-lease-store.js';
import {
  loadBrokerProto,
  type IssueCredentialResponseMsg,
  type TaskMsg,
} from '../src/server/broker-proto.js';
import { BROKER_ID, startBenchWorkloads, TRUST_DOMAIN } from './bench-workloads.js';
import { seedLeases } from './incident.js';

const PREFIX = 'bench';
const CHANNELS = 8;
const TARGET_RSS = 150 * 1024 * 1024;
const REPO = fileURLToPath(new URL('../', import.meta.url));

export interface CapacityOptions {
  durationS?: number;
  leases?: number;
  concurrency?: number;
  /** Also `serve --workers 2` (default true); without it, the memory rows only. */
  workers?: boolean;
  /** Beside `serve` under the defaults, each a `serve` process of its own (default: MEMORY_VARIANTS). */
  variants?: readonly MemoryVariant[];
  /** Rounds of the memory rows' load runs, durationS / rounds each (default 2). */
  rounds?: number;
}

/** A `serve` process started with other node/V8 flags or environment, for the memory rows. */
export interface MemoryVariant {
  label: string;
  /** Started as `svid-broker serve` through bin/svid-broker (its settings), not node directly. */
  launcher?: boolean;
  nodeArgs?: readonly string[];
  env?: Readonly<Record<string, string>>;
}

/** What the variants set; taken out of the environment every `serve` here inherits. */
const MEMORY_ENV = ['MALLOC_ARENA_MAX', 'MALLOC_TRIM_THRESHOLD_', 'NODE_OPTIONS'] as const;

/** The broker as shipped: `svid-broker serve` (bin/svid-broker) with the launcher's defaults. */
export const SHIPPED: MemoryVariant = { label: 'svid-broker (shipped)', launcher: true };

/**
 * What the memory rows compare with node under no setting and with the shipped launcher
 * (bin/svid-broker: MALLOC_TRIM_THRESHOLD_=131072 and --max-semi-space-size=8): the trim threshold
 * alone (the image's setting before the launcher: what the young-generation cap adds), the
 * launcher's settings with two malloc arenas (MALLOC_ARENA_MAX=2: fewer per-thread arenas left
 * resident; measured no smaller, so not shipped), and the trim threshold with semi-spaces of
 * 4 MB (an operator's choice for memory-bound hosts, for its GC cost).
 */
const TRIM = { MALLOC_TRIM_THRESHOLD_: '131072' } as const;
export const MEMORY_VARIANTS: readonly MemoryVariant[] = [
  { label: 'MALLOC_TRIM_THRESHOLD_=131072', env: TRIM },
  {
    label: 'shipped + MALLOC_ARENA_MAX=2',
    nodeArgs: ['--max-semi-space-size=8'],
    env: { ...TRIM, MALLOC_ARENA_MAX: '2' },
  },
  { label: 'TRIM + semi-space 4', nodeArgs: ['--max-semi-space-size=4'], env: TRIM },
];

type AnyMethod = MethodDefinition<object, object>;

// ---------------------------------------------------------------------------------------------------------
// Set-up: the compiled CLI, Redis, a CA with the Workload API, a config file
// ---------------------------------------------------------------------------------------------------------

/**
 * `npm run build` into a temporary directory laid out like the installed package (dist/, bin/,
 * package.json); returns its dir.
 */
function buildCli(): string {
  const dir = mkdtempSync(join(tmpdir(), 'svb-capacity-build-'));
  const dist = join(dir, 'dist');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const args = [tsc, '-p', join(REPO, 'tsconfig.build.json'), '--outDir', dist, '--declaration', 'false'];
  const run = spawnSync(process.execPath, [...args, '--sourceMap', 'false'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`tsc failed:\n${run.stdout}${run.stderr}`);
  for (const part of readdirSync(join(REPO, 'src'))) {
    const lua = join(REPO, 'src', part, 'lua');
    if (existsSync(lua)) cpSync(lua, join(dist, 'src', part, 'lua'), { recursive: true });
  }
  copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  cpSync(join(REPO, 'bin'), join(dir, 'bin'), { recursive: true });
  for (const link of ['node_modules', 'proto', 'policies']) symlinkSync(join(REPO, link), join(dir, link));
  return dir;
}

interface Stage {
  dir: string;
  redis: RedisProcess;
  demoEndpoint: string;
  configFile: string;
  grpcPort: number;
  httpPort: number;
  close(): Promise<void>;
}

async function stageUp(): Promise<Stage> {
  const dir = mkdtempSync(join(tmpdir(), 'svb-capacity-'));
  const closers: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const fn of closers.splice(0).reverse()) await Promise.resolve(fn()).catch(() => undefined);
  };
  try {
    const redis = await spawnRedisServer({ dir: join(dir, 'redis') });
    closers.push(() => redis.stop());
    const endpoints = await startBenchWorkloads(dir, closers);
    const policyDir = join(dir, 'policies');
    mkdirSync(policyDir);
    for (const f of readdirSync(join(REPO, 'policies'))) {
      if (/\.cedar(schema)?$/.test(f)) copyFileSync(join(REPO, 'policies', f), join(policyDir, f));
    }
    const grpcPort = await freePort();
    const httpPort = await freePort();
    const configFile = join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        listen: `127.0.0.1:${grpcPort}`,
        httpListen: `127.0.0.1:${httpPort}`,
        workloadApi: { socket: endpoints.broker, firstUpdateTimeoutMs: 10_000 },
        redis: { url: redis.url, prefix: PREFIX, store: 'redis' },
        policy: { dir: policyDir },
        audit: { file: join(dir, 'audit', 'audit.jsonl'), fsync: true },
        log: { level: 'warn' },
        roles: devRoles(),
        agents: devAgents(),
      }),
    );
    return { dir, redis, demoEndpoint: endpoints.demo as string, configFile, grpcPort, httpPort, close };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The broker under test: `serve` or `serve --workers N`
// ---------------------------------------------------------------------------------------------------------

interface Served {
  /** The serving processes: the one `serve`, or the primary and its workers. */
  pids(): number[];
  /** GET /readyz answers 200 (after heavy writes a replica may be waiting on its feed). */
  ready(): Promise<boolean>;
  /** V8's heap, all spaces as committed (the ops listener's /metrics). */
  heapTotal(): Promise<number | undefined>;
  /** Seconds spent in GC so far, every kind (the ops listener's /metrics). */
  gcSeconds(): Promise<number>;
  stop(): Promise<void>;
}

/** Where one `serve` listens; a memory variant gets ports and an audit file of its own. */
interface Ports {
  grpc: number;
  http: number;
  /** Overrides of the stage's config (SVID_BROKER_* variables) for this process. */
  env: Record<string, string>;
}

async function ownPorts(stage: Stage, n: number): Promise<Ports> {
  const grpc = await freePort();
  const http = await freePort();
  const env = {
    SVID_BROKER_LISTEN: `127.0.0.1:${grpc}`,
    SVID_BROKER_HTTP_LISTEN: `127.0.0.1:${http}`,
    SVID_BROKER_AUDIT_FILE: join(stage.dir, 'audit', `variant-${n}.jsonl`),
  };
  return { grpc, http, env };
}

async function serve(
  build: string,
  stage: Stage,
  workers: number,
  variant: MemoryVariant = SHIPPED,
  ports: Ports = { grpc: stage.grpcPort, http: stage.httpPort, env: {} },
): Promise<Served> {
  const metricsPort = await freePort();
  const args =
    workers > 0 ? ['--workers', String(workers), '--metrics-listen', `127.0.0.1:${metricsPort}`] : [];
  const [command, argv] = commandOf(build, variant);
  const child: ChildProcess = spawn(command, [...argv, 'serve', ...args], {
    env: { ...environmentOf(variant), ...ports.env, SVID_BROKER_CONFIG: stage.configFile },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pids = (): number[] => [child.pid as number, ...childPids(child.pid as number)];
  const ready = workers > 0 ? () => workersServing(metricsPort, workers) : () => grpcAnswers(ports.grpc);
  const deadline = Date.now() + 120_000;
  while (!(await ready())) {
    if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode} before serving`);
    if (Date.now() > deadline) throw new Error('serve did not serve within 120 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    pids,
    ready: async () =>
      (await fetch(`http://127.0.0.1:${ports.http}/readyz`).catch(() => undefined))?.status === 200,
    heapTotal: () => heapTotal(ports.http),
    gcSeconds: () => gcSeconds(ports.http),
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** bin/svid-broker (the launcher), or node with the variant's flags running the compiled CLI. */
function commandOf(build: string, variant: MemoryVariant): [string, string[]] {
  if (variant.launcher) return [join(build, 'bin', 'svid-broker'), []];
  return [process.execPath, [...(variant.nodeArgs ?? []), join(build, 'dist', 'src', 'cli', 'main.js')]];
}

/** This process's environment without any memory setting of its own, then the variant's. */
function environmentOf(variant: MemoryVariant): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of MEMORY_ENV) delete env[name];
  return { ...env, ...variant.env };
}

/** The primary's metrics list every worker once they all serve. */
async function workersServing(metricsPort: number, workers: number): Promise<boolean> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return Array.from({ length: workers }, (_, i) => text.includes(`worker="${i + 1}"`)).every(Boolean);
  } catch {
    return false;
  }
}

async function grpcAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.connect(port, '127.0.0.1');
  });
}

function childPids(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids === '' ? [] : kids.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** Resident memory of the processes now (VmRSS), or at its highest so far (VmHWM). */
function rssOf(pids: number[], field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  let bytes = 0;
  for (const pid of pids) {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    bytes += Number(m?.[1] ?? 0) * 1024;
  }
  return bytes;
}

/** CPU time (user + system) of the processes so far, in ms. */
function cpuMsOf(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * 10; // USER_HZ 100
}

// ---------------------------------------------------------------------------------------------------------
// Load: CHANNELS connections (each its own, so node:cluster spreads them), one task per worker
// ---------------------------------------------------------------------------------------------------------

class Load {
  private readonly clients: Client[];
  /** Failed issuances since the last take(). */
  errors: string[] = [];
  private readonly issue: AnyMethod;
  private readonly begin: AnyMethod;

  constructor(
    private readonly source: X509Source,
    address: string,
  ) {
    const svid = source.getX509Svid();
    const bundle = source.getX509BundleForTrustDomain(TRUST_DOMAIN);
    if (!bundle) throw new Error('no bundle for the trust domain');
    const creds = credentials.createSsl(
      Buffer.from(bundle.authorities.map((d) => derToPem(d)).join('')),
      Buffer.from(derToPem(svid.privateKey, 'PRIVATE KEY')),
      Buffer.from(svid.certChain.map((d) => derToPem(d)).join('')),
      {
        checkServerIdentity: (_h: string, cert: PeerCertificate) =>
          checkBrokerIdentity(cert, TRUST_DOMAIN, BROKER_ID),
      },
    );
    const options = { 'grpc.ssl_target_name_override': 'svid-broker', 'grpc.use_local_subchannel_pool': 1 };
    this.clients = Array.from(
      { length: CHANNELS },
      () => new Client(address, creds, { channelOverride: new Channel(address, creds, options) }),
    );
    const { service } = loadBrokerProto();
    this.issue = service.IssueCredential as unknown as AnyMethod;
    this.begin = service.BeginTask as unknown as AnyMethod;
  }

  private call<Res>(worker: number, method: AnyMethod, req: object): Promise<Res> {
    const client = this.clients[worker % this.clients.length] as Client;
    return new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        req,
        new Metadata(),
        { deadline: Date.now() + 30_000 },
        (err, res) => (err ? reject(err) : resolve(res as Res)),
      ),
    );
  }

  /** `concurrency` closed-loop workers issuing for `ms`; latencies in ms. */
  async run(concurrency: number, ms: number): Promise<number[]> {
    const tasks = await Promise.all(
      Array.from({ length: concurrency }, (_, w) =>
        this.patiently(() =>
          this.call<TaskMsg>(w, this.begin, {
            environment: 'dev',
            intent: `capacity ${w}`,
            ttl_seconds: 3600,
          }),
        ),
      ),
    );
    const latencies: number[] = [];
    const end = performance.now() + ms;
    await Promise.all(
      tasks.map(async (task, w) => {
        while (performance.now() < end) {
          const t0 = performance.now();
          try {
            const res = await this.call<IssueCredentialResponseMsg>(w, this.issue, {
              task_id: task.task_id,
              role: 'token/demo',
              ttl_seconds: 300,
              sensitivity: 'internal',
              change_type: 'read',
              justification: 'capacity bench',
              tool: 'bench',
            });
            if (!res.credential?.token) throw new Error('IssueCredential returned no token');
            latencies.push(performance.now() - t0);
          } catch (err) {
            // Counted and reported, not fatal: on an overloaded machine a replica may fail closed
            // for a moment (its invalidation feed unconfirmed), which is what it should do.
            this.errors.push((err as Error).message);
          }
        }
      }),
    );
    return latencies;
  }

  /** Retries a call refused as UNAVAILABLE (a replica failing closed for a moment) for up to 60 s. */
  private async patiently<T>(call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if ((err as { code?: number }).code !== 14 || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------------------

async function untilReady(served: Served): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await served.ready())) {
    if (Date.now() > deadline) throw new Error('the broker did not become ready within 60 s');
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface RedisCost {
  cpuUs: number;
  scriptUs: number;
  scriptCalls: number;
}

async function redisCost(redis: Redis): Promise<RedisCost> {
  const cpu = await redis.info('cpu');
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
  const stats = await redis.info('commandstats');
  let scriptUs = 0;
  let scriptCalls = 0;
  for (const m of stats.matchAll(
    /^cmdstat_(evalsha|eval|evalsha_ro|eval_ro|fcall|fcall_ro):calls=(\d+),usec=(\d+)/gm,
  )) {
    scriptCalls += Number(m[2]);
    scriptUs += Number(m[3]);
  }
  return { cpuUs: (field('used_cpu_user') + field('used_cpu_sys')) * 1e6, scriptUs, scriptCalls };
}

interface Throughput {
  label: string;
  workers: number;
  count: number;
  rps: number;
  p50: number;
  p99: number;
  brokerCpuUs: number;
  driverCpuUs: number;
  redisCpuUs: number;
  scriptUs: number;
  scriptCalls: number;
  rss: number;
  errors: string[];
}

async function measure(
  label: string,
  workers: number,
  served: Served,
  load: Load,
  redis: Redis,
  opts: Required<CapacityOptions>,
): Promise<Throughput> {
  await untilReady(served);
  await load.run(opts.concurrency, 1500); // warm-up: connections, JIT, scripts
  await redis.config('RESETSTAT');
  const pids = served.pids();
  const r0 = await redisCost(redis);
  const cpu0 = cpuMsOf(pids);
  const driver0 = process.cpuUsage();
  load.errors = [];
  const t0 = performance.now();
  const latencies = Float64Array.from(await load.run(opts.concurrency, opts.durationS * 1000)).sort();
  const elapsed = performance.now() - t0;
  const driver = process.cpuUsage(driver0);
  const r1 = await redisCost(redis);
  const count = latencies.length;
  const q = (p: number): number => latencies[Math.min(count - 1, Math.ceil(p * count) - 1)] ?? NaN;
  return {
    label,
    workers,
    count,
    rps: (count * 1000) / elapsed,
    p50: q(0.5),
    p99: q(0.99),
    brokerCpuUs: ((cpuMsOf(pids) - cpu0) * 1000) / count,
    driverCpuUs: (driver.user + driver.system) / count,
    redisCpuUs: (r1.cpuUs - r0.cpuUs) / count,
    scriptUs: r1.scriptUs / count,
    scriptCalls: r1.scriptCalls / count,
    rss: rssOf(pids),
    errors: load.errors,
  };
}

/** RSS of one `serve` process: idle, with the leases in Redis, and after its load runs. */
interface MemoryRow {
  variant: MemoryVariant;
  /** Once serving, before the leases were written. */
  empty: number;
  withLeases: number;
  afterLoad: number;
  /** The highest RSS of the process's life (VmHWM), at the end. */
  peak: number;
  /** V8's heap (all spaces, as committed) after the load runs. */
  heapAfterLoad: number | undefined;
  rps: number;
  p99: number;
  brokerCpuUs: number;
  /** GC pause time per issuance (main thread). */
  gcUs: number;
  errors: string[];
}

/** A `serve` process of the memory rows and the load driver's connections to it. */
interface Instance {
  variant: MemoryVariant;
  served: Served;
  load: Load;
  empty: number;
  withLeases: number;
  latencies: number[];
  ms: number;
  cpuMs: number;
  gcMs: number;
  errors: string[];
}

/**
 * `serve` under the defaults and each variant, all started before the leases are written, then
 * load runs taking turns (opts.rounds rounds of durationS / rounds each, after one warm-up each), so a
 * busy moment of the machine hits them all.
 */
async function memoryRows(
  ctx: { build: string; stage: Stage; source: X509Source; opts: Required<CapacityOptions> },
  variants: readonly MemoryVariant[],
  seed: () => Promise<void>,
): Promise<MemoryRow[]> {
  const started: Instance[] = [];
  try {
    for (const [n, variant] of variants.entries()) {
      const ports = await ownPorts(ctx.stage, n);
      const served = await serve(ctx.build, ctx.stage, 0, variant, ports);
      const load = new Load(ctx.source, `127.0.0.1:${ports.grpc}`);
      started.push({
        variant,
        served,
        load,
        empty: 0,
        withLeases: 0,
        latencies: [],
        ms: 0,
        cpuMs: 0,
        gcMs: 0,
        errors: [],
      });
    }
    for (const i of started) i.empty = rssOf(i.served.pids());
    await seed();
    for (const i of started) i.withLeases = rssOf(i.served.pids());
    for (const i of started) {
      await untilReady(i.served);
      await i.load.run(ctx.opts.concurrency, 1500);
    }
    for (let round = 0; round < ctx.opts.rounds; round++) {
      for (const i of started) await loadTurn(i, ctx.opts);
    }
    const rows: MemoryRow[] = [];
    for (const i of started) rows.push(await memoryRowOf(i));
    return rows;
  } finally {
    for (const i of started) {
      i.load.close();
      await i.served.stop();
    }
  }
}

async function loadTurn(i: Instance, opts: Required<CapacityOptions>): Promise<void> {
  const pids = i.served.pids();
  const cpu0 = cpuMsOf(pids);
  const gc0 = await i.served.gcSeconds();
  const t0 = performance.now();
  i.load.errors = [];
  for (const ms of await i.load.run(opts.concurrency, (opts.durationS * 1000) / opts.rounds))
    i.latencies.push(ms);
  i.ms += performance.now() - t0;
  i.cpuMs += cpuMsOf(pids) - cpu0;
  i.gcMs += ((await i.served.gcSeconds()) - gc0) * 1000;
  i.errors.push(...i.load.errors);
}

async function memoryRowOf(i: Instance): Promise<MemoryRow> {
  const sorted = Float64Array.from(i.latencies).sort();
  const count = sorted.length;
  return {
    variant: i.variant,
    empty: i.empty,
    withLeases: i.withLeases,
    afterLoad: rssOf(i.served.pids()),
    peak: rssOf(i.served.pids(), 'VmHWM'),
    heapAfterLoad: await i.served.heapTotal(),
    rps: (count * 1000) / i.ms,
    p99: sorted[Math.min(count - 1, Math.ceil(0.99 * count) - 1)] ?? NaN,
    brokerCpuUs: (i.cpuMs * 1000) / count,
    gcUs: (i.gcMs * 1000) / count,
    errors: i.errors,
  };
}

async function metricsText(httpPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`).catch(() => undefined);
  return (await res?.text()) ?? '';
}

/** nodejs_heap_size_total_bytes of the broker's /metrics (prom-client's default metrics). */
async function heapTotal(httpPort: number): Promise<number | undefined> {
  const m = /^nodejs_heap_size_total_bytes (\S+)$/m.exec(await metricsText(httpPort));
  return m ? Number(m[1]) : undefined;
}

/** nodejs_gc_duration_seconds_sum over every kind of GC (prom-client's default metrics). */
async function gcSeconds(httpPort: number): Promise<number> {
  const text = await metricsText(httpPort);
  let sum = 0;
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm)) sum += Number(m[1]);
  return sum;
}

export async function runCapacityBench(options: CapacityOptions = {}): Promise<string[]> {
  const opts: Required<CapacityOptions> = {
    durationS: options.durationS ?? 8,
    leases: options.leases ?? 100_000,
    concurrency: options.concurrency ?? 64,
    workers: options.workers ?? true,
    variants: options.variants ?? MEMORY_VARIANTS,
    rounds: options.rounds ?? 2,
  };
  const build = buildCli();
  const stage = await stageUp();
  const redis = createRedisClient(stage.redis.url, { commandTimeoutMs: 30_000 });
  const source = await X509Source.create({ endpoint: stage.demoEndpoint, timeoutMs: 10_000 });
  const load = new Load(source, `127.0.0.1:${stage.grpcPort}`);
  const rows: Throughput[] = [];
  const seeding: Record<string, number> = {};
  let memory: MemoryRow[] = [];
  try {
    seeding.loadBefore = loadavg()[0] as number;
    memory = await memoryRows(
      { build, stage, source, opts },
      [{ label: 'node (no settings)' }, SHIPPED, ...opts.variants],
      async () => {
        seeding.ms = await seedInto(stage, opts.leases);
      },
    );
    seeding.loadAfter = loadavg()[0] as number;
    seeding.active = Number(await redis.zcard(`{${PREFIX}}:active-leases`));
    for (const [label, workers] of opts.workers
      ? ([
          ['serve', 0],
          ['--workers 2', 2],
        ] as const)
      : []) {
      const served = await serve(build, stage, workers);
      try {
        rows.push(await measure(label, Math.max(1, workers), served, load, redis, opts));
      } finally {
        await served.stop();
      }
    }
  } finally {
    load.close();
    source.close();
    redis.disconnect();
    await stage.close();
    rmSync(build, { recursive: true, force: true });
  }
  return [...report(rows, opts), ...memoryReport(memory, seeding, opts)];
}

/** `count` active leases of a fresh agent into the stage's Redis, through putLease; in ms. */
async function seedInto(stage: Stage, count: number): Promise<number> {
  const store = new RedisLeaseStore(createRedisClient(stage.redis.url, { commandTimeoutMs: 30_000 }), {
    prefix: PREFIX,
  });
  try {
    return await seedLeases(store, `spiffe://${TRUST_DOMAIN}/agents/seeded-${randomUUID()}`, count);
  } finally {
    await store.close();
  }
}

const mb = (b: number | undefined): string =>
  b === undefined ? 'n/a' : `${(b / 1024 / 1024).toFixed(1)} MB`;
const fx = (n: number | undefined, d = 0): string =>
  n !== undefined && Number.isFinite(n) ? n.toFixed(d) : 'n/a';

function report(rows: Throughput[], opts: Required<CapacityOptions>): string[] {
  if (rows.length === 0) return [];
  const lines = [
    `  compiled CLI, private redis-server (appendfsync always); IssueCredential token/demo at concurrency ` +
      `${opts.concurrency} over ${CHANNELS} connections, ${opts.durationS} s after a warm-up, this driver on the same cores`,
    `  ${'serve'.padEnd(13)}${'req/s'.padStart(8)}${'p50 ms'.padStart(8)}${'p99 ms'.padStart(8)}` +
      `${'broker cpu us/req'.padStart(19)}${'driver cpu us/req'.padStart(19)}${'redis cpu us/req'.padStart(18)}` +
      `${'scripts us/req'.padStart(16)}${'scripts/req'.padStart(13)}${'rss (all procs)'.padStart(17)}`,
  ];
  for (const r of rows) {
    lines.push(
      `  ${r.label.padEnd(13)}${fx(r.rps).padStart(8)}${fx(r.p50, 2).padStart(8)}${fx(r.p99, 2).padStart(8)}` +
        `${fx(r.brokerCpuUs).padStart(19)}${fx(r.driverCpuUs).padStart(19)}${fx(r.redisCpuUs).padStart(18)}` +
        `${fx(r.scriptUs).padStart(16)}${fx(r.scriptCalls, 1).padStart(13)}${mb(r.rss).padStart(17)}`,
    );
  }
  for (const r of rows.filter((x) => x.errors.length > 0)) {
    lines.push(`  ${r.label}: ${r.errors.length} issuance(s) refused or failed; first: ${r.errors[0]}`);
  }
  const [one, two] = rows;
  if (one && two) {
    lines.push(
      `  --workers 2 / serve: throughput ${fx(two.rps / one.rps, 2)}x, p99 ${fx(two.p99 / one.p99, 2)}x ` +
        `(the driver used ${fx((two.driverCpuUs * two.rps) / 1e4)}% of a core at 2 workers)`,
    );
  }
  for (const r of rows) {
    lines.push(
      `  Redis per issuance (${r.label}): ${fx(r.redisCpuUs)} us of redis-server CPU, scripts ${fx(r.scriptUs)} us ` +
        `in ${fx(r.scriptCalls, 1)} calls; one Redis primary (one core of commands) tops out near ` +
        `${fx(1e6 / r.redisCpuUs)} issuances/s (by the scripts alone ${fx(1e6 / r.scriptUs)}/s)`,
    );
  }
  return lines;
}

/** The memory rows: `serve` under the defaults, then each variant, one process each, in this run. */
function memoryReport(
  memory: readonly MemoryRow[],
  seeding: Record<string, number>,
  opts: Required<CapacityOptions>,
): string[] {
  if (memory.length === 0) return [];
  const lines = [
    `  broker RSS, one serve process each, all started before ${opts.leases} active leases were written ` +
      `(${fx((seeding.ms ?? NaN) / 1000, 1)} s, through putLease), then IssueCredential at concurrency ` +
      `${opts.concurrency} for ${opts.durationS} s each in ${opts.rounds} rounds taking turns (${seeding.active} active leases at the end; ` +
      `load average ${fx(seeding.loadBefore, 1)} before, ${fx(seeding.loadAfter, 1)} after)`,
    `  ${'serve'.padEnd(30)}${'idle'.padStart(10)}${`+${opts.leases} leases`.padStart(16)}` +
      `${'after load'.padStart(12)}${'of it V8 heap'.padStart(15)}${'peak'.padStart(10)}${'req/s'.padStart(8)}${'p99 ms'.padStart(8)}` +
      `${'broker cpu us/req'.padStart(19)}${'gc us/req'.padStart(11)}`,
  ];
  for (const m of memory) {
    lines.push(
      `  ${m.variant.label.padEnd(30)}${mb(m.empty).padStart(10)}${mb(m.withLeases).padStart(16)}` +
        `${mb(m.afterLoad).padStart(12)}${mb(m.heapAfterLoad).padStart(15)}${mb(m.peak).padStart(10)}${fx(m.rps).padStart(8)}` +
        `${fx(m.p99, 2).padStart(8)}${fx(m.brokerCpuUs).padStart(19)}${fx(m.gcUs).padStart(11)}`,
    );
  }
  for (const m of memory.filter((x) => x.errors.length > 0)) {
    lines.push(`  ${m.variant.label}: ${m.errors.length} issuance(s) failed; first: ${m.errors[0]}`);
  }
  for (const m of memory) {
    lines.push(
      `  ${Math.max(m.afterLoad, m.peak) <= TARGET_RSS ? 'PASS' : 'MISS'} broker RSS <= 150 MB with ` +
        `${opts.leases}+ active leases, through the load run (${m.variant.label}: peak ${mb(m.peak)})`,
    );
  }
  return lines;
}

function parseArgs(argv: readonly string[]): CapacityOptions {
  const opts: CapacityOptions = {};
  for (const arg of argv) {
    if (arg === '--no-workers') {
      opts.workers = false;
      continue;
    }
    const m = /^--(duration|leases|conc|rounds)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown option ${arg} (see the header of bench/capacity.ts)`);
    const n = Number(m[2]);
    if (m[1] === 'duration') opts.durationS = n;
    else if (m[1] === 'leases') opts.leases = n;
    else if (m[1] === 'rounds') opts.rounds = Math.max(1, n);
    else opts.concurrency = Math.max(1, n);
  }
  return opts;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  console.log(
    'capacity: serve at 1 and 2 workers, Redis per issuance, broker RSS with many leases (same run):',
  );
  for (const line of await runCapacityBench(parseArgs(process.argv.slice(2)))) console.log(line);
}
