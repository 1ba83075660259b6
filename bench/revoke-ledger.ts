/**
 * Revoking every active lease of one agent, ledger side only (the issue's row: 100,000 leases,
 * at most 2 s, memory bounded): RedisLeaseStore.revokeSelected({ agent }) walked as LeaseAdmin
 * walks it (read ahead LEDGER_LOOKAHEAD pages, each page's leases parsed as they are read), every
 * lease moved to `revoking`, deny-listed (for the token backend the deny list is the backend's
 * revocation: one ZADD) and its backend job queued. Each variant runs on its
 * own key prefix of one private redis-server (no persistence), seeded with the same number of
 * leases through putLease (set-up, not timed), in the same run:
 *
 *   page N    the page size LeaseAdmin uses (REVOKE_PAGE_SIZE), and 250 (its page before),
 *             1,000 and 2,000 for the trade-off
 *   before    LeaseAdmin's page size with select-leases-4.lua as it was at BEFORE_COMMIT (a job
 *             hash written per lease, the queue's format then), read with `git show` and defined
 *             on that variant's client in place of the current script (same keys, same arguments,
 *             same driver); left out, and said so, where git or the commit is not at hand
 *
 * Printed: wall time, Redis's own time in the scripts and the snapshot (INFO commandstats), the
 * longest wait for one page (how long one script holds Redis, plus a round trip: what other
 * clients may wait), the snapshot's time, Redis's time per command the scripts called, the
 * driver's heap growth (live, after a forced GC half-way; the memory bound) beside what holding
 * every lease would take, and the load average at the start. On a machine shared with other work
 * the wall time mostly measures waiting for a core; the CPU time redis-server's main thread and
 * this process spent (the driver waits for each page, so on an idle machine the wall is about
 * their sum) is printed beside it.
 *
 * `npx tsx bench/revoke-ledger.ts [--leases=N]`, or through `npm run bench`. Figures are printed,
 * never asserted.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Redis } from 'ioredis';
import { LEDGER_LOOKAHEAD, REVOKE_PAGE_SIZE } from '../src/broker/lease-admin.js';
import { createRedisClient, RedisLeaseStore } from '../src/leases/redis-lease-store.js';
import { readAhead } from '../src/util/read-ahead.js';
import { loadLuaScripts, type LuaScript } from '../src/redis/lua-scripts.js';
import { randomPrefix, startRedisServer, type RunningRedis } from '../test/support/redis-server.js';
import { garbageCollector, holdAllBytes, seedLeases } from './incident.js';

const AGENT = 'spiffe://example.org/agents/bulk';
const TARGET_MS = 2000;
const COMMAND_TIMEOUT_MS = 30_000;
/** The last commit whose bulk revoke wrote a revocation job hash per lease. */
const BEFORE_COMMIT = '9d551c4';
/** RedisLeaseStore's ioredis command for select-leases (its commandName). */
const SELECT_LEASES_COMMAND = 'svbLeaseSelectLeases';

export interface RevokeLedgerResult {
  pageSize: number;
  /** The script at BEFORE_COMMIT instead of the current one. */
  before: boolean;
  count: number;
  seedMs: number;
  totalMs: number;
  redisMs: number;
  /**
   * CPU time spent meanwhile by redis-server's main thread (INFO cpu) and by this process (less
   * the forced GC): what the run costs, whatever else runs on the machine. The driver waits for
   * each page, so on an idle machine the wall is about their sum.
   */
  redisCpuMs: number;
  driverCpuMs: number;
  pages: number;
  /**
   * The longest wait for one page after the first (the script's hold on Redis plus a round trip;
   * the first page also waits for the snapshot, printed on its own).
   */
  longestPageMs: number;
  /** Redis's time building the run's snapshot of the index (one ZINTERSTORE). */
  snapshotMs: number;
  /** Redis's time per command the scripts called, largest first (Redis 7 counts them by name). */
  byCommand: [string, number][];
  heapGrowthMid: number;
  rssBefore: number;
  rssPeak: number;
}

function storeOn(server: RunningRedis, prefix: string, before: LuaScript | undefined): RedisLeaseStore {
  const redis = createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  const store = new RedisLeaseStore(redis, { prefix });
  // Defined after the store's own: replaces its select-leases on this client only.
  if (before) redis.defineCommand(SELECT_LEASES_COMMAND, before);
  return store;
}

/**
 * select-leases-4.lua as it was at BEFORE_COMMIT, with its includes spliced in by the loader the
 * stores use; undefined when git or the commit is not at hand (a copy of dist, a shallow clone).
 */
