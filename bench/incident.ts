/**
 * Incident response at scale, the targets: revoke 100,000 active leases of one agent with the
 * ledger side well under 5 s and memory bounded (streamed, never all in memory), and a quarantine
 * visible on a second replica within 1 s of the Quarantine call returning; printed beside a plain
 * Redis round trip measured in the same run.
 *
 * Everything talks to one private redis-server this process starts (startRedisServer, then
 * persistence switched off: no RDB snapshots, no append-only file):
 *
 * 1. Baseline: sequential PINGs on one connection; PINGs every 2 ms from a thread of its own (raw
 *    socket, so this event loop's work cannot delay them); pipelined HSETs of lease-sized hashes.
 * 2. Ledger: leases of one agent written through RedisLeaseStore.putLease (seeding: timed, not the
 *    figure), then RedisLeaseStore.revokeSelected({ agent }) walked page by page with
 *    REVOKE_PAGE_SIZE, as LeaseAdmin does, on a key prefix no broker uses: every lease `revoking`,
 *    deny-listed, its backend job queued. Redis's own time comes from INFO commandstats, and the
 *    threaded PINGs run meanwhile (what another replica's commands wait). This process's heap and
 *    RSS are sampled on every page, and the live heap is measured once half-way after a forced GC
 *    (its pause is left out of the time). Then GET /v1/revoked's read over those revoked tokens:
 *    a page through RevokedList, every page, and the old per-lease script once, for comparison.
 * 3. Backend: two brokers (the integration harness and its replica(): LocalCa, real Workload API,
 *    fsync'd audit files) on one key prefix; more leases of another agent, revoked by `security`
 *    through the admin RevokeLeases stream on replica A: ledger pages, the token backend's revoke,
 *    completeRevocations and one audit record per lease, as an operator's call does.
 * 4. Quarantine: Quarantine (admin gRPC) on replica A while the quarantined agent calls GetTask on
 *    replica B back to back, from the moment the call starts until B refuses it (PERMISSION_DENIED
 *    quarantined); released between rounds. A refusal seen before A's answer counts as 0 ms after
 *    it; otherwise the figure includes the one GetTask round trip that saw it (printed too).
 *
 * Both brokers, their clients and this driver share one process and event loop (as in
 * bench/vault.ts): the figures are what this code does on this machine, not a deployment's.
 *
 * `npx tsx bench/incident.ts [--leases=N] [--backend-leases=N] [--rounds=N]`, or through
 * `npm run bench` (skip with --no-incident). Figures are printed, never asserted.
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { status } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { REVOKE_PAGE_SIZE } from '../src/broker/lease-admin.js';
import { createRedisClient, RedisLeaseStore } from '../src/leases/redis-lease-store.js';
import type { Lease } from '../src/leases/types.js';
import { RevokedList } from '../src/server/revoked-list.js';
import {
  DEMO_AGENT,
  TRUST_DOMAIN,
  startHarness,
  type Harness,
  type Replica,
} from '../test/support/broker-harness.js';
import { randomPrefix, startRedisServer, type RunningRedis } from '../test/support/redis-server.js';

const TARGET_LEDGER_MS = 5000;
const TARGET_VISIBLE_MS = 1000;
const PINGS = 2000;
const BULK_WRITES = 100_000;
const BULK_BATCH = 1000;
const SEED_CONCURRENCY = 256;
const LEASES_PER_TASK = 1000;
/** How long a quarantine (or its release) may take to show on replica B before the bench gives up. */
const POLL_LIMIT_MS = 10_000;
/** Longer than one revocation page may block Redis, so no driver command times out behind one. */
const COMMAND_TIMEOUT_MS = 30_000;
const BULK_AGENT = `spiffe://${TRUST_DOMAIN}/agents/bulk`;

export interface IncidentBenchOptions {
  /** Leases of the ledger-only revocation (the 5 s target). Default 100,000. */
  leases?: number;
  /** Leases of the full RevokeLeases call (ledger, backend, audit). Default 50,000. */
  backendLeases?: number;
  /** Quarantine/release rounds. Default 20. */
  rounds?: number;
}

