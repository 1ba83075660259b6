/**
 * `svid-broker serve --workers N`: N processes (node:cluster) sharing the gRPC, ops HTTP and
 * AuthZEN ports, each a full broker replica on the shared Redis with the same SPIFFE ID. What
 * differs per worker: its audit chain file (`<audit.file>.w<slot>`: a hash chain has one writer),
 * its metrics (every series labelled `worker="<slot>"`) and its process title. The primary only
 * supervises (WorkerSupervisor) and, with `--metrics-listen`, serves every worker's metrics on one
 * port; it opens no broker port itself.
 */
import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { BrokerConfig } from '../config/schema.js';
import { createLogger, startBroker, type RunningBroker } from '../main.js';
import { usageError } from './command.js';
import { type ControlOp, WorkerSupervisor, type WorkerHandle } from './worker-supervisor.js';

/** Set by the primary in each worker's environment: the worker's slot, 1..N (kept across restarts). */
export const WORKER_SLOT_ENV = 'SVID_BROKER_WORKER';
export const MAX_WORKERS = 64;
const TITLE = 'svid-broker';

type Metrics = MetricObjectWithValues<MetricValue<string>>[];

/** Messages between the primary and a worker (node:cluster IPC). */
type ToWorker = { svb: 'control'; op: ControlOp } | { svb: 'metrics'; id: number };
type ToPrimary =
  { svb: 'serving'; ports: Record<string, number> } | { svb: 'metrics'; id: number; metrics: Metrics };

/** Our messages carry `svb`; anything else on the channel (node:cluster's own) is not ours. */
function ours<T extends { svb: string }>(msg: unknown): T | undefined {
  const isOurs =
    typeof msg === 'object' && msg !== null && typeof (msg as { svb?: unknown }).svb === 'string';
  return isOurs ? (msg as T) : undefined;
}

/** `--workers N`: a whole number from 1 to MAX_WORKERS; more than one needs the shared Redis store. */
export function parseWorkers(text: string, config: Readonly<BrokerConfig>): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > MAX_WORKERS) {
    throw usageError(`--workers must be a whole number from 1 to ${MAX_WORKERS}, not '${text}'`);
  }
  if (n > 1 && config.redis.store !== 'redis') {
    throw usageError(
      `--workers ${n} needs redis.store: redis; the in-process '${config.redis.store}' store cannot be ` +
        'shared between processes (each worker would hold its own tasks, leases and quarantines)',
    );
  }
  return n;
}

/** A worker's configuration: its own audit chain file; one HMAC key for every worker's identifiers. */
export function workerConfig(config: Readonly<BrokerConfig>, slot: number): Readonly<BrokerConfig> {
  const audit = {
    ...config.audit,
    file: `${config.audit.file}.w${slot}`,
    hmacKeyFile: config.audit.hmacKeyFile ?? `${config.audit.file}.hmac-key`,
  };
  return Object.freeze({ ...config, audit });
}

// ---------------------------------------------------------------------------------------------------------
// The primary
// ---------------------------------------------------------------------------------------------------------

/** Forks the workers, forwards signals, restarts crashed workers; resolves with the exit code. */
export async function runPrimary(
  config: Readonly<BrokerConfig>,
  workers: number,
  metricsListen: string | undefined,
): Promise<number> {
  process.title = TITLE;
  const logger = createLogger(config.log.level).child({ role: 'primary' });
  const supervisor = new WorkerSupervisor({
    workers,
    fork: forkWorker,
    log: (fields, msg) => logger.info(fields, msg),
  });
  const metrics = metricsListen ? await serveClusterMetrics(metricsListen, logger) : undefined;
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const handlers = signals.map((s) => [s, () => supervisor.signal(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  try {
    return await supervisor.run();
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
    metrics?.close();
    logger.info('every worker has exited');
  }
}

function forkWorker(slot: number): WorkerHandle {
  const worker: Worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot) });
  return {
    pid: worker.process.pid,
    send(op) {
      if (worker.isConnected()) worker.send({ svb: 'control', op } satisfies ToWorker);
    },
    onExit: (listener) => void worker.once('exit', (code, signal) => listener(code, signal)),
    onServing(listener) {
      worker.on('message', (msg: unknown) => {
        const m = ours<ToPrimary>(msg);
        if (m?.svb === 'serving') listener(m.ports);
      });
    },
  };
}

