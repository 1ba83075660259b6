/**
 * The Vault backend's cost through the broker: IssueCredential `vault/db-readonly` (a dynamic
 * database secret) over mTLS against a direct node-vault read of `database/creds/readonly` at the
 * same Vault, in the same run, at concurrency 1 and 16.
 *
 * No Vault server runs here: both sides talk to the in-process Vault emulator
 * (test/support/vault-emulator), and the broker is the in-process integration harness (real Redis,
 * Cedar, fsync'd audit, debug logs captured in memory). Everything shares one process and one event
 * loop, so the figures are the broker's added cost over this emulator on this machine, not what a
 * deployed broker in front of a real Vault would do.
 *
 * The emulator keeps every lease in memory: nothing is revoked while measuring, and the tasks (one
 * per broker worker) are ended once at the end, which revokes their leases at the emulator.
 *
 * `npx tsx bench/vault.ts`, or through `npm run bench` (skip with `--no-vault`). Figures are
 * printed, never asserted.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import nodeVault from 'node-vault';
import type { BrokerClient } from '../src/client/broker-client.js';
import { stopSharedRedis } from '../test/support/redis-server.js';
import { startVaultBroker, type VaultBroker } from '../test/support/vault-broker.js';

const CONCURRENCIES = [1, 16] as const;
const WARMUP_MS = 500;
const MEASURE_MS = 3000;

export type Op = (worker: number) => Promise<void>;

export interface Result {
  scenario: 'direct' | 'broker';
  concurrency: number;
  count: number;
  rps: number;
  p50: number;
  p99: number;
}

export async function runVaultBench(): Promise<string[]> {
  let stack: VaultBroker | undefined;
  try {
    stack = await startVaultBroker({ timeoutMs: 5000 });
    const { vault, h } = stack;

    const direct = nodeVault({
      endpoint: vault.url,
      token: vault.rootToken,
      requestOptions: { timeout: 5000 },
    });
    const demo: BrokerClient = await h.client('demo', { timeoutMs: 60_000 });
    const maxConc = Math.max(...CONCURRENCIES);
    const tasks: string[] = [];
    for (let w = 0; w < maxConc; w++) {
      tasks.push((await demo.beginTask({ environment: 'dev', intent: `vault bench worker ${w}` })).task_id);
    }

    const directOp: Op = async () => {
      const res = (await direct.read('database/creds/readonly')) as { data?: { username?: string } };
      if (!res.data?.username) throw new Error('direct read returned no username');
    };
    const brokerOp: Op = async (worker) => {
      const res = await demo.issueCredential({
        task_id: tasks[worker] as string,
        role: 'vault/db-readonly',
        ttl_seconds: 300,
      });
      if (res.status !== 'ISSUED' || !res.credential?.data.username) {
        throw new Error(`IssueCredential answered ${res.status} without a username`);
      }
    };

    const began = performance.now();
    const results: Result[] = [];
    for (const concurrency of CONCURRENCIES) {
      await runFor(concurrency, WARMUP_MS, directOp);
      await runFor(concurrency, WARMUP_MS, brokerOp);
      results.push(summarize('direct', concurrency, await runFor(concurrency, MEASURE_MS, directOp)));
      results.push(summarize('broker', concurrency, await runFor(concurrency, MEASURE_MS, brokerOp)));
    }
    const measuredS = (performance.now() - began) / 1000;

    const t0 = performance.now();
    let revoked = 0;
    for (const task_id of tasks) {
      revoked += (await demo.endTask({ task_id, reason: 'bench done' })).revoked.length;
    }
    const endS = (performance.now() - t0) / 1000;

    const pad = (s: string, n: number): string => s.padStart(n);
    const fx = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
    const lines = [
      'in-process Vault emulator and in-process broker harness (real Redis, Cedar, fsync audit), one',
      'process and event loop: the broker/direct ratio is the broker’s added cost over this emulator,',
      'not a deployed broker in front of a real Vault.',
      'direct = node-vault read database/creds/readonly with the root token (emulator)',
      'broker = IssueCredential vault/db-readonly, ttl 300, over mTLS (one task per worker)',
      `${WARMUP_MS} ms warm-up then ${MEASURE_MS / 1000} s per scenario and concurrency`,
      '',
      `  ${'scenario'.padEnd(8)}${pad('conc', 6)}${pad('req/s', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('calls', 8)}`,
    ];
    for (const r of results) {
      lines.push(
        `  ${r.scenario.padEnd(8)}${pad(String(r.concurrency), 6)}${pad(fx(r.rps, 0), 10)}` +
          `${pad(fx(r.p50), 9)}${pad(fx(r.p99), 9)}${pad(String(r.count), 8)}`,
      );
    }
    lines.push('');
    for (const concurrency of CONCURRENCIES) {
      const d = results.find((r) => r.scenario === 'direct' && r.concurrency === concurrency);
      const b = results.find((r) => r.scenario === 'broker' && r.concurrency === concurrency);
      if (!d || !b) continue;
      lines.push(
        `  ratio (broker/direct) at concurrency ${concurrency}: throughput ${fx(b.rps / d.rps)}x, ` +
          `p50 ${fx(b.p50 / d.p50)}x, p99 ${fx(b.p99 / d.p99)}x`,
      );
    }
    lines.push(
      `  measured in ${fx(measuredS, 1)} s; ending ${tasks.length} tasks revoked ${revoked} broker leases ` +
        `at the emulator in ${fx(endS, 1)} s`,
    );
    return lines;
  } finally {
    await stack?.close();
    await stopSharedRedis();
  }
}

/** `concurrency` workers each calling `op` back to back until `ms` is up; latencies in ms. */
export async function runFor(
  concurrency: number,
  ms: number,
  op: Op,
): Promise<{ lat: number[]; elapsedMs: number }> {
  const lat: number[] = [];
  const start = performance.now();
  const until = start + ms;
  const worker = async (w: number): Promise<void> => {
    while (performance.now() < until) {
      const t0 = performance.now();
      await op(w);
      lat.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return { lat, elapsedMs: performance.now() - start };
}

export function summarize(
  scenario: Result['scenario'],
  concurrency: number,
  s: { lat: number[]; elapsedMs: number },
): Result {
  const sorted = [...s.lat].sort((a, b) => a - b);
  return {
    scenario,
    concurrency,
    count: sorted.length,
    rps: (sorted.length / s.elapsedMs) * 1000,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
  };
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  for (const line of await runVaultBench()) console.log(line);
}