interface Stats {
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

function stats(values: readonly number[]): Stats {
  const s = Float64Array.from(values).sort();
  const at = (q: number): number =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  const sum = s.reduce((n, v) => n + v, 0);
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN, mean: sum / s.length };
}

const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const mb = (bytes: number): string => `${fx(bytes / 1024 / 1024, 1)} MB`;
const perS = (count: number, ms: number): string => `${fx((count * 1000) / ms, 0)}/s`;
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A full GC, so heap figures count live data only (a no-op if it cannot be had). */
export function garbageCollector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return () => undefined;
  }
}

/** This process's heap and RSS peaks, sampled on demand and every 10 ms while started. */
class MemoryPeaks {
  heap = 0;
  rss = 0;
  private timer: NodeJS.Timeout | undefined;

  sample(): void {
    const m = process.memoryUsage();
    this.heap = Math.max(this.heap, m.heapUsed);
    this.rss = Math.max(this.rss, m.rss);
  }

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 10);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Baseline
// ---------------------------------------------------------------------------------------------------------

interface Baseline {
  ping: Stats;
  /** The raw-socket pinger of pingMeanwhile with nothing else running. */
  pingIdle: Stats;
  bulkMs: number;
}

async function measureBaseline(server: RunningRedis, redis: Redis): Promise<Baseline> {
  for (let i = 0; i < 200; i++) await redis.ping();
  const pingMs: number[] = [];
  for (let i = 0; i < PINGS; i++) {
    const t0 = performance.now();
    await redis.ping();
    pingMs.push(performance.now() - t0);
  }
  const fields = ['agent', BULK_AGENT, 'taskId', randomUUID(), 'environment', 'dev', 'role', 'token/demo'];
  const t0 = performance.now();
  for (let b = 0; b < BULK_WRITES; b += BULK_BATCH) {
    const pipe = redis.pipeline();
    for (let i = b; i < b + BULK_BATCH; i++) pipe.hset(`bulk:${i}`, 'id', String(i), ...fields);
    await pipe.exec();
  }
  const bulkMs = performance.now() - t0;
  await redis.flushdb();
  const pinger = pingMeanwhile(server.port);
  await sleep(1000);
  return { ping: stats(pingMs), pingIdle: await pinger.stop(), bulkMs };
}

// ---------------------------------------------------------------------------------------------------------
// 2. Ledger side
// ---------------------------------------------------------------------------------------------------------

/** A lease store of the bench's own (its own connection) on `prefix`. */
function storeOn(server: RunningRedis, prefix: string): RedisLeaseStore {
  return new RedisLeaseStore(createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS }), {
    prefix,
  });
}

/** `count` active leases of `agent`, LEASES_PER_TASK per task, written through putLease; returns ms. */
export async function seedLeases(store: RedisLeaseStore, agent: string, count: number): Promise<number> {
  const t0 = performance.now();
  const now = Date.now();
  const tasks: string[] = [];
  for (let i = 0; i < count; i += LEASES_PER_TASK) {
    const id = randomUUID();
    tasks.push(id);
    await store.createTask({
      id,
      agent,
      environment: 'dev',
      intent: 'incident bench',
      labels: { bench: 'incident' },
      createdAt: now,
      expiresAt: now + 3_600_000,
      state: 'active',
    });
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < count; i = next++) {
      const id = randomUUID();
      const result = await store.putLease(
        {
          id,
          agent,
          taskId: tasks[Math.floor(i / LEASES_PER_TASK)] as string,
          environment: 'dev',
          role: 'token/demo',
          backend: 'token',
          backendRef: id,
          issuedAt: now,
          expiresAt: now + 1_800_000 + i,
          state: 'active',
        },
        now,
      );
      if (result !== 'ok') throw new Error(`putLease answered ${result}`);
    }
  };
  await Promise.all(Array.from({ length: SEED_CONCURRENCY }, worker));
  return performance.now() - t0;
}

