/**
 * Does anything in the broker keep memory that grows with the number of issuances? The broker in
 * this process (the test harness: real Redis, real gRPC over mTLS, the token backend) takes
 * IssueCredential calls at concurrency 64 (one task per caller, 8 connections) in bursts; after
 * each burst a full GC (twice) and V8's heap in use are printed, and the growth per issuance
 * from the first burst (the warm-up: JIT, caches filling to their bounds) to the last. A cache or
 * map of ours that grows with load shows as bytes per issuance that do not fall towards zero with
 * more bursts; what load adds to RSS beyond it is V8's young generation and malloc (README
 * "Capacity", Memory). The callers share the heap, so read the growth as an upper bound.
 *
 * `npx tsx bench/heap-growth.ts [--bursts=N] [--calls=N]` (defaults 4 bursts of 5,000 after a
 * warm-up of 2,000). Figures are printed, never asserted.
 */
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { startHarness } from '../test/support/broker-harness.js';
import { stopSharedRedis } from '../test/support/redis-server.js';
import type { BrokerClient } from '../src/client/broker-client.js';
import { garbageCollector } from './incident.js';

const CONCURRENCY = 64;
const CONNECTIONS = 8;
const WARM_UP = 2000;

/** `count` issuances by CONCURRENCY callers, each on a task of its own; failures counted. */
async function burst(clients: BrokerClient[], tasks: string[], count: number): Promise<number> {
  let left = count;
  let failed = 0;
  await Promise.all(
    tasks.map(async (task, w) => {
      const client = clients[w % clients.length] as BrokerClient;
      while (left-- > 0) {
        await client
          .issueCredential({ task_id: task, role: 'token/demo', ttl_seconds: 60 })
          .catch(() => failed++);
      }
    }),
  );
  return failed;
}

/** V8's heap in use after two full collections, in bytes. */
function liveHeap(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

export async function runHeapGrowth(bursts = 4, calls = 5000): Promise<string[]> {
  const gc = garbageCollector();
  const h = await startHarness({ config: { log: { level: 'error' } } });
  try {
    const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => h.client('demo')));
    const tasks: string[] = [];
    for (let w = 0; w < CONCURRENCY; w++) {
      const c = clients[w % CONNECTIONS] as BrokerClient;
      tasks.push((await c.beginTask({ environment: 'dev', intent: `heap ${w}`, ttl_seconds: 3600 })).task_id);
    }
    let failed = await burst(clients, tasks, WARM_UP);
    const first = liveHeap(gc);
    const mb = (b: number): string => `${(b / 1048576).toFixed(2)} MB`;
    const lines = [
      `  load average ${loadavg()[0]?.toFixed(1)}; after a warm-up of ${WARM_UP}: V8 heap in use ${mb(first)}`,
    ];
    for (let i = 1; i <= bursts; i++) {
      failed += await burst(clients, tasks, calls);
      const now = liveHeap(gc);
      lines.push(
        `  after +${i * calls} issuances: ${mb(now)} (${((now - first) / (i * calls)).toFixed(1)} bytes per issuance since the warm-up)`,
      );
    }
    if (failed > 0) lines.push(`  ${failed} issuance(s) failed`);
    return lines;
  } finally {
    await h.close();
    await stopSharedRedis();
  }
}

function parseArgs(argv: readonly string[]): [number, number] {
  let bursts = 4;
  let calls = 5000;
  for (const arg of argv) {
    const m = /^--(bursts|calls)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown option ${arg} (see the header of bench/heap-growth.ts)`);
    if (m[1] === 'bursts') bursts = Math.max(1, Number(m[2]));
    else calls = Math.max(1, Number(m[2]));
  }
  return [bursts, calls];
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(invokedPath).href) {
  console.log('heap growth: V8 heap in use after full GCs, between bursts of IssueCredential (one process):');
  for (const line of await runHeapGrowth(...parseArgs(process.argv.slice(2)))) console.log(line);
}
