/**
 * Incident response at scale, the targets: revoke 100,000 active leases of one agent with the
 * ledger side well under 5 s and memory bounded (streamed, never all in memory), and a quarantine
 * visible on a second replica within 1 s of the Quarantine call returning; printed beside a plain
 * Redis round trip measured in the same run.
 *
 * Everything talks to one private redis-server this process starts (test/support/redis-server.ts,
 * then persistence switched off: no RDB snapshots, no append-only file):
 *
 * 1. Baseline: sequential PINGs on one connection, and pipelined HSETs of lease-sized hashes.
 * 2. Ledger: leases of one agent written through RedisLeaseStore.putLease (seeding: timed, but not
 *    the figure), then RedisLeaseStore.revokeSelected({ agent }) walked page by page with
 *    REVOKE_PAGE_SIZE, as LeaseAdmin does, on a key prefix no broker uses: every lease `revoking`,
 *    deny-listed, its backend job queued. This process's heap and RSS are sampled on every page.
 * 3. Backend: two brokers (the integration harness: LocalCa, real Workload API, fsync'd audit file)
 *    on one key prefix; more leases of another agent, revoked by `security` through the admin
 *    RevokeLeases stream on replica A: ledger pages, the token backend's revoke, completeRevocations
 *    and one audit record per lease, as an operator's call does.
 * 4. Quarantine: Quarantine (admin gRPC) on replica A, then GetTask by the quarantined agent on
 *    replica B, back to back, until B refuses it (PERMISSION_DENIED quarantined); released between
 *    rounds. The time counts from A's answer reaching the caller to B's refusal reaching the agent,
 *    so it includes one GetTask round trip (printed too).
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
import { status } from '@grpc/grpc-js';
import { REVOKE_PAGE_SIZE } from '../src/broker/lease-admin.js';
import type { BrokerClient } from '../src/client/broker-client.js';
import { createRedisClient, RedisLeaseStore } from '../src/leases/redis-lease-store.js';
import type { Lease } from '../src/leases/types.js';
import { DEMO_AGENT, TRUST_DOMAIN, startHarness, type Harness } from '../test/support/broker-harness.js';
import { randomPrefix, sharedRedis, stopSharedRedis } from '../test/support/redis-server.js';

const TARGET_LEDGER_MS = 5000;
const TARGET_VISIBLE_MS = 1000;
const PINGS = 2000;
const BULK_WRITES = 100_000;
const BULK_BATCH = 1000;
const SEED_CONCURRENCY = 256;
const LEASES_PER_TASK = 1000;
/** How long one refusal (or acceptance) may take to show on replica B before the bench gives up. */
const POLL_LIMIT_MS = 10_000;
const BULK_AGENT = `spiffe://${TRUST_DOMAIN}/agents/bulk`;

export interface IncidentBenchOptions {
  /** Leases of the ledger-only revocation (the 5 s target). Default 100,000. */
  leases?: number;
  /** Leases of the full RevokeLeases call (ledger, backend, audit). Default 100,000. */
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
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  const sum = s.reduce((n, v) => n + v, 0);
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN, mean: sum / s.length };
}

const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const mb = (bytes: number): string => `${fx(bytes / 1024 / 1024, 1)} MB`;
const rate = (count: number, ms: number): string => `${fx((count * 1000) / ms, 0)}/s`;
const verdict = (ok: boolean): string => (ok ? 'PASS' : 'MISS');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A full GC between phases, so heap figures start from live data only (no-op if unavailable). */
function collectGarbage(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return () => undefined;
  }
}

/** This process's heap and RSS peaks since `reset()`, sampled on demand and every 10 ms. */
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

/** `count` active leases of `agent`, LEASES_PER_TASK per task, written through putLease; returns ms. */
async function seedLeases(store: RedisLeaseStore, agent: string, count: number): Promise<number> {
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
      const lease: Lease = {
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
      };
      const result = await store.putLease(lease, now);
      if (result !== 'ok') throw new Error(`putLease answered ${result}`);
    }
  };
  await Promise.all(Array.from({ length: SEED_CONCURRENCY }, worker));
  return performance.now() - t0;
}

