/**
 * `npm run bench`: IssueCredential (token backend, real Redis, Cedar, fsync'd audit file) against a
 * no-op mTLS unary call, in the same run, at concurrency 1 and 64, side by side.
 *
 * Layout: the broker runs in a child process (bench/broker-process.ts) so its RSS and CPU are its
 * own; this process is only the load driver. The broker is compiled with tsc into a temporary
 * directory first and runs as plain JavaScript, as it is deployed (`npm run build`): under tsx its
 * RSS would include the loader's hooks thread, a second V8 isolate of about 30 MB.
 *
 * The baseline is the broker server's own `grpc.health.v1.Health/Check`: the same process, the same
 * gRPC server, the same TLS setup (the broker's SVID, client certificates requested), over the very
 * same client channels, and it runs no broker code at all. So the ratio issuance/baseline is what the broker's work costs on
 * top of a bare mTLS grpc-js round trip on this machine. Both scenarios go through the same client
 * code path (Client.makeUnaryRequest with proto-loader (de)serializers and a deadline).
 *
 * Each worker (one per unit of concurrency) is pinned to one of `--channels` HTTP/2 connections
 * and holds its own task, begun before measuring. Baseline and issuance are interleaved in
 * `--rounds` rounds after a warm-up of each; figures are printed, never asserted.
 *
 * Options: --duration=S (seconds per scenario and concurrency, split over the rounds; default 5)
 *          --warmup=S (default 1) --rounds=N (default 2) --conc=1,64 --channels=4
 *          --leases-per-task=N (begin a fresh task every N issuances per worker; default 0 = never)
 *          --no-fsync (audit without fsync, to see what the disk costs)
 *          --profile[=DIR] (broker under --cpu-prof; .cpuprofile files land in DIR, default
 *            $TMPDIR/svb-bench-profiles; summarize one with `npx tsx bench/profile-summary.ts FILE`)
 *          --rss-detail (at the end, where the broker's RSS is: V8 heap spaces and the largest mappings)
 *          --tsx (run the broker from source under tsx instead of compiling it; quicker to iterate)
 *          --node-arg=ARG (repeatable: extra node/V8 flag for the broker process, e.g. --node-arg=--trace-deopt)
 *          --broker-stdout=FILE (what the broker prints on stdout besides its ports; default: this stderr)
 *          --no-ledger-compare (skip the issuance rows with the ledger safeguards off: `issue-old` is the
 *            broker before the decision-consistency change and two-phase leases (no task version
 *            check, the lease written active at once), `issue-ver` has the version check only; each
 *            runs in a broker process of its own, measured in the same interleaved rounds)
 *          --no-capacity, --no-revoke-ledger (skip bench/capacity.ts or bench/revoke-ledger.ts)
 *          --no-audit-sinks (skip `issue-1req` and `issue-2req`: IssueCredential with one required audit
 *            sink (a Redis Stream) and with two (+ a webhook to a local receiver) behind the chain file,
 *            each broker a process of its own, beside `issuance` (the file alone) in the same rounds)
 *          --no-previous (skip issue-prev and begin-prev: the previous hot path, whole-set Cedar, the
 *            authorize-only approval gate and jose signing, in a broker process of its own)
 *          --stages=S (seconds of the stage-breakdown pass per concurrency; default 2)
 *          BENCH_QUICK=1 in the environment: 1.5 s per scenario, one round, no ledger variants, and
 *            no Vault, incident, durability or cloud section (options given still apply)
 *          --no-policy-scale, --no-vault, --no-incident, --no-durability, --no-cloud, --no-audit-webhook
 *            (skip the policy-scale, Vault, incident-response, redis.durability, cloud or audit webhook
 *            section after the main bench; run one alone with
 *            `npx tsx bench/<policy-scale|vault|incident|durability|cloud|audit-webhook>.ts`)
 */
import { runAuditWebhookBench } from './audit-webhook.js';
import { runCapacityBench } from './capacity.js';
import { runCloudBench } from './cloud.js';
import { runDurabilityBench } from './durability.js';
import { runIncidentBench } from './incident.js';
import { runPolicyScaleBench } from './policy-scale.js';
import { runRevokeLedgerBench } from './revoke-ledger.js';
import { runSigningBench } from './signing.js';
import { runVaultBench } from './vault.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Channel, Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import type { MethodDefinition } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import type { PeerCertificate } from 'node:tls';
import { checkBrokerIdentity } from '../src/client/broker-client.js';
import { X509Source } from '../src/identity/workload-api.js';
import { derToPem } from '../src/identity/x509-verify.js';
import {
  loadBrokerProto,
  type BeginTaskRequestMsg,
  type IssueCredentialRequestMsg,
  type IssueCredentialResponseMsg,
  type TaskMsg,
} from '../src/server/broker-proto.js';
import { BROKER_ID, TRUST_DOMAIN } from './bench-workloads.js';
import type { BrokerProcessInfo, StagesReply } from './broker-process.js';
import {
  commandRows,
  countRedisCommands,
  hotPathRows,
  stageRows,
  type CedarFigures,
  type ScenarioFigures,
} from './hot-path.js';

const CALL_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------------