function scriptBefore(): LuaScript | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'svb-lua-before-'));
  try {
    const show = (path: string): string =>
      execFileSync('git', ['show', `${BEFORE_COMMIT}:src/leases/lua/${path}`], {
        cwd: fileURLToPath(new URL('..', import.meta.url)),
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    mkdirSync(join(dir, 'includes'));
    const script = show('select-leases-4.lua');
    writeFileSync(join(dir, 'select-leases-4.lua'), script);
    for (const [, include] of script.matchAll(/^--- @include "([a-z-]+)"$/gm)) {
      writeFileSync(join(dir, 'includes', `${include}.lua`), show(`includes/${include}.lua`));
    }
    return loadLuaScripts(new URL(`file://${dir}/`), ['select-leases'], 'revoke-ledger bench').get(
      'select-leases',
    );
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** INFO commandstats as command -> usec. */
async function commandUsec(redis: Redis): Promise<Map<string, number>> {
  const info = await redis.info('commandstats');
  return new Map(
    [...info.matchAll(/^cmdstat_([a-z|]+):calls=\d+,usec=(\d+)/gm)].map((m) => [
      m[1] as string,
      Number(m[2]),
    ]),
  );
}

/** redis-server's main-thread CPU so far (user + sys), ms. */
async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string): number =>
    Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return (field('used_cpu_user_main_thread') + field('used_cpu_sys_main_thread')) * 1000;
}

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

/** What the driver sent itself: the scripts, the snapshot and its removal. */
const SENT = ['evalsha', 'eval', 'fcall', 'zinterstore', 'zrangestore', 'del', 'pexpire'];

/**
 * Redis's time in the commands this process sent (the scripts' usec includes the commands they
 * call, which Redis 7 also counts under their own names, so those are not added), and the
 * commands the scripts called, each on its own.
 */
function redisTime(usec: Map<string, number>): { redisMs: number; byCommand: [string, number][] } {
  let sent = 0;
  const byCommand: [string, number][] = [];
  for (const [command, us] of usec) {
    if (SENT.includes(command)) sent += us;
    else if (!command.startsWith('config|') && command !== 'info') byCommand.push([command, us / 1000]);
  }
  return { redisMs: sent / 1000, byCommand: byCommand.sort((a, b) => b[1] - a[1]) };
}

async function revokeOnce(
  server: RunningRedis,
  redis: Redis,
  count: number,
  pageSize: number,
  gc: () => void,
  scriptBefore?: LuaScript,
): Promise<RevokeLedgerResult> {
  const store = storeOn(server, randomPrefix(), scriptBefore);
  try {
    const seedMs = await seedLeases(store, AGENT, count);
    gc();
    const before = process.memoryUsage();
    let rssPeak = before.rss;
    let heapGrowthMid = NaN;
    let gcMs = 0;
    let revoked = 0;
    let pages = 0;
    let longestPageMs = 0;
    await redis.config('RESETSTAT');
    const redisCpu0 = await redisCpuMs(redis);
    let gcCpuMs = 0;
    const at = Date.now();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let pageStart = t0;
    const run = store.revokeSelected(
      { agent: AGENT },
      { reason: 'admin: revoke bench', at, runAt: at + 3_600_000, pageSize },
    );
    // As LeaseAdmin walks it: read ahead (LEDGER_LOOKAHEAD pages), each page's leases read here.
    for await (const page of readAhead(run, LEDGER_LOOKAHEAD)) {
      if (pages > 0) longestPageMs = Math.max(longestPageMs, performance.now() - pageStart);
      revoked += page.leases.length;
      pages++;
      rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
      if (Number.isNaN(heapGrowthMid) && revoked * 2 >= count) {
        const g0 = performance.now();
        const gcCpu0 = process.cpuUsage();
        gc();
        heapGrowthMid = process.memoryUsage().heapUsed - before.heapUsed;
        gcCpuMs += cpuMs(process.cpuUsage(gcCpu0));
        gcMs += performance.now() - g0;
      }
      pageStart = performance.now();
    }
    const totalMs = performance.now() - t0 - gcMs;
    const driverCpuMs = cpuMs(process.cpuUsage(cpu0)) - gcCpuMs;
    const redisCpu = (await redisCpuMs(redis)) - redisCpu0;
    const usec = await commandUsec(redis);
    const { redisMs, byCommand } = redisTime(usec);
    const snapshotMs = ((usec.get('zinterstore') ?? 0) + (usec.get('zrangestore') ?? 0)) / 1000;
    if (revoked !== count) throw new Error(`revoked ${revoked} of ${count}`);
    return {
      pageSize,
      before: scriptBefore !== undefined,
      count,
      seedMs,
      totalMs,
      redisMs,
      redisCpuMs: redisCpu,
      driverCpuMs,
      pages,
      longestPageMs,
      snapshotMs,
      byCommand,
      heapGrowthMid,
      rssBefore: before.rss,
      rssPeak,
    };
  } finally {
    await store.close();
    await redis.flushdb();
  }
}

export async function runRevokeLedgerBench(opts: { leases?: number } = {}): Promise<string[]> {
  const count = opts.leases ?? 100_000;
  const gc = garbageCollector();
  const server = await startRedisServer();
  const redis = createRedisClient(server.url, { commandTimeoutMs: COMMAND_TIMEOUT_MS });
  const results: RevokeLedgerResult[] = [];
  const load = loadavg();
  const before = scriptBefore();
  try {
    await redis.config('SET', 'appendonly', 'no');
    await redis.config('SET', 'save', '');
    for (const pageSize of pageSizes()) {
      results.push(await revokeOnce(server, redis, count, pageSize, gc));
      // Right after the current script at the same page size, so both see about the same load.
      if (before && pageSize === REVOKE_PAGE_SIZE) {
        results.push(await revokeOnce(server, redis, count, pageSize, gc, before));
      }
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
  const lines = report(results, holdAllBytes(count, gc), load);
  if (!before) lines.push(`  (no 'before' row: git show ${BEFORE_COMMIT} is not available here)`);
  return lines;
}

function pageSizes(): number[] {
  return [...new Set([REVOKE_PAGE_SIZE, 250, 500, 1000, 2000])].sort((a, b) => a - b);
}

const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MB`;
const fx = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

const cpuSum = (r: RevokeLedgerResult): number => r.redisCpuMs + r.driverCpuMs;

function report(results: RevokeLedgerResult[], holdAll: number, load: number[]): string[] {
  const lines = [
    `  private redis-server, no persistence; each row its own key prefix, seeded through putLease (not timed);` +
      ` load average ${load.map((l) => l.toFixed(2)).join(' ')} at the start`,
    `  ${'page'.padStart(6)}${'leases'.padStart(9)}${'wall ms'.padStart(9)}${'redis ms'.padStart(10)}` +
      `${'us/lease'.padStart(10)}${'cpu ms redis+driver'.padStart(21)}${'pages'.padStart(7)}` +
      `${'longest page'.padStart(14)}${'snapshot'.padStart(10)}${'heap growth'.padStart(13)}${'rss peak'.padStart(11)}`,
  ];
  for (const r of results) {
    lines.push(
      `  ${(r.before ? 'before' : String(r.pageSize)).padStart(6)}${String(r.count).padStart(9)}` +
        `${fx(r.totalMs).padStart(9)}` +
        `${fx(r.redisMs).padStart(10)}${fx((r.totalMs * 1000) / r.count, 1).padStart(10)}` +
        `${`${fx(r.redisCpuMs)}+${fx(r.driverCpuMs)}=${fx(cpuSum(r))}`.padStart(21)}` +
        `${String(r.pages).padStart(7)}${`${fx(r.longestPageMs, 1)} ms`.padStart(14)}` +
        `${`${fx(r.snapshotMs)} ms`.padStart(10)}${mb(r.heapGrowthMid).padStart(13)}${mb(r.rssPeak).padStart(11)}` +
        (r.before ? `  <- LeaseAdmin's page, the script at ${BEFORE_COMMIT}` : '') +
        (!r.before && r.pageSize === REVOKE_PAGE_SIZE ? '  <- LeaseAdmin' : ''),
    );
  }
  const main = results.find((r) => !r.before && r.pageSize === REVOKE_PAGE_SIZE);
  for (const r of results.filter((x) => x.pageSize === REVOKE_PAGE_SIZE)) {
    lines.push(
      `  redis ms by command the scripts called (page ${r.pageSize}${r.before ? ', before' : ''}): ` +
        r.byCommand.map(([c, ms]) => `${c} ${fx(ms)}`).join(', '),
    );
  }
  if (main) {
    lines.push(
      `  holding every one of ${main.count} leases at once would take ${mb(holdAll)} of heap`,
      `  ${main.totalMs <= TARGET_MS ? 'PASS' : 'MISS'} ledger revoke of ${main.count} leases <= ` +
        `${TARGET_MS / 1000} s (${fx(main.totalMs / 1000, 2)} s wall; CPU redis + driver ` +
        `${fx(cpuSum(main) / 1000, 2)} s: about the wall on an idle machine); ` +
        `${main.heapGrowthMid < holdAll / 10 ? 'PASS' : 'MISS'} memory bounded (heap growth ` +
        `${mb(main.heapGrowthMid)} < a tenth of ${mb(holdAll)})`,
    );
  }
  return lines;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  const m = process.argv.slice(2).map((a) => /^--leases=(\d+)$/.exec(a));
  if (m.some((x) => x === null)) throw new Error('usage: npx tsx bench/revoke-ledger.ts [--leases=N]');
  const leases = m[0] ? Number(m[0][1]) : undefined;
  console.log('revoke every active lease of one agent, ledger side (same run):');
  for (const line of await runRevokeLedgerBench(leases === undefined ? {} : { leases })) console.log(line);
}