export async function runIncidentBench(opts: IncidentBenchOptions = {}): Promise<string[]> {
  const leases = opts.leases ?? 100_000;
  const backendLeases = opts.backendLeases ?? 100_000;
  const rounds = opts.rounds ?? 20;
  const gc = collectGarbage();
  const began = performance.now();
  const harnesses: Harness[] = [];
  const redisUrl = (await sharedRedis()).url;
  const redis = createRedisClient(redisUrl, { commandTimeoutMs: 30_000 });
  try {
    await redis.config('SET', 'appendonly', 'no');
    await redis.config('SET', 'save', '');

    // 1. Baseline: a plain round trip, and what pipelined writes of lease-sized hashes cost.
    for (let i = 0; i < 200; i++) await redis.ping();
    const pingMs: number[] = [];
    for (let i = 0; i < PINGS; i++) {
      const t0 = performance.now();
      await redis.ping();
      pingMs.push(performance.now() - t0);
    }
    const ping = stats(pingMs);
    const hash = ['agent', BULK_AGENT, 'taskId', randomUUID(), 'environment', 'dev', 'role', 'token/demo'];
    const bulkStart = performance.now();
    for (let b = 0; b < BULK_WRITES; b += BULK_BATCH) {
      const pipe = redis.pipeline();
      for (let i = b; i < b + BULK_BATCH; i++) pipe.hset(`bulk:${i}`, 'id', String(i), ...hash);
      await pipe.exec();
    }
    const bulkMs = performance.now() - bulkStart;
    await redis.flushdb();

    // 2. Ledger side: revokeSelected over every lease of one agent, on a prefix no broker uses.
    const ledgerStore = new RedisLeaseStore(createRedisClient(redisUrl, { commandTimeoutMs: 30_000 }), {
      prefix: randomPrefix(),
    });
    let ledger: LedgerResult;
    try {
      const seedMs = await seedLeases(ledgerStore, BULK_AGENT, leases);
      ledger = await revokeLedger(ledgerStore, redis, leases, gc);
      ledger.seedMs = seedMs;
    } finally {
      await ledgerStore.close();
    }
    await redis.flushdb();

    // 3. Backend side: the full RevokeLeases call on replica A of two.
    const a = await startHarness();
    harnesses.push(a);
    const b = await startHarness({ redisPrefix: a.redisPrefix });
    harnesses.push(b);
    const seedStore = new RedisLeaseStore(createRedisClient(redisUrl, { commandTimeoutMs: 30_000 }), {
      prefix: a.redisPrefix,
    });
    let backendSeedMs: number;
    try {
      backendSeedMs = await seedLeases(seedStore, BULK_AGENT, backendLeases);
    } finally {
      await seedStore.close();
    }
    const adminA = await a.adminClient('security');
    const auditBefore = statSync(a.auditFile).size;
    const backendPeaks = new MemoryPeaks();
    backendPeaks.start();
    let firstProgressMs = NaN;
    let progressMessages = 0;
    const revokeStart = performance.now();
    const report = await adminA.revokeLeases(
      { selector: { agent: BULK_AGENT }, reason: 'incident bench' },
      () => {
        progressMessages++;
        if (Number.isNaN(firstProgressMs)) firstProgressMs = performance.now() - revokeStart;
      },
    );
    const backendMs = performance.now() - revokeStart;
    backendPeaks.stop();
    if (report.revoked !== backendLeases) {
      throw new Error(
        `RevokeLeases revoked ${report.revoked} of ${backendLeases} (pending ${report.pending_retry})`,
      );
    }
    const auditBytes = statSync(a.auditFile).size - auditBefore;

    // 4. Quarantine on A, seen on B.
    const quarantine = await measurePropagation(a, b, rounds);

    const lines = [
      'private redis-server (no persistence); brokers = the integration harness (LocalCa Workload API,',
      'fsync’d audit file), both in this process with the driver: one event loop for all of it.',
      '',
      `  baseline  redis PING, ${PINGS} sequential: p50 ${fx(ping.p50, 3)} ms, mean ${fx(ping.mean, 3)} ms, ` +
        `p99 ${fx(ping.p99, 3)} ms`,
      `  baseline  pipelined HSET (5-field hash, ${BULK_BATCH} per pipeline): ${rate(BULK_WRITES, bulkMs)}`,
      `  seed      ${leases} leases of one agent via putLease (concurrency ${SEED_CONCURRENCY}): ` +
        `${fx(ledger.seedMs / 1000, 1)} s, ${rate(leases, ledger.seedMs)} (set-up, not a target)`,
      `  ledger    revokeSelected({ agent }), ${leases} leases in ${ledger.pageCount} pages of ${REVOKE_PAGE_SIZE}: ` +
        `${fx(ledger.totalMs, 0)} ms, ${rate(leases, ledger.totalMs)}, ` +
        `${fx((ledger.totalMs * 1000) / leases, 1)} us/lease = ${fx(ledger.totalMs / leases / ping.mean)} PING RTTs/lease`,
      `            per page (one Lua call; Redis serves nothing else meanwhile): p50 ${fx(ledger.pages.p50)} ms, ` +
        `p99 ${fx(ledger.pages.p99)} ms, max ${fx(ledger.pages.max)} ms (the first includes the index snapshot)`,
      `  memory    driver heap ${mb(ledger.heapBefore)} before, peak ${mb(ledger.peaks.heap)} ` +
        `(+${mb(ledger.peaks.heap - ledger.heapBefore)}), ${mb(ledger.heapAfter)} after GC; ` +
        `RSS ${mb(ledger.rssBefore)} before, peak ${mb(ledger.peaks.rss)} (+${mb(ledger.peaks.rss - ledger.rssBefore)})`,
      `            for scale: holding ${leases} Lease objects at once takes ${mb(ledger.holdAllBytes)} of heap`,
      `  backend   RevokeLeases (gRPC stream, replica A): ${backendLeases} leases seeded in ` +
        `${fx(backendSeedMs / 1000, 1)} s, revoked in ${fx(backendMs, 0)} ms, ${rate(backendLeases, backendMs)}`,
      `            (ledger pages + token backend revoke + completeRevocations + ${mb(auditBytes)} of per-lease ` +
        `audit records, fsync’d); first progress after ${fx(firstProgressMs, 0)} ms, ${progressMessages} messages;`,
      `            process RSS peak ${mb(backendPeaks.rss)} (both brokers and the client, which keeps every lease it is sent)`,
      `  quarantine Quarantine on A, GetTask by ${DEMO_AGENT} on B until refused, ${rounds} rounds:`,
      `            visible on B after A returned: p50 ${fx(quarantine.visible.p50)} ms, p99 ${fx(quarantine.visible.p99)} ms, ` +
        `max ${fx(quarantine.visible.max)} ms = ${fx(quarantine.visible.p50 / ping.p50, 0)}x PING p50; ` +
        `refused at the first probe in ${quarantine.firstProbe}/${rounds}`,
      `            GetTask on B (the probe) p50 ${fx(quarantine.probe.p50)} ms; Quarantine call on A p50 ` +
        `${fx(quarantine.call.p50)} ms, max ${fx(quarantine.call.max)} ms; release visible on B p50 ` +
        `${fx(quarantine.release.p50)} ms, max ${fx(quarantine.release.max)} ms`,
      `  whole section ${fx((performance.now() - began) / 1000, 1)} s`,
      '',
      '  targets (informational):',
      `    ${verdict(ledger.totalMs < TARGET_LEDGER_MS)} ledger revoke of ${leases} leases < ${TARGET_LEDGER_MS / 1000} s ` +
        `(${fx(ledger.totalMs / 1000)} s)`,
      `    ${verdict(ledger.peaks.heap - ledger.heapBefore < ledger.holdAllBytes / 4)} ledger memory bounded: ` +
        `peak heap growth ${mb(ledger.peaks.heap - ledger.heapBefore)} < a quarter of holding them all ` +
        `(${mb(ledger.holdAllBytes)})`,
      `    ${verdict(quarantine.visible.max < TARGET_VISIBLE_MS)} quarantine visible on replica B < ` +
        `${TARGET_VISIBLE_MS} ms after the call returned (max ${fx(quarantine.visible.max)} ms)`,
    ];
    return lines;
  } finally {
    for (const h of harnesses.reverse()) await h.close();
    redis.disconnect();
    await stopSharedRedis();
  }
}