/** GET /metrics on `listen`: every connected worker's registry, one exposition (series keep `worker`). */
async function serveClusterMetrics(listen: string, logger: Logger): Promise<Server> {
  let nextId = 0;
  const collect = async (): Promise<string> => {
    const id = nextId++;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w?.isConnected());
    const all = await Promise.all(workers.map((w) => askMetrics(w, id)));
    return AggregatorRegistry.aggregate(all.filter((m): m is Metrics => m !== undefined)).metrics();
  };
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    collect().then(
      (text) => res.writeHead(200, { 'content-type': AggregatorRegistry.PROMETHEUS_CONTENT_TYPE }).end(text),
      () => res.writeHead(500).end('metrics unavailable\n'),
    );
  });
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  logger.info({ metrics: typeof address === 'object' && address ? address.port : port }, 'cluster metrics');
  return server;
}

/** One worker's metrics, or undefined when it does not answer within 2 s (it is restarting). */
function askMetrics(worker: Worker, id: number): Promise<Metrics | undefined> {
  return new Promise((resolve) => {
    const onMessage = (msg: unknown): void => {
      const m = ours<ToPrimary>(msg);
      if (m?.svb === 'metrics' && m.id === id) finish(m.metrics);
    };
    const finish = (m: Metrics | undefined): void => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      resolve(m);
    };
    const timer = setTimeout(() => finish(undefined), 2000);
    worker.on('message', onMessage);
    worker.send({ svb: 'metrics', id } satisfies ToWorker);
  });
}

function splitListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  const port = Number(listen.slice(at + 1));
  if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw usageError(`--metrics-listen must be HOST:PORT, not '${listen}'`);
  }
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port };
}

// ---------------------------------------------------------------------------------------------------------
// A worker
// ---------------------------------------------------------------------------------------------------------

/**
 * Runs one worker: a broker on `<audit.file>.w<slot>`, told what to do by the primary over IPC.
 * SIGTERM/SIGINT sent to the worker itself also drain it (a terminal's Ctrl-C reaches the whole
 * process group); SIGHUP is the primary's to forward, so a hang-up reloads once.
 */
export async function runWorker(config: Readonly<BrokerConfig>, slot: number): Promise<number> {
  process.title = `${TITLE}-w${slot}`;
  const logger = createLogger(config.log.level).child({ worker: slot });
  let running: RunningBroker | undefined;
  let askStop = (): void => {};
  const stopAsked = new Promise<void>((resolve) => (askStop = resolve));
  const onMessage = (msg: unknown): void => {
    const m = ours<ToWorker>(msg);
    if (!m) return;
    if (m.svb === 'metrics') void answerMetrics(running, m.id);
    else if (m.op === 'stop') askStop();
    else if (m.op === 'stop-now') process.exit(130);
    else if (running) reload(running, logger);
  };
  const ignore = (): void => {};
  const listeners = [
    ['message', onMessage],
    ['SIGTERM', askStop],
    ['SIGINT', askStop],
    ['SIGHUP', ignore],
  ] as const;
  for (const [event, fn] of listeners) process.on(event, fn);
  try {
    running = await startBroker({
      config: workerConfig(config, slot),
      logger,
      metricLabels: { worker: String(slot) },
    });
    send({ svb: 'serving', ports: { grpc: running.grpcPort, http: running.httpPort } });
    await stopAsked;
    logger.info('draining');
    const code = await running.close().then(
      () => 0,
      () => 1,
    );
    logger.info({ code }, 'broker closed');
    return code;
  } finally {
    for (const [event, fn] of listeners) process.off(event, fn);
    // The IPC channel would keep this process alive. cluster.worker.disconnect() marks the exit as
    // intended, so the process ends with its own exit code (process.disconnect() would make
    // node:cluster exit with 0 at once, hiding a failed start from the primary).
    cluster.worker?.disconnect();
  }
}

async function answerMetrics(running: RunningBroker | undefined, id: number): Promise<void> {
  if (running) send({ svb: 'metrics', id, metrics: await running.registry.getMetricsAsJSON() });
}

function reload(running: RunningBroker, logger: Logger): void {
  const r = running.reloadPolicy();
  logger.info(
    r.ok ? `SIGHUP: policy set ${r.digest}` : `SIGHUP: policy reload failed, still serving ${r.digest}`,
  );
}

function send(msg: ToPrimary): void {
  if (process.connected && process.send) process.send(msg);
}
