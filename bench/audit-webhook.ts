/**
 * What each audit sink costs an audit write, beside the plain chain file, in one run: the real
 * FileChainSink (fsync'd, group commit) behind the AuditPipeline, with
 *
 *   file                    no follower (the baseline)
 *   + webhook best_effort   batch format: writes do not wait; the POSTs (and the spool) run beside
 *   + webhook required      batch format, batchMaxWaitMs 0: every write waits for the receiver's 2xx
 *   + webhook required str. structured format: one POST per record, in order
 *   + redis_stream best_eff. XADD per record, one MULTI per batch, to a private redis-server
 *   + redis_stream required  the same, every write waiting for the EXEC
 * (the SSF transmitter sends revocation records only: its cost is per revocation, not per record)
 *
 * writes in closed loops at concurrency 1 and 64, the set-ups interleaved round by round. The
 * receiver is a local node:http server answering 200 in this same process (so its work is in the
 * figures too). "delivered/s" is how fast the receiver got the records: the run's records over the
 * time until the last one was acknowledged. Figures are printed, never asserted.
 * `npx tsx bench/audit-webhook.ts [--seconds=N] [--rounds=N]` runs this section alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { FileChainSink } from '../src/audit/file-chain-sink.js';
import { AuditPipeline } from '../src/audit/pipeline.js';
import { Redis } from 'ioredis';
import { RedisStreamSink } from '../src/audit/sinks/redis-stream-sink.js';
import { WebhookSink } from '../src/audit/sinks/webhook-sink.js';
import { spawnRedisServer } from '../src/dev/redis-process.js';

const SETUPS = [
  'file',
  '+ webhook best_effort',
  '+ webhook required',
  '+ webhook required str.',
  '+ redis_stream best_effort',
  '+ redis_stream required',
] as const;
type Setup = (typeof SETUPS)[number];

interface Rig {
  setup: Setup;
  pipeline: AuditPipeline;
  sink: WebhookSink | RedisStreamSink | undefined;
}

/** Records the sink still has to deliver (the webhook's spool, the stream's queue). */
function undelivered(sink: Rig['sink']): number {
  if (sink === undefined) return 0;
  return sink instanceof WebhookSink ? sink.spooled : sink.backlog;
}

interface Row {
  setup: Setup;
  concurrency: number;
  writesPerSecond: number;
  deliveredPerSecond: number | undefined;
  p50: number;
  p99: number;
}

async function startReceiver(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
}

async function startRig(setup: Setup, dir: string, url: string, redis: Redis): Promise<Rig> {
  const keeper = await FileChainSink.open(join(dir, `${setup.replace(/\W+/g, '-')}.jsonl`), {
    source: 'spiffe://example.org/broker',
  });
  const sink = setup === 'file' ? undefined : makeSink(setup, dir, url, redis);
  return { setup, pipeline: new AuditPipeline(keeper, sink ? [sink] : []), sink };
}

function makeSink(setup: Setup, dir: string, url: string, redis: Redis): WebhookSink | RedisStreamSink {
  const mode = setup.endsWith('best_effort') ? 'best_effort' : 'required';
  if (setup.startsWith('+ redis_stream')) {
    return new RedisStreamSink({ name: 'redis_stream', mode, redis, key: `bench:${mode}`, maxLen: 100_000 });
  }
  return new WebhookSink({
    name: 'webhook',
    mode,
    receiver: { url: new URL(url) },
    format: setup === '+ webhook required str.' ? 'structured' : 'batch',
    hmacKey: Buffer.from('bench-webhook-hmac-key-0123456789'),
    spoolDir: join(dir, `spool-${setup.replace(/\W+/g, '-')}`),
    batchMaxRecords: 100,
    batchMaxWaitMs: 0,
    timeoutMs: 5000,
  });
}

