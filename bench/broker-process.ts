/**
 * The broker under benchmark, in its own process so its RSS and CPU are its own: a LocalCa serving
 * the real Workload API (one Unix socket per workload), a private redis-server, and the broker
 * started through startBroker() with the production defaults (fsync'd audit file, reaper every
 * second, log level warn: nothing is logged per request at info either).
 *
 * Started by bench/run.ts as `node --import tsx bench/broker-process.ts [config-overrides-json]`
 * (overrides: fsync, logLevel, issuance: the Broker's issuance safeguards, for the ledger rows, and
 * previousHotPath: the hot path before policy slicing, the one-evaluation gate and node signing).
 * Prints one JSON line on stdout once serving ({ pid, grpcPort, httpPort, endpoints, ... }), then
 * shuts everything down when its stdin closes (so a driver that dies never leaves it behind).
 */
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseConfig } from '../src/config/load-config.js';
import { devAgents, devRoles } from '../src/dev/dev-stack.js';
import { spawnRedisServer } from '../src/dev/redis-process.js';
import type { IssuanceSafeguards } from '../src/broker/broker.js';
import { createLogger, startBroker } from '../src/main.js';
import { StageClock, type StageFigures } from '../src/observability/stage-timer.js';
import { packageRoot } from '../src/package-root.js';
import { startBenchWorkloads } from './bench-workloads.js';

export { BROKER_ID, DEMO_AGENT, TRUST_DOMAIN } from './bench-workloads.js';

/** What the process prints on stdout once it serves. */
export interface BrokerProcessInfo {
  pid: number;
  grpcPort: number;
  httpPort: number;
  /** `unix:///...` Workload API endpoint per workload name (broker, demo). */
  endpoints: Record<string, string>;
  auditFile: string;
  /** The broker's private Redis (for INFO commandstats: commands per issuance). */
  redisUrl: string;
}

/** What the process answers on stdin's `stages on|off|snapshot` (one JSON line on stdout). */
export interface StagesReply {
  stages: StageFigures[];
  outsideCpuUs: number;
}

/**
 * `auditSinks` override: required sinks behind the chain file, for the bench's issue-1req and
 * issue-2req rows. `one`: a Redis Stream on the broker's Redis; `two`: that and a batch webhook to a
 * receiver in this process answering 200 (its work is counted with the broker's, as a sidecar's
 * would not be: a conservative figure).
 */
async function benchAuditSinks(
  which: unknown,
  dir: string,
  closers: Array<() => Promise<void> | void>,
): Promise<Array<Record<string, unknown>>> {
  if (which !== 'one' && which !== 'two') return [];
  const stream = { type: 'redis_stream', mode: 'required', key: 'bench:audit', maxLen: 100_000 };
  if (which === 'one') return [stream];
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const hmacKeyFile = join(dir, 'webhook.key');
  writeFileSync(hmacKeyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
  const { port } = receiver.address() as AddressInfo;
  const webhook = {
    type: 'webhook',
    mode: 'required',
    url: `http://127.0.0.1:${port}/audit`,
    format: 'batch',
    batchMaxWaitMs: 0,
    hmacKeyFile,
  };
  return [stream, webhook];
}

async function main(): Promise<void> {
  const overrides = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
  const dir = mkdtempSync(join(tmpdir(), 'svb-bench-'));
  const closers: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const fn of closers.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // keep closing the rest
      }
    }
  };
  const logger = createLogger((overrides.logLevel as string | undefined) ?? 'warn');
  const stages = new StageClock();
  try {
    const redis = await spawnRedisServer({ dir: join(dir, 'redis') });
    closers.push(() => redis.stop());
    const endpoints = await startBenchWorkloads(dir, closers);

    const policyDir = join(dir, 'policies');
    mkdirSync(policyDir);
    for (const f of readdirSync(join(packageRoot(), 'policies'))) {
      if (f.endsWith('.cedar') || f.endsWith('.cedarschema')) {
        copyFileSync(join(packageRoot(), 'policies', f), join(policyDir, f));
      }
    }

    const auditFile = join(dir, 'audit', 'audit.jsonl');
    const sinks = await benchAuditSinks(overrides.auditSinks, dir, closers);
    const config = parseConfig({
      listen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
      workloadApi: { socket: endpoints.broker, firstUpdateTimeoutMs: 10_000 },
      redis: { url: redis.url, prefix: 'bench', store: 'redis' },
      policy: { dir: policyDir },
      audit: { file: auditFile, fsync: overrides.fsync !== false, sinks },
      log: { level: (overrides.logLevel as string | undefined) ?? 'warn' },
      roles: devRoles(),
      // The shipped policies name AgentGroups: the demo agent is in `agents` and `demo`, as in dev.
      agents: devAgents(),
    });
    // The ledger comparison (bench/run.ts) starts variants with issuance safeguards off.
    const issuance = overrides.issuance as IssuanceSafeguards | undefined;
    // Off until the driver's breakdown pass turns it on: the headline rounds run untimed.
    stages.enabled = false;
    const broker = await startBroker({
      config,
      logger,
      stageTimer: stages,
      previousHotPath: overrides.previousHotPath === true,
      ...(issuance ? { issuance } : {}),
    });
    closers.push(() => broker.close());

    const info: BrokerProcessInfo = {
      pid: process.pid,
      grpcPort: broker.grpcPort,
      httpPort: broker.httpPort,
      endpoints,
      auditFile,
      redisUrl: redis.url,
    };
    process.stdout.write(`${JSON.stringify(info)}\n`);
  } catch (err) {
    await close();
    throw err;
  }

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // process.exit (not a natural exit) so --cpu-prof / --heap-prof write their files either way.
    void close().finally(() => process.exit(0));
  };
  // `stages on` (reset and time), `stages off`, `stages snapshot` (answers with a StagesReply line).
  createInterface({ input: process.stdin }).on('line', (line) => {
    const command = line.trim();
    if (command === 'stages on') {
      stages.reset();
      stages.enabled = true;
    } else if (command === 'stages off') stages.enabled = false;
    else if (command === 'stages snapshot') {
      const reply: StagesReply = stages.snapshot();
      process.stdout.write(`${JSON.stringify(reply)}\n`);
    }
  });
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(`broker-process: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