/** Heap taken by `count` Lease objects as the store builds them (each string its own, decoded from a reply). */
function holdAllBytes(count: number, gc: () => void): number {
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

/** Quarantine via A's admin API, then how long until B refuses the agent; released between rounds. */
async function measurePropagation(
  a: Harness,
  b: Harness,
  rounds: number,
): Promise<{ visible: Stats; call: Stats; release: Stats; probe: Stats; firstProbe: number }> {
  const admin = await a.adminClient('security');
  const agent: BrokerClient = await b.client('demo');
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
  const until = async (want: boolean, from: number): Promise<{ ms: number; probes: number }> => {
    for (let probes = 1; ; probes++) {
      if ((await refused()) === want) return { ms: performance.now() - from, probes };
      if (performance.now() - from > POLL_LIMIT_MS) {
        throw new Error(`replica B did not ${want ? 'refuse' : 'accept'} the agent within ${POLL_LIMIT_MS} ms`);
      }
    }
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

  const visible: number[] = [];
  const call: number[] = [];
  const released: number[] = [];
  let firstProbe = 0;
  for (let r = 0; r < rounds; r++) {
    // Out of step with B's feed reads and the brokers' timers.
    await sleep(Math.random() * 25);
    const t0 = performance.now();
    await admin.quarantine(set);
    const returned = performance.now();
    const seen = await until(true, returned);
    call.push(returned - t0);
    visible.push(seen.ms);
    if (seen.probes === 1) firstProbe++;
    await admin.releaseQuarantine(release);
    released.push((await until(false, performance.now())).ms);
  }
  return {
    visible: stats(visible),
    call: stats(call),
    release: stats(released),
    probe: stats(probeMs),
    firstProbe,
  };
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