/** Closed-loop writes for `ms`; the latency of each, and how long until the receiver had them all. */
async function writeFor(
  rig: Rig,
  concurrency: number,
  ms: number,
): Promise<{ latencies: number[]; drainedMs: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await rig.pipeline.write({
          type: 'credential.issued',
          agent: 'spiffe://example.org/agents/demo',
          worker: w,
        });
        latencies.push(performance.now() - t0);
      }
    }),
  );
  while (undelivered(rig.sink) > 0) await new Promise((r) => setTimeout(r, 1));
  return { latencies, drainedMs: performance.now() - start };
}

export async function runAuditWebhookBench(
  opts: { seconds?: number; rounds?: number } = {},
): Promise<string[]> {
  const seconds = opts.seconds ?? 2;
  const rounds = opts.rounds ?? 2;
  const dir = mkdtempSync(join(tmpdir(), 'svb-bench-webhook-'));
  const receiver = await startReceiver();
  const redisServer = await spawnRedisServer({ dir: join(dir, 'redis') });
  const redis = new Redis(redisServer.url);
  const rigs: Rig[] = [];
  try {
    for (const setup of SETUPS) rigs.push(await startRig(setup, dir, receiver.url, redis));
    const rows: Row[] = [];
    for (const concurrency of [1, 64]) {
      for (const rig of rigs) await writeFor(rig, concurrency, 200); // warm-up
      const samples = new Map<Setup, { latencies: number[]; drainedMs: number }>(
        SETUPS.map((s) => [s, { latencies: [], drainedMs: 0 }]),
      );
      for (let round = 0; round < rounds; round += 1) {
        for (const rig of rigs) {
          const { latencies, drainedMs } = await writeFor(rig, concurrency, (seconds * 1000) / rounds);
          const s = samples.get(rig.setup) as { latencies: number[]; drainedMs: number };
          s.latencies.push(...latencies);
          s.drainedMs += drainedMs;
        }
      }
      for (const setup of SETUPS) {
        const { latencies, drainedMs } = samples.get(setup) as { latencies: number[]; drainedMs: number };
        latencies.sort((a, b) => a - b);
        rows.push({
          setup,
          concurrency,
          writesPerSecond: latencies.length / seconds,
          deliveredPerSecond: setup === 'file' ? undefined : latencies.length / (drainedMs / 1000),
          p50: quantile(latencies, 0.5),
          p99: quantile(latencies, 0.99),
        });
      }
    }
    return report(rows);
  } finally {
    for (const rig of rigs) await rig.pipeline.close();
    redis.disconnect();
    await redisServer.stop();
    await new Promise((resolve) => receiver.server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
}

function report(rows: Row[]): string[] {
  const lines = [
    "audit writes (fsync'd chain file + AuditPipeline) with each sink (webhook, Redis Stream), beside the file alone (same run,",
    'local receiver in this process):',
    `  ${'setup'.padEnd(26)}${'conc'.padStart(5)}${'writes/s'.padStart(11)}${'vs file'.padStart(9)}${'delivered/s'.padStart(13)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}`,
  ];
  for (const row of rows) {
    const base = rows.find((r) => r.setup === 'file' && r.concurrency === row.concurrency) as Row;
    lines.push(
      `  ${row.setup.padEnd(26)}${String(row.concurrency).padStart(5)}${row.writesPerSecond.toFixed(0).padStart(11)}` +
        `${`${(row.writesPerSecond / base.writesPerSecond).toFixed(2)}x`.padStart(9)}` +
        `${(row.deliveredPerSecond === undefined ? '-' : row.deliveredPerSecond.toFixed(0)).padStart(13)}` +
        `${row.p50.toFixed(2).padStart(9)}${row.p99.toFixed(2).padStart(9)}`,
    );
  }
  return lines;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name: string): number | undefined => {
    const found = process.argv.find((a) => a.startsWith(`--${name}=`));
    return found === undefined ? undefined : Number(found.split('=')[1]);
  };
  const seconds = arg('seconds');
  const rounds = arg('rounds');
  runAuditWebhookBench({
    ...(seconds !== undefined ? { seconds } : {}),
    ...(rounds !== undefined ? { rounds } : {}),
  })
    .then((lines) => console.log(lines.join('\n')))
    .catch((err: unknown) => {
      console.error(err);
      process.exit(1);
    });
}