interface Ledger {
  count: number;
  seedMs: number;
  totalMs: number;
  pages: Stats;
  pageCount: number;
  firstPageMs: number;
  /** The pinger thread's PINGs while the pages run: what every other Redis client waits. */
  pingDuring: Stats;
  /** Redis's own time in the page scripts and the index snapshot (INFO commandstats). */
  redisMs: number;
  heapBefore: number;
  /** Heap after a forced GC half-way through: what the walk really holds. */
  heapMidLive: number;
  heapAfter: number;
  rssBefore: number;
  peaks: MemoryPeaks;
  holdAllBytes: number;
  revokedList: RevokedListCost;
}

/** GET /v1/revoked's read with every revoked lease a token on the deny list. */
interface RevokedListCost {
  /** One page of REVOKED_PAGE jtis through RevokedList (what the route runs, without HTTP). */
  page: Stats;
  /** Redis's own time per page (INFO commandstats). */
  pageRedisMs: number;
  /** Every page, following next_cursor. */
  allPagesMs: number;
  pages: number;
  /** The script the route ran before (an HGETALL per revoked lease): one call, and PINGs meanwhile. */
  oldScanMs: number;
  oldScanPingMax: number;
}

const REVOKED_PAGE = 1000;
const REVOKED_ROUNDS = 50;

async function measureRevokedList(
  server: RunningRedis,
  redis: Redis,
  store: RedisLeaseStore,
): Promise<RevokedListCost> {
  const list = new RevokedList({
    store,
    clockSkewMs: 60_000,
    cacheMs: 0,
    defaultPageSize: REVOKED_PAGE,
    maxPageSize: REVOKED_PAGE,
  });
  const first = new URLSearchParams();
  for (let i = 0; i < 5; i++) await list.page(first);
  await redis.config('RESETSTAT');
  const pageMs: number[] = [];
  for (let i = 0; i < REVOKED_ROUNDS; i++) {
    const t0 = performance.now();
    await list.page(first);
    pageMs.push(performance.now() - t0);
  }
  const pageRedisMs = (await redisCommandMs(redis, ['evalsha', 'eval'])) / REVOKED_ROUNDS;
  const t0 = performance.now();
  let pages = 0;
  for (let cursor: string | null = ''; cursor !== null; pages++) {
    const body = await list.page(new URLSearchParams(cursor ? { cursor } : {}));
    cursor = body.next_cursor;
  }
  const allPagesMs = performance.now() - t0;
  const pinger = pingMeanwhile(server.port);
  const t1 = performance.now();
  await store.listRevokedUnexpired(Date.now(), 'token');
  const oldScanMs = performance.now() - t1;
  const oldScanPingMax = (await pinger.stop()).max;
  return { page: stats(pageMs), pageRedisMs, allPagesMs, pages, oldScanMs, oldScanPingMax };
}