interface Options {
  durationS: number;
  warmupS: number;
  rounds: number;
  concurrencies: number[];
  channels: number;
  leasesPerTask: number;
  fsync: boolean;
  profileDir: string | undefined;
  nodeArgs: string[];
  brokerStdout: string | undefined;
  tsx: boolean;
  rssDetail: boolean;
  ledgerCompare: boolean;
  /** Run issue-1req and issue-2req (required audit sinks) beside the file-only issuance. */
  auditSinks: boolean;
  /** Run the previous hot path (issue-prev, begin-prev) beside the current one. */
  previous: boolean;
  /** Seconds of the stage-breakdown pass per concurrency. */
  stagesS: number;
}

function parseOptions(argv: string[]): Options {
  const opts: Options = {
    durationS: 5,
    warmupS: 1,
    rounds: 2,
    concurrencies: [1, 64],
    channels: 4,
    leasesPerTask: 0,
    fsync: true,
    profileDir: undefined,
    nodeArgs: [],
    brokerStdout: undefined,
    tsx: false,
    rssDetail: false,
    ledgerCompare: true,
    auditSinks: true,
    previous: true,
    stagesS: 2,
  };
  // BENCH_QUICK=1: a short run of the hot path only (about a minute); options below still apply.
  if (process.env.BENCH_QUICK === '1') {
    Object.assign(opts, {
      durationS: 1.5,
      warmupS: 0.5,
      rounds: 1,
      ledgerCompare: false,
      auditSinks: false,
      stagesS: 1,
    });
  }
  const num = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0)
      throw new Error(`--${name} needs a non-negative number`);
    return n;
  };
  for (const arg of argv) {
    const bare = arg.replace(/^--/, '');
    const eq = bare.indexOf('=');
    const name = eq < 0 ? bare : bare.slice(0, eq);
    const value = eq < 0 ? undefined : bare.slice(eq + 1);
    switch (name) {
      case 'duration':
        opts.durationS = num(name, value);
        break;
      case 'warmup':
        opts.warmupS = num(name, value);
        break;
      case 'rounds':
        opts.rounds = Math.max(1, Math.floor(num(name, value)));
        break;
      case 'conc':
        opts.concurrencies = (value ?? '').split(',').map((c) => Math.max(1, Math.floor(num(name, c))));
        break;
      case 'channels':
        opts.channels = Math.max(1, Math.floor(num(name, value)));
        break;
      case 'leases-per-task':
        opts.leasesPerTask = Math.floor(num(name, value));
        break;
      case 'no-fsync':
        opts.fsync = false;
        break;
      case 'profile':
        opts.profileDir = value ?? join(tmpdir(), 'svb-bench-profiles');
        break;
      case 'node-arg':
        if (!value) throw new Error('--node-arg needs a value');
        opts.nodeArgs.push(value);
        break;
      case 'broker-stdout':
        opts.brokerStdout = value;
        break;
      case 'tsx':
        opts.tsx = true;
        break;
      case 'rss-detail':
        opts.rssDetail = true;
        break;
      case 'no-audit-sinks':
        opts.auditSinks = false;
        break;
      case 'no-ledger-compare':
        opts.ledgerCompare = false;
        break;
      case 'no-previous':
        opts.previous = false;
        break;
      case 'stages':
        opts.stagesS = num(name, value);
        break;
      case 'no-policy-scale':
      case 'no-vault':
      case 'no-incident':
      case 'no-durability':
      case 'no-cloud':
      case 'no-capacity':
      case 'no-revoke-ledger':
      case 'no-audit-webhook':
        // read by the sections run after main(): capacity, revoke-ledger, policy-scale, vault,
        // incident, durability, cloud and audit-webhook
        break;
      default:
        throw new Error(`unknown option ${arg} (see the header of bench/run.ts)`);
    }
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------------------
// The broker child process
// ---------------------------------------------------------------------------------------------------------

interface BrokerChild {
  info: BrokerProcessInfo;
  /** `stages on|off` to the broker's StageClock. */
  command(line: string): void;
  /** The broker's stage figures since `stages on`. */
  stages(): Promise<StagesReply>;
  stop(): Promise<void>;
}

const REPO = fileURLToPath(new URL('../', import.meta.url));

/**
 * Compiles bench/broker-process.ts and what it imports into a temporary directory laid out like the
 * package (package.json, proto/, policies/ and node_modules/ linked, Lua scripts copied, as
 * `npm run build` does), so packageRoot() and module resolution work as in dist/. Returns the
 * entry script and the directory to remove afterwards.
 */
function buildBroker(): { script: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'svb-bench-build-'));
  try {
    const tsconfig = join(dir, 'tsconfig.json');
    writeFileSync(
      tsconfig,
      JSON.stringify({
        extends: join(REPO, 'tsconfig.json'),
        compilerOptions: {
          outDir: dir,
          rootDir: REPO,
          types: ['node'],
          typeRoots: [join(REPO, 'node_modules', '@types')],
          sourceMap: false,
          noEmit: false,
        },
        include: [],
        files: [join(REPO, 'bench', 'broker-process.ts')],
      }),
    );
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const run = spawnSync(process.execPath, [tsc, '-p', tsconfig], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`tsc failed:\n${run.stdout}${run.stderr}`);
    // Every src/<part>/lua/ folder, as `npm run build` copies them (a new store's scripts included).
    for (const part of readdirSync(join(REPO, 'src'))) {
      const lua = join(REPO, 'src', part, 'lua');
      if (existsSync(lua)) cpSync(lua, join(dir, 'src', part, 'lua'), { recursive: true });
    }
    copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
    for (const link of ['node_modules', 'proto', 'policies']) symlinkSync(join(REPO, link), join(dir, link));
    return { script: join(dir, 'bench', 'broker-process.js'), dir };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A broker variant in a process of its own: other issuance safeguards (Broker's `issuance` option,
 * the ledger comparison) or required audit sinks behind the chain file (broker-process.ts builds them).
 */
interface LedgerVariant {
  scenario: string;
  issuance?: { versionCheck: boolean; twoPhase: boolean };
  auditSinks?: 'one' | 'two';
  label: string;
}
const LEDGER_VARIANTS: readonly LedgerVariant[] = [
  {
    scenario: 'issue-old',
    issuance: { versionCheck: false, twoPhase: false },
    label: 'before: no task version check, lease written active at once (one Redis write)',
  },
  {
    scenario: 'issue-ver',
    issuance: { versionCheck: true, twoPhase: false },
    label: 'the task version check only (decision consistency), lease written active at once',
  },
];

/** Issuance with required audit sinks: one (a Redis Stream), two (+ a webhook), beside the file alone. */
const AUDIT_VARIANTS: readonly LedgerVariant[] = [
  {
    scenario: 'issue-1req',
    auditSinks: 'one',
    label: 'audit file + one required sink (redis_stream on the broker Redis)',
  },
  {
    scenario: 'issue-2req',
    auditSinks: 'two',
    label: 'audit file + two required sinks (redis_stream, and a batch webhook to a local receiver)',
  },
];

async function startBrokerChild(
  opts: Options,
  variant?: LedgerVariant,
  previousHotPath = false,
): Promise<BrokerChild> {
  let script = fileURLToPath(new URL('./broker-process.ts', import.meta.url));
  let buildDir: string | undefined;
  const nodeArgs: string[] = [];
  if (opts.tsx) nodeArgs.push('--import', 'tsx');
  else ({ script, dir: buildDir } = buildBroker());
  if (opts.profileDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`);
  nodeArgs.push(...opts.nodeArgs);
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...nodeArgs,
      script,
      JSON.stringify({
        fsync: opts.fsync,
        previousHotPath,
        ...(variant?.issuance ? { issuance: variant.issuance } : {}),
        ...(variant?.auditSinks ? { auditSinks: variant.auditSinks } : {}),
      }),
    ],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, ...launcherEnv() },
    },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const removeBuild = (): void => {
    if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  };
  void exited.then(removeBuild);
  const stageWaiters: Array<(reply: StagesReply) => void> = [];
  const info = await new Promise<BrokerProcessInfo>((resolve, reject) => {
    // The info line is the one JSON object; V8 tracing flags may print around it.
    const other = opts.brokerStdout ? createWriteStream(opts.brokerStdout) : process.stderr;
    const lines = createInterface({ input: child.stdout! });
    let found = false;
    lines.on('line', (line) => {
      if (line.startsWith('{"stages":')) {
        stageWaiters.shift()?.(JSON.parse(line) as StagesReply);
        return;
      }
      if (found || !line.startsWith('{"pid":')) {
        other.write(`${line}\n`);
        return;
      }
      found = true;
      try {
        resolve(JSON.parse(line) as BrokerProcessInfo);
      } catch (err) {
        reject(new Error(`broker process printed ${JSON.stringify(line)}: ${(err as Error).message}`));
      }
    });
    child.once('exit', (code) => reject(new Error(`broker process exited with code ${code} before serving`)));
  });
  return {
    info,
    command(line) {
      child.stdin?.write(`${line}\n`);
    },
    stages() {
      return new Promise<StagesReply>((resolve) => {
        stageWaiters.push(resolve);
        child.stdin?.write('stages snapshot\n');
      });
    },
    async stop() {
      // Closing stdin asks the child to shut down; SIGKILL if it does not within 10 s.
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * The memory settings bin/svid-broker gives node (read from the launcher, so the two cannot
 * drift), for the broker processes: what `svid-broker serve` runs with.
 */
function launcherEnv(): NodeJS.ProcessEnv {
  const text = readFileSync(new URL('../bin/svid-broker', import.meta.url), 'utf8');
  const trim = /MALLOC_TRIM_THRESHOLD_:=(\d+)/.exec(text)?.[1];
  const semi = /NODE_OPTIONS="(--max-semi-space-size=\d+)/.exec(text)?.[1];
  if (!trim || !semi) throw new Error('bench: cannot read the launcher settings from bin/svid-broker');
  return {
    MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ ?? trim,
    NODE_OPTIONS: [semi, process.env.NODE_OPTIONS].filter(Boolean).join(' '),
  };
}

/** Resident set size now and at peak (VmHWM), in bytes, from /proc (Linux). */
function procRss(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kb('VmRSS') * 1024, peak: kb('VmHWM') * 1024 };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) the process has used so far, in ms, from /proc/<pid>/stat. */
function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** The V8 heap spaces (from /metrics) and the largest resident mappings (from /proc/<pid>/smaps). */
async function printRssDetail(pid: number, httpPort: number): Promise<void> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
  console.log('\nbroker memory detail:');
  for (const m of text.matchAll(/^nodejs_heap_space_size_total_bytes\{space="([^"]+)"\} (\S+)$/gm)) {
    console.log(`  V8 ${m[1]}: ${mb(Number(m[2]))}`);
  }
  for (const name of ['nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes']) {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    if (m) console.log(`  ${name}: ${mb(Number(m[1]))}`);
  }
  const regions: Array<{ head: string; kb: number }> = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) regions.push({ head: line, kb: 0 });
    else if (line.startsWith('Rss:') && regions.length > 0) {
      (regions[regions.length - 1] as { kb: number }).kb = Number(line.split(/\s+/)[1]);
    }
  }
  const total = regions.reduce((n, r) => n + r.kb, 0);
  console.log(`  mappings: ${regions.length}, resident ${mb(total * 1024)}; largest:`);
  for (const r of regions.sort((a, b) => b.kb - a.kb).slice(0, 12)) {
    const parts = r.head.split(/\s+/);
    console.log(`  ${mb(r.kb * 1024).padStart(9)}  ${parts[0]} ${parts[1]} ${parts.slice(5).join(' ')}`);
  }
}

async function metricsRss(httpPort: number): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  const text = await res.text();
  const m = /^process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Client side: N channels, the same credentials and the same call path for both scenarios
// ---------------------------------------------------------------------------------------------------------

type AnyMethod = MethodDefinition<object, object>;

class Connections {
  readonly clients: Client[];

  constructor(address: string, source: X509Source, count: number) {
    const svid = source.getX509Svid();
    const bundle = source.getX509BundleForTrustDomain(TRUST_DOMAIN);
    if (!bundle) throw new Error(`the demo workload holds no bundle for ${TRUST_DOMAIN}`);
    // Exactly what BrokerClient builds for mTLS.
    const creds = credentials.createSsl(
      Buffer.from(bundle.authorities.map((d) => derToPem(d)).join('')),
      Buffer.from(derToPem(svid.privateKey, 'PRIVATE KEY')),
      Buffer.from(svid.certChain.map((d) => derToPem(d)).join('')),
      {
        checkServerIdentity: (_host: string, cert: PeerCertificate) =>
          checkBrokerIdentity(cert, TRUST_DOMAIN, BROKER_ID),
      },
    );
    this.clients = Array.from({ length: count }, () => {
      // A local subchannel pool per channel: otherwise equal channels share one connection.
      const channel = new Channel(address, creds, {
        'grpc.ssl_target_name_override': 'svid-broker',
        'grpc.use_local_subchannel_pool': 1,
      });
      return new Client(address, creds, { channelOverride: channel });
    });
  }

  call<Res>(worker: number, method: AnyMethod, req: object): Promise<Res> {
    const client = this.clients[worker % this.clients.length] as Client;
    return new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        req,
        new Metadata(),
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err: ServiceError | null, res?: object) => (err ? reject(err) : resolve(res as Res)),
      );
    });
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------------------

type Op = (worker: number) => Promise<void>;

interface Sample {
  latenciesMs: number[];
  count: number;
  elapsedMs: number;
  brokerCpuMs: number;
  driverCpuMs: number;
  /** redis-server's CPU (INFO cpu) over the sample, when the scenario's Redis was measured. */
  redisCpuMs: number;
}

/** `concurrency` closed-loop workers call `op` until `durationMs` has passed. */
async function runFor(
  concurrency: number,
  durationMs: number,
  op: Op,
  brokerPid: number,
  redis?: RedisCpu,
): Promise<Sample> {
  const latenciesMs: number[] = [];
  const redis0 = (await redis?.cpuMs()) ?? 0;
  const cpu0 = procCpuMs(brokerPid);
  const driver0 = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await op(worker);
        latenciesMs.push(performance.now() - t0);
      }
    }),
  );
  const elapsedMs = performance.now() - start;
  const driver = process.cpuUsage(driver0);
  const brokerCpuMs = procCpuMs(brokerPid) - cpu0;
  return {
    latenciesMs,
    count: latenciesMs.length,
    elapsedMs,
    brokerCpuMs,
    driverCpuMs: (driver.user + driver.system) / 1000,
    redisCpuMs: redis ? (await redis.cpuMs()) - redis0 : 0,
  };
}

/** redis-server's own CPU so far (INFO cpu: used_cpu_user + used_cpu_sys, every thread), in ms. */
class RedisCpu {
  private readonly redis: Redis;

  constructor(url: string) {
    this.redis = new Redis(url, { maxRetriesPerRequest: 1 });
  }

  async cpuMs(): Promise<number> {
    const cpu = await this.redis.info('cpu');
    const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? 0);
    return (field('used_cpu_user') + field('used_cpu_sys')) * 1000;
  }

  close(): void {
    this.redis.disconnect();
  }
}

interface Result extends ScenarioFigures {
  driverCpuUsPerReq: number;
  redisCpuUsPerReq: number;
  /** Every process's CPU over the scenario's time: how many of the host's cores were busy. */
  coresBusy: number;
  count: number;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

function summarize(scenario: string, concurrency: number, samples: Sample[]): Result {
  const all = Float64Array.from(samples.flatMap((s) => s.latenciesMs)).sort();
  const count = samples.reduce((n, s) => n + s.count, 0);
  const elapsedMs = samples.reduce((n, s) => n + s.elapsedMs, 0);
  return {
    scenario,
    concurrency,
    rps: (count * 1000) / elapsedMs,
    p50: quantile(all, 0.5),
    p99: quantile(all, 0.99),
    brokerCpuUsPerReq: (samples.reduce((n, s) => n + s.brokerCpuMs, 0) * 1000) / count,
    driverCpuUsPerReq: (samples.reduce((n, s) => n + s.driverCpuMs, 0) * 1000) / count,
    redisCpuUsPerReq: (samples.reduce((n, s) => n + s.redisCpuMs, 0) * 1000) / count,
    coresBusy: samples.reduce((n, s) => n + s.brokerCpuMs + s.driverCpuMs + s.redisCpuMs, 0) / elapsedMs,
    count,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------------------

/** The load a driver puts on one broker child: its own demo SVID, channels and one task per worker. */
interface Driver {
  conns: Connections;
  source: X509Source;
  issuance: Op;
  baseline: Op;
  /** BeginTask in dev: the task is left to expire. */
  begin: Op;
  close(): void;
}

async function startDriver(info: BrokerProcessInfo, opts: Options, guarded: (op: Op) => Op): Promise<Driver> {
  const source = await X509Source.create({ endpoint: info.endpoints.demo as string, timeoutMs: 10_000 });
  const c = new Connections(`127.0.0.1:${info.grpcPort}`, source, opts.channels);
  const { service } = loadBrokerProto();
  const beginTask = service.BeginTask as unknown as AnyMethod;
  const issueCredential = service.IssueCredential as unknown as AnyMethod;
  const healthCheck = healthService.Check as unknown as AnyMethod;

  // One task per worker, begun outside the measurement; `--leases-per-task` rotates them.
  const maxWorkers = Math.max(...opts.concurrencies);
  const tasks: string[] = [];
  const issuedOnTask: number[] = [];
  const newTask = async (worker: number): Promise<string> => {
    const req: Partial<BeginTaskRequestMsg> = {
      environment: 'dev',
      intent: `bench worker ${worker}`,
      ttl_seconds: 3600,
      labels: { bench: 'run' },
    };
    const task = await c.call<TaskMsg>(worker, beginTask, req);
    tasks[worker] = task.task_id;
    issuedOnTask[worker] = 0;
    return task.task_id;
  };
  // Eight at a time: 64 at once, on a loaded machine, can outlast the call deadline at startup.
  for (let w = 0; w < maxWorkers; w += 8) {
    await Promise.all(Array.from({ length: Math.min(8, maxWorkers - w) }, (_, k) => newTask(w + k)));
  }

  const baseline: Op = guarded(async (worker) => {
    await c.call(worker, healthCheck, { service: '' });
  });
  const begin: Op = guarded(async (worker) => {
    const req: Partial<BeginTaskRequestMsg> = { environment: 'dev', intent: 'bench begin', ttl_seconds: 60 };
    await c.call<TaskMsg>(worker, beginTask, req);
  });
  const issuance: Op = guarded(async (worker) => {
    if (opts.leasesPerTask > 0 && (issuedOnTask[worker] ?? 0) >= opts.leasesPerTask) await newTask(worker);
    const req: Partial<IssueCredentialRequestMsg> = {
      task_id: tasks[worker] as string,
      role: 'token/demo',
      ttl_seconds: 300,
      sensitivity: 'internal',
      change_type: 'read',
      justification: 'benchmark',
      tool: 'bench',
    };
    const res = await c.call<IssueCredentialResponseMsg>(worker, issueCredential, req);
    if (!res.credential?.token) throw new Error('IssueCredential returned no token');
    issuedOnTask[worker] = (issuedOnTask[worker] ?? 0) + 1;
  });
  return {
    conns: c,
    source,
    issuance,
    baseline,
    begin,
    close() {
      c.close();
      source.close();
    },
  };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const began = performance.now();
  const broker = await startBrokerChild(opts);
  const variants = [
    ...(opts.ledgerCompare ? LEDGER_VARIANTS : []),
    ...(opts.auditSinks ? AUDIT_VARIANTS : []),
  ];
  const others: Array<{ variant: LedgerVariant; child: BrokerChild; driver?: Driver }> = [];
  let previous: { child: BrokerChild; driver?: Driver } | undefined;
  let driver: Driver | undefined;
  const meters: RedisCpu[] = [];
  let failure: unknown;
  try {
    for (const variant of variants) others.push({ variant, child: await startBrokerChild(opts, variant) });
    if (opts.previous) previous = { child: await startBrokerChild(opts, undefined, true) };
    const { info } = broker;

    let errors = 0;
    let firstError: unknown;
    const guarded =
      (op: Op): Op =>
      async (worker) => {
        try {
          await op(worker);
        } catch (err) {
          errors++;
          firstError ??= err;
        }
      };
    driver = await startDriver(info, opts, guarded);
    for (const other of others) other.driver = await startDriver(other.child.info, opts, guarded);
    if (previous) previous.driver = await startDriver(previous.child.info, opts, guarded);
    const { baseline, issuance, begin } = driver;
    // Every scenario of a round, in order: the baseline, issuance and BeginTask on the main broker,
    // the same two on the previous hot path, then the issuance on each ledger variant (each broker
    // its own process, so CPU is counted per process).
    const prev = previous?.driver;
    const redis = new RedisCpu(info.redisUrl);
    const prevRedis = previous ? new RedisCpu(previous.child.info.redisUrl) : undefined;
    meters.push(redis, ...(prevRedis ? [prevRedis] : []));
    const scenarios = [
      { name: 'baseline', op: baseline, pid: info.pid, redis },
      { name: 'issuance', op: issuance, pid: info.pid, redis },
      { name: 'begin', op: begin, pid: info.pid, redis },
      ...(previous && prev
        ? [
            { name: 'issue-prev', op: prev.issuance, pid: previous.child.info.pid, redis: prevRedis },
            { name: 'begin-prev', op: prev.begin, pid: previous.child.info.pid, redis: prevRedis },
          ]
        : []),
      ...others.map((o) => ({
        name: o.variant.scenario,
        op: (o.driver as Driver).issuance,
        pid: o.child.info.pid,
        redis: undefined,
      })),
    ];

    // RSS: once idle after startup, sampled every 100 ms under load, at the end, and the kernel's peak.
    const rssIdle = procRss(info.pid)?.rss;
    let rssLoadMax = 0;
    const sampler = setInterval(() => {
      rssLoadMax = Math.max(rssLoadMax, procRss(info.pid)?.rss ?? 0);
    }, 100);
    const results: Result[] = [];
    const roundMs = (opts.durationS * 1000) / opts.rounds;
    for (const concurrency of opts.concurrencies) {
      // Warm-up: connections, JIT, Redis scripts, the wasm module, the audit file.
      for (const sc of scenarios) await runFor(concurrency, opts.warmupS * 1000, sc.op, sc.pid, sc.redis);
      const samples = new Map<string, Sample[]>(scenarios.map((sc) => [sc.name, []]));
      for (let round = 0; round < opts.rounds; round++) {
        for (const sc of scenarios)
          samples.get(sc.name)?.push(await runFor(concurrency, roundMs, sc.op, sc.pid, sc.redis));
      }
      for (const sc of scenarios) results.push(summarize(sc.name, concurrency, samples.get(sc.name) ?? []));
    }
    clearInterval(sampler);
    const breakdown = await stagePass(opts, broker, issuance);
    // Last, as MONITOR slows Redis: the commands of about a second of issuances at concurrency 1.
    const commands = await countRedisCommands(
      info.redisUrl,
      async () => (await runFor(1, 1000, issuance, info.pid)).count,
    );
    if (errors > 0) {
      throw new Error(
        `${errors} call(s) failed; first: ${(firstError as Error).message ?? String(firstError)}`,
      );
    }

    const rssNow = await metricsRss(info.httpPort);
    const proc = procRss(info.pid);
    const leasesIssued = results.filter((r) => r.scenario === 'issuance').reduce((n, r) => n + r.count, 0);
    const rss = { idle: rssIdle, loadMax: rssLoadMax || undefined, end: rssNow, peak: proc?.peak };
    report(opts, results, rss, leasesIssued, performance.now() - began);
    reportLedger(
      opts,
      results,
      variants.filter((v) => v.issuance !== undefined),
    );
    reportAuditSinks(
      opts,
      results,
      variants.filter((v) => v.auditSinks !== undefined),
    );
    for (const line of [...stageRows(breakdown), ...commandRows(commands)]) console.log(line);
    hotPath = results;
    if (opts.rssDetail) await printRssDetail(info.pid, info.httpPort);
  } catch (err) {
    failure = err;
  } finally {
    driver?.close();
    for (const m of meters) m.close();
    for (const o of others) o.driver?.close();
    previous?.driver?.close();
    await Promise.all([
      broker.stop(),
      ...others.map((o) => o.child.stop()),
      ...(previous ? [previous.child.stop()] : []),
    ]);
  }
  if (failure !== undefined) throw failure;
  if (opts.profileDir) console.log(`\nbroker CPU profile written to ${opts.profileDir}`);
}

/** The throughput rows of the main run, for the hot-path table printed after the Cedar section. */
let hotPath: Result[] | undefined;

/**
 * The stage breakdown: the main broker's StageClock on, IssueCredential for `--stages` seconds at
 * each concurrency, its figures per request.
 */
async function stagePass(
  opts: Options,
  broker: BrokerChild,
  issuance: Op,
): Promise<Array<{ concurrency: number; requests: number; reply: StagesReply }>> {
  const out = [];
  for (const concurrency of opts.concurrencies) {
    broker.command('stages on');
    const sample = await runFor(concurrency, opts.stagesS * 1000, issuance, broker.info.pid);
    const reply = await broker.stages();
    broker.command('stages off');
    out.push({ concurrency, requests: sample.count, reply });
  }
  return out;
}

/** The issuance figures before and after the ledger safeguards, side by side (same run, same rounds). */
function reportLedger(opts: Options, results: Result[], variants: readonly LedgerVariant[]): void {
  if (variants.length === 0) return;
  const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  console.log('\nledger safeguards (task version check, two-phase lease), issuance rows above:');
  for (const v of variants) console.log(`  ${v.scenario.padEnd(10)} ${v.label}`);
  console.log(
    `  ${'issuance'.padEnd(10)} after: version check in put-lease, lease written pending then activated`,
  );
  for (const concurrency of opts.concurrencies) {
    const after = results.find((r) => r.scenario === 'issuance' && r.concurrency === concurrency);
    const before = results.find((r) => r.scenario === 'issue-old' && r.concurrency === concurrency);
    if (!after || !before) continue;
    console.log(
      `  at concurrency ${concurrency}: after/before throughput ${fx(after.rps / before.rps)}x, ` +
        `p50 ${fx(after.p50 / before.p50)}x, p99 ${fx(after.p99 / before.p99)}x`,
    );
  }
}

/** Issuance with one and two required audit sinks beside the file alone (same run, same rounds). */
function reportAuditSinks(opts: Options, results: Result[], variants: readonly LedgerVariant[]): void {
  if (variants.length === 0) return;
  const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  console.log('\nrequired audit sinks, issuance rows above:');
  console.log(`  ${'issuance'.padEnd(10)} the chain file alone (fsync'd, required by construction)`);
  for (const v of variants) console.log(`  ${v.scenario.padEnd(10)} ${v.label}`);
  for (const concurrency of opts.concurrencies) {
    const file = results.find((r) => r.scenario === 'issuance' && r.concurrency === concurrency);
    const one = results.find((r) => r.scenario === 'issue-1req' && r.concurrency === concurrency);
    const two = results.find((r) => r.scenario === 'issue-2req' && r.concurrency === concurrency);
    if (!file || !one || !two) continue;
    console.log(
      `  at concurrency ${concurrency}: throughput one/file ${fx(one.rps / file.rps)}x, two/file ` +
        `${fx(two.rps / file.rps)}x, two/one ${fx(two.rps / one.rps)}x; p50 two/one ${fx(two.p50 / one.p50)}x, ` +
        `p99 two/one ${fx(two.p99 / one.p99)}x`,
    );
  }
}

function report(
  opts: Options,
  results: Result[],
  rss: { idle?: number; loadMax?: number; end?: number; peak?: number },
  leasesIssued: number,
  totalMs: number,
): void {
  const pad = (s: string, n: number): string => s.padStart(n);
  const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  console.log(
    `\nsvid-broker bench: ${opts.channels} mTLS channels, ${opts.durationS} s per scenario in ${opts.rounds} ` +
      `interleaved rounds, audit fsync ${opts.fsync ? 'on' : 'off'}` +
      (opts.leasesPerTask > 0
        ? `, a fresh task every ${opts.leasesPerTask} leases`
        : ', one task per worker'),
  );
  const env = launcherEnv();
  console.log(
    `broker processes run with the launcher's settings (bin/svid-broker): MALLOC_TRIM_THRESHOLD_=${env.MALLOC_TRIM_THRESHOLD_}, NODE_OPTIONS=${env.NODE_OPTIONS}`,
  );
  console.log('baseline = grpc.health.v1.Health/Check on the broker server (no-op mTLS unary call)');
  console.log('issuance = IssueCredential token/demo (Cedar, ES256 JWT, Redis lease, hash-chained audit)\n');
  console.log(
    `${'scenario'.padEnd(10)}${pad('conc', 6)}${pad('req/s', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}` +
      `${pad('broker cpu us/req', 19)}${pad('driver cpu us/req', 19)}${pad('redis cpu us/req', 18)}${pad('cores busy', 12)}`,
  );
  for (const r of results) {
    const redis =
      r.scenario.startsWith('issue-') && r.scenario !== 'issue-prev' ? 'n/a' : fx(r.redisCpuUsPerReq, 0);
    console.log(
      `${r.scenario.padEnd(10)}${pad(String(r.concurrency), 6)}${pad(fx(r.rps, 0), 10)}${pad(fx(r.p50), 9)}` +
        `${pad(fx(r.p99), 9)}${pad(fx(r.brokerCpuUsPerReq, 0), 19)}${pad(fx(r.driverCpuUsPerReq, 0), 19)}` +
        `${pad(redis, 18)}${pad(redis === 'n/a' ? 'n/a' : fx(r.coresBusy), 12)}`,
    );
  }
  console.log('');
  const verdicts: string[] = [];
  const mb = (b: number | undefined): string =>
    b === undefined ? 'n/a' : `${(b / 1024 / 1024).toFixed(1)} MB`;
  for (const concurrency of opts.concurrencies) {
    const b = results.find((r) => r.scenario === 'baseline' && r.concurrency === concurrency);
    const i = results.find((r) => r.scenario === 'issuance' && r.concurrency === concurrency);
    if (!b || !i) continue;
    const tput = i.rps / b.rps;
    const p50 = i.p50 / b.p50;
    const p99 = i.p99 / b.p99;
    console.log(
      `ratio (issuance/baseline) at concurrency ${concurrency}: throughput ${fx(tput)}x, p50 ${fx(p50)}x, p99 ${fx(p99)}x`,
    );
    if (concurrency === 64) {
      verdicts.push(`${tput >= 0.5 ? 'PASS' : 'MISS'} throughput at 64 >= 0.5x baseline (${fx(tput)}x)`);
      verdicts.push(`${p99 <= 2 ? 'PASS' : 'MISS'} p99 at 64 <= 2x baseline (${fx(p99)}x)`);
    }
  }
  for (const line of ceilingRows(results)) console.log(line);
  const peak = rss.peak ?? rss.loadMax ?? rss.end;
  console.log(
    `broker RSS: ${mb(rss.idle)} idle after startup, ${mb(rss.loadMax)} max under load (sampled), ` +
      `${mb(rss.end)} at the end (process_resident_memory_bytes), peak ${mb(rss.peak)} (VmHWM)`,
  );
  if (peak !== undefined) {
    verdicts.push(`${peak < 200 * 1024 * 1024 ? 'PASS' : 'MISS'} broker RSS < 200 MB (peak ${mb(peak)})`);
  }
  console.log(`leases issued during the run: ${leasesIssued}; whole run ${fx(totalMs / 1000, 1)} s\n`);
  console.log('targets (informational):');
  for (const v of verdicts) console.log(`  ${v}`);
}

/**
 * What the host's cores allow at concurrency 64. The broker, this driver and redis-server share
 * them, so when they are all busy a scenario's throughput is the cores over the CPU one call costs
 * all three. Were the broker's own cost of an issuance (or a BeginTask) no more than what the no-op
 * call costs it, with the driver's and Redis's costs as measured, the ratio to the baseline could
 * be at most (baseline's CPU per call) / (driver + Redis + the broker's no-op cost): a ceiling of
 * the machine and the scenario, whatever the broker does.
 */
function ceilingRows(results: readonly Result[]): string[] {
  const at = (scenario: string): Result | undefined =>
    results.find((r) => r.scenario === scenario && r.concurrency === 64);
  const base = at('baseline');
  if (!base) return [];
  const cost = (r: Result): number => r.brokerCpuUsPerReq + r.driverCpuUsPerReq + r.redisCpuUsPerReq;
  const rows = [
    `CPU per call at concurrency 64, broker + driver + redis-server (cores busy: all three's CPU over the time, of ${availableParallelism()}):`,
  ];
  for (const r of [base, at('issuance'), at('begin')]) {
    if (!r) continue;
    const floor = r.driverCpuUsPerReq + r.redisCpuUsPerReq + base.brokerCpuUsPerReq;
    const ceiling =
      r === base
        ? ''
        : `; with the broker at the no-op's ${base.brokerCpuUsPerReq.toFixed(0)} us, at most ${(cost(base) / floor).toFixed(2)}x the baseline on this machine`;
    rows.push(
      `  ${r.scenario.padEnd(9)} ${cost(r).toFixed(0).padStart(5)} us (broker ${r.brokerCpuUsPerReq.toFixed(0)}, driver ${r.driverCpuUsPerReq.toFixed(0)}, redis ${r.redisCpuUsPerReq.toFixed(0)}), cores busy ${r.coresBusy.toFixed(2)}${ceiling}`,
    );
  }
  return rows;
}

/** BENCH_QUICK=1 runs the hot path only: the other sections are skipped. */
const QUICK = process.env.BENCH_QUICK === '1';

async function policyScale(): Promise<void> {
  let cedar: CedarFigures | undefined;
  if (!process.argv.includes('--no-policy-scale')) {
    console.log('\npolicy decision latency by policy set size (engine only, same run):');
    const { lines, figures } = await runPolicyScaleBench();
    for (const line of lines) console.log(line);
    cedar = figures;
  }
  console.log('');
  for (const line of await runSigningBench()) console.log(line);
  if (hotPath) for (const line of hotPathRows(hotPath, cedar)) console.log(line);
}

async function vaultSection(): Promise<void> {
  if (QUICK || process.argv.includes('--no-vault')) return;
  console.log('\nVault dynamic secrets: broker IssueCredential against direct node-vault reads (same run):');
  for (const line of await runVaultBench()) console.log(line);
}

async function incidentSection(): Promise<void> {
  if (QUICK || process.argv.includes('--no-incident')) return;
  console.log(
    '\nincident response: bulk revocation and quarantine propagation, beside a Redis round trip (same run):',
  );
  for (const line of await runIncidentBench()) console.log(line);
}

async function durabilitySection(): Promise<void> {
  if (QUICK || process.argv.includes('--no-durability')) return;
  console.log('\nissuance by redis.durability, beside none (same run):');
  for (const line of await runDurabilityBench()) console.log(line);
}

async function cloudSection(): Promise<void> {
  if (QUICK || process.argv.includes('--no-cloud')) return;
  console.log(
    '\ncloud backends: broker IssueCredential against direct calls to the same emulators (same run):',
  );
  for (const line of await runCloudBench()) console.log(line);
}

async function auditWebhookSection(): Promise<void> {
  if (process.argv.includes('--no-audit-webhook')) return;
  console.log('');
  for (const line of await runAuditWebhookBench()) console.log(line);
}

async function capacitySection(): Promise<void> {
  if (process.argv.includes('--no-capacity')) return;
  console.log(
    '\ncapacity: serve at 1 and 2 workers, Redis per issuance, broker RSS with many leases (same run):',
  );
  for (const line of await runCapacityBench()) console.log(line);
}

async function revokeLedgerSection(): Promise<void> {
  if (process.argv.includes('--no-revoke-ledger')) return;
  console.log('\nrevoke every active lease of one agent, ledger side (same run):');
  for (const line of await runRevokeLedgerBench()) console.log(line);
}

main()
  .then(capacitySection)
  .then(revokeLedgerSection)
  .then(policyScale)
  .then(vaultSection)
  .then(incidentSection)
  .then(durabilitySection)
  .then(cloudSection)
  .then(auditWebhookSection)
  // Every section closes what it started; exit anyway, so a handle one leaves open cannot hang the run.
  .then(() => process.exit(0))
  .catch((err: unknown) => {
    console.error(`bench failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  });