/** Redis's total time (ms) in the commands named, from INFO commandstats. */
async function redisCommandMs(redis: Redis, commands: readonly string[]): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const name of commands) {
    usec += Number(new RegExp(`^cmdstat_${name}:calls=\\d+,usec=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  }
  return usec / 1000;
}

async function revokeLedger(
  server: RunningRedis,
  redis: Redis,
  count: number,
  gc: () => void,
): Promise<Ledger> {
  const store = storeOn(server, randomPrefix());
  try {
    const seedMs = await seedLeases(store, BULK_AGENT, count);
    gc();
    const before = process.memoryUsage();
    const peaks = new MemoryPeaks();
    let heapMidLive = NaN;
    let gcMs = 0;
    const pageMs: number[] = [];
    let revoked = 0;
    await redis.config('RESETSTAT');
    const pinger = pingMeanwhile(server.port);
    const at = Date.now();
    peaks.start();
    const t0 = performance.now();
    let last = t0;
    for await (const page of store.revokeSelected(
      { agent: BULK_AGENT },
      // runAt an hour out, as when a broker revokes inline: nothing else touches the queued jobs.
      { reason: 'admin: incident bench', at, runAt: at + 3_600_000, pageSize: REVOKE_PAGE_SIZE },
    )) {
      const now = performance.now();
      pageMs.push(now - last);
      revoked += page.leases.length;
      peaks.sample();
      if (Number.isNaN(heapMidLive) && revoked * 2 >= count) {
        gc();
        heapMidLive = process.memoryUsage().heapUsed;
        gcMs = performance.now() - now;
      }
      last = performance.now();
    }
    const totalMs = performance.now() - t0 - gcMs;
    peaks.stop();
    const pingDuring = await pinger.stop();
    const redisMs = await redisCommandMs(redis, ['evalsha', 'eval', 'zrangestore']);
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const tag = store.keyTag;
    const [denied, queued, active] = await Promise.all([
      redis.zcard(`${tag}:revoked`),
      redis.zcard(`${tag}:revoke:queue`),
      redis.zcard(`${tag}:active-leases`),
    ]);
    if (revoked !== count || denied !== count || queued !== count || active !== 0) {
      throw new Error(
        `ledger revoke incomplete: ${revoked} revoked, ${denied} deny-listed, ${queued} jobs, ${active} active`,
      );
    }
    const revokedList = await measureRevokedList(server, redis, store);
    return {
      count,
      seedMs,
      totalMs,
      pages: stats(pageMs),
      pageCount: pageMs.length,
      firstPageMs: pageMs[0] ?? NaN,
      pingDuring,
      redisMs,
      heapBefore: before.heapUsed,
      heapMidLive,
      heapAfter,
      rssBefore: before.rss,
      peaks,
      holdAllBytes: holdAllBytes(count, gc),
      revokedList,
    };
  } finally {
    await store.close();
    await redis.flushdb();
  }
}

/**
 * A PING every 2 ms over a raw socket, sent on schedule whether or not the last one was answered
 * (so waits are sampled evenly over time), on a thread of its own so the figure is Redis's answer
 * time and not this event loop's: what a command from another replica waits.
 */
const PINGER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createConnection } = require('node:net');
const ms = [];
const sent = [];
let timer;
const sock = createConnection(workerData.port, '127.0.0.1');
sock.on('connect', () => {
  timer = setInterval(() => { sent.push(performance.now()); sock.write('PING\\r\\n'); }, 2);
});
sock.on('data', (chunk) => {
  const now = performance.now();
  for (const c of chunk.toString('latin1')) if (c === '\\n') ms.push(now - sent.shift());
});
parentPort.on('message', () => {
  clearInterval(timer);
  sock.destroy();
  parentPort.postMessage(ms);
});
`;

function pingMeanwhile(port: number): { stop(): Promise<Stats> } {
  const worker = new Worker(PINGER, { eval: true, workerData: { port } });
  const samples = new Promise<number[]>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    async stop() {
      worker.postMessage('stop');
      const ms = await samples;
      await worker.terminate();
      return stats(ms);
    },
  };
}

/** Heap taken by `count` Lease objects as the store builds them (each string its own, as decoded). */
export function holdAllBytes(count: number, gc: () => void): number {
  const own = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');
  gc();
  const before = process.memoryUsage().heapUsed;
  const now = Date.now();
  const held: Lease[] = Array.from({ length: count }, (_, i) => {
    const id = randomUUID();
    return {
      id,
      agent: own(BULK_AGENT),
      taskId: randomUUID(),
      environment: own('dev'),
      role: own('token/demo'),
      backend: own('token'),
      backendRef: own(id),
      issuedAt: now,
      expiresAt: now + i,
      state: 'revoking',
      revokeReason: own('admin: incident bench'),
      revokedAt: now,
    };
  });
  gc();
  const bytes = process.memoryUsage().heapUsed - before;
  // Read after measuring, so the array is certainly alive while it is measured.
  return held.length === count ? bytes : NaN;
}

// ---------------------------------------------------------------------------------------------------------
// 3. Backend side: the admin RevokeLeases call
// ---------------------------------------------------------------------------------------------------------

interface Backend {
  count: number;
  seedMs: number;
  totalMs: number;
  firstProgressMs: number;
  messages: number;
  auditBytes: number;
  rssPeak: number;
}

async function revokeThroughBroker(server: RunningRedis, a: Harness, count: number): Promise<Backend> {
  const seeder = storeOn(server, a.redisPrefix);
  let seedMs: number;
  try {
    seedMs = await seedLeases(seeder, BULK_AGENT, count);
  } finally {
    await seeder.close();
  }
  const admin = await a.adminClient('security');
  const auditBefore = statSync(a.auditFile).size;
  const peaks = new MemoryPeaks();
  let firstProgressMs = NaN;
  let messages = 0;
  peaks.start();
  const t0 = performance.now();
  const report = await admin.revokeLeases(
    { selector: { agent: BULK_AGENT }, reason: 'incident bench' },
    () => {
      messages++;
      if (Number.isNaN(firstProgressMs)) firstProgressMs = performance.now() - t0;
    },
  );
  const totalMs = performance.now() - t0;
  peaks.stop();
  if (report.revoked !== count) {
    throw new Error(`RevokeLeases revoked ${report.revoked} of ${count} (pending ${report.pending_retry})`);
  }
  return {
    count,
    seedMs,
    totalMs,
    firstProgressMs,
    messages,
    auditBytes: statSync(a.auditFile).size - auditBefore,
    rssPeak: peaks.rss,
  };
}

// ---------------------------------------------------------------------------------------------------------
// 4. Quarantine propagation
// ---------------------------------------------------------------------------------------------------------

interface Propagation {
  rounds: number;
  /** From A's answer to B's refusal; 0 when B refused before A answered. */
  afterReturn: Stats;
  /** From the start of the Quarantine call to B's refusal. */
  fromStart: Stats;
  beforeReturn: number;
  call: Stats;
  release: Stats;
  probe: Stats;
}

/** Quarantine via A's admin API while the agent probes B; released between rounds. */
async function measurePropagation(a: Harness, b: Replica, rounds: number): Promise<Propagation> {
  const admin = await a.adminClient('security');
  const agent = await b.client('demo');
  const task = await agent.beginTask({ environment: 'dev', intent: 'incident bench probe' });
  /** True once B refuses the agent as quarantined; any other failure ends the bench. */
  const refused = async (): Promise<boolean> => {
    try {
      await agent.getTask({ task_id: task.task_id });
      return false;
    } catch (err) {
      const e = err as { code?: number; details?: string };
      if (e.code === status.PERMISSION_DENIED && e.details?.startsWith('quarantined')) return true;
      throw err;
    }
  };
  /** Probes B back to back until it refuses (`want` true) or accepts again; the time it took, in ms. */
  const until = async (want: boolean, from: number): Promise<number> => {
    while ((await refused()) !== want) {
      if (performance.now() - from > POLL_LIMIT_MS) {
        throw new Error(
          `replica B did not ${want ? 'refuse' : 'accept'} the agent within ${POLL_LIMIT_MS} ms`,
        );
      }
    }
    return performance.now() - from;
  };
  const probeMs: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    if (await refused()) throw new Error('the agent is quarantined before the bench set one');
    probeMs.push(performance.now() - t0);
  }
  const set = { agent: DEMO_AGENT, reason: 'incident bench', ttl_seconds: 0, revoke_active: false };
  const release = { agent: DEMO_AGENT, reason: 'incident bench over' };
  // One untimed round: first use of the admin calls and of B's feed reload.
  await admin.quarantine(set);
  await until(true, performance.now());
  await admin.releaseQuarantine(release);
  await until(false, performance.now());

  const afterReturn: number[] = [];
  const fromStart: number[] = [];
  const call: number[] = [];
  const released: number[] = [];
  let beforeReturn = 0;
  for (let r = 0; r < rounds; r++) {
    // Out of step with B's feed reads and the brokers' timers.
    await sleep(Math.random() * 25);
    const t0 = performance.now();
    let returned = NaN;
    const answered = admin.quarantine(set).then(() => {
      returned = performance.now();
    });
    const seen = await until(true, t0);
    await answered;
    call.push(returned - t0);
    fromStart.push(seen);
    afterReturn.push(Math.max(0, t0 + seen - returned));
    if (t0 + seen <= returned) beforeReturn++;
    await admin.releaseQuarantine(release);
    released.push(await until(false, performance.now()));
  }
  return {
    rounds,
    afterReturn: stats(afterReturn),
    fromStart: stats(fromStart),
    beforeReturn,
    call: stats(call),
    release: stats(released),
    probe: stats(probeMs),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The section
// ---------------------------------------------------------------------------------------------------------

export async function runIncidentBench(opts: IncidentBenchOptions = {}): Promise<string[]> {
  const leases = opts.leases ?? 100_000;
  const backendLeases = opts.backendLeases ?? 50_000;
  const rounds = opts.rounds ?? 20;
  const gc = garbageCollector();
  const began = performance.now();
  const server = await startRedisServer();
  const redis = createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  let a: Harness | undefined;
  try {
    await redis.config('SET', 'appendonly', 'no');
    await redis.config('SET', 'save', '');
    const baseline = await measureBaseline(server, redis);
    const ledger = await revokeLedger(server, redis, leases, gc);
    // Two replicas on one Redis key prefix, as `svid-broker serve` run twice.
    // The server runs without persistence (above), so the brokers accept that explicitly.
    a = await startHarness({
      // Its own server, not the tests' shared one (which would keep this process alive when done).
      redisUrl: server.url,
      config: { redis: { prefix: randomPrefix(), store: 'redis', durability: 'none' } },
    });
    const b = await a.replica();
    const backend = await revokeThroughBroker(server, a, backendLeases);
    const quarantine = await measurePropagation(a, b, rounds);
    return report(baseline, ledger, backend, quarantine, performance.now() - began);
  } finally {
    await a?.close();
    redis.disconnect();
    await server.stop();
  }
}

function report(b: Baseline, l: Ledger, be: Backend, q: Propagation, totalMs: number): string[] {
  const rtt = b.ping.p50;
  const midGrowth = l.heapMidLive - l.heapBefore;
  return [
    'private redis-server (no persistence); brokers = the integration harness and its replica (LocalCa',
    'Workload API, fsync’d audit files); both brokers, their clients and this driver share one process.',
    '',
    `  baseline   redis PING, ${PINGS} sequential: p50 ${fx(rtt, 3)} ms, mean ${fx(b.ping.mean, 3)} ms, ` +
      `p99 ${fx(b.ping.p99, 3)} ms`,
    `  baseline   PING from a thread of its own every 2 ms, idle: p50 ${fx(b.pingIdle.p50, 3)} ms, ` +
      `p99 ${fx(b.pingIdle.p99, 3)} ms, max ${fx(b.pingIdle.max, 3)} ms`,
    `  baseline   pipelined HSET of a 5-field hash, ${BULK_BATCH} per pipeline: ${perS(BULK_WRITES, b.bulkMs)}`,
    `  seed       ${l.count} leases of one agent through putLease, concurrency ${SEED_CONCURRENCY}: ` +
      `${fx(l.seedMs / 1000, 1)} s, ${perS(l.count, l.seedMs)} (set-up, not a target)`,
    `  ledger     revokeSelected({ agent }): ${l.count} leases in ${l.pageCount} pages of ${REVOKE_PAGE_SIZE}: ` +
      `${fx(l.totalMs, 0)} ms, ${perS(l.count, l.totalMs)}, ${fx((l.totalMs * 1000) / l.count, 1)} us/lease ` +
      `(${fx(l.totalMs / l.count / rtt)} PING p50s)`,
    `             Redis busy in the scripts ${fx(l.redisMs, 0)} ms (${fx((100 * l.redisMs) / l.totalMs, 0)}%), ` +
      `the rest is replies, parsing and round trips in the driver`,
    `             per page (one Lua call: Redis serves no one else meanwhile): p50 ${fx(l.pages.p50)} ms, ` +
      `p99 ${fx(l.pages.p99)} ms, max ${fx(l.pages.max)} ms, first ${fx(l.firstPageMs)} ms (with the index snapshot)`,
    `             PING from the other thread meanwhile: p50 ${fx(l.pingDuring.p50, 3)} ms, ` +
      `p99 ${fx(l.pingDuring.p99)} ms, max ${fx(l.pingDuring.max)} ms (what other replicas wait per command)`,
    `  memory     driver heap ${mb(l.heapBefore)} before; live ${mb(l.heapMidLive)} half-way ` +
      `(+${mb(midGrowth)}, after a forced GC); peak ${mb(l.peaks.heap)} with garbage ` +
      `(+${mb(l.peaks.heap - l.heapBefore)}); ${mb(l.heapAfter)} after`,
    `             RSS ${mb(l.rssBefore)} before, peak ${mb(l.peaks.rss)} (+${mb(l.peaks.rss - l.rssBefore)}); ` +
      `for scale, ${l.count} Lease objects held at once take ${mb(l.holdAllBytes)} of heap`,
    `  /v1/revoked with those ${l.count} revoked tokens on the deny list: one page of ${REVOKED_PAGE} ` +
      `p50 ${fx(l.revokedList.page.p50)} ms, p99 ${fx(l.revokedList.page.p99)} ms ` +
      `(${fx(l.revokedList.page.p50 / rtt, 0)} PING p50s), Redis busy ${fx(l.revokedList.pageRedisMs)} ms per page`,
    `             all ${l.revokedList.pages} pages: ${fx(l.revokedList.allPagesMs, 0)} ms; before (one script, an ` +
      `HGETALL per revoked lease, on every call): ${fx(l.revokedList.oldScanMs, 0)} ms, ` +
      `PING max meanwhile ${fx(l.revokedList.oldScanPingMax)} ms`,
    `  backend    RevokeLeases by security on replica A (gRPC stream): ${be.count} leases (seeded in ` +
      `${fx(be.seedMs / 1000, 1)} s) revoked in ${fx(be.totalMs, 0)} ms, ${perS(be.count, be.totalMs)}`,
    `             ledger pages + token backend revoke + completeRevocations + one fsync’d audit record per ` +
      `lease (${mb(be.auditBytes)});`,
    `             first progress after ${fx(be.firstProgressMs, 0)} ms, ${be.messages} progress messages; ` +
      `process RSS peak ${mb(be.rssPeak)} (both brokers and the client, which keeps every lease sent)`,
    `  quarantine Quarantine on A, GetTask by the agent on B until refused, ${q.rounds} rounds:`,
    `             visible on B after A answered: p50 ${fx(q.afterReturn.p50)} ms, p99 ${fx(q.afterReturn.p99)} ms, ` +
      `max ${fx(q.afterReturn.max)} ms (B refused before A answered in ${q.beforeReturn}/${q.rounds})`,
    `             from the call's start: p50 ${fx(q.fromStart.p50)} ms (${fx(q.fromStart.p50 / rtt, 0)} PING p50s), ` +
      `max ${fx(q.fromStart.max)} ms; the Quarantine call itself p50 ${fx(q.call.p50)} ms, ` +
      `max ${fx(q.call.max)} ms`,
    `             the probe (GetTask on B) p50 ${fx(q.probe.p50)} ms; release visible on B p50 ` +
      `${fx(q.release.p50)} ms, max ${fx(q.release.max)} ms`,
    `  whole section ${fx(totalMs / 1000, 1)} s`,
    '',
    '  targets (informational):',
    `    ${verdict(l.totalMs < TARGET_LEDGER_MS)} ledger revoke of ${l.count} leases < ` +
      `${TARGET_LEDGER_MS / 1000} s (${fx(l.totalMs / 1000)} s)`,
    `    ${verdict(midGrowth < l.holdAllBytes / 10)} ledger memory bounded: live heap growth half-way ` +
      `${mb(midGrowth)} < a tenth of holding every lease (${mb(l.holdAllBytes)})`,
    `    ${verdict(q.afterReturn.max < TARGET_VISIBLE_MS)} quarantine visible on replica B < ` +
      `${TARGET_VISIBLE_MS} ms after the call returned (max ${fx(q.afterReturn.max)} ms)`,
  ];
}

function parseArgs(argv: readonly string[]): IncidentBenchOptions {
  const opts: IncidentBenchOptions = {};
  for (const arg of argv) {
    const m = /^--(leases|backend-leases|rounds)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown option ${arg} (see the header of bench/incident.ts)`);
    const n = Number(m[2]);
    if (m[1] === 'leases') opts.leases = n;
    else if (m[1] === 'backend-leases') opts.backendLeases = n;
    else opts.rounds = Math.max(1, n);
  }
  return opts;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  console.log('incident response: bulk revocation and quarantine propagation (same run):');
  for (const line of await runIncidentBench(parseArgs(process.argv.slice(2)))) console.log(line);
}
