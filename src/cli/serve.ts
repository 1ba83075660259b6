/** `svid-broker serve`: start, then shut down gracefully on SIGTERM/SIGINT. */
import { loadConfig } from '../config/load-config.js';
import type { BrokerConfig } from '../config/schema.js';
import cluster from 'node:cluster';
import { createLogger, startBroker, type RunningBroker } from '../main.js';
import { type Command, type Parsed, str, usageError } from './command.js';
import { parseWorkers, runPrimary, runWorker, WORKER_SLOT_ENV } from './serve-workers.js';

/** What `ps`, `pidof svid-broker` and `pkill -HUP svid-broker` see instead of `node`. */
export const PROCESS_TITLE = 'svid-broker';

/** Resolves when a signal arrives and `stop` finished; a second signal exits at once. */
export function untilSignal(stop: () => Promise<void>, log: (msg: string) => void): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log(`${signal} again: exiting now`);
        process.exit(130);
      }
      stopping = true;
      log(`${signal}: shutting down gracefully`);
      stop().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** SIGHUP re-reads the policy directory; a bad set keeps the current one (and is audited). */
export function onReloadSignal(running: RunningBroker, log: (msg: string) => void): void {
  process.on('SIGHUP', () => {
    const r = running.reloadPolicy();
    log(r.ok ? `SIGHUP: policy set ${r.digest}` : `SIGHUP: policy reload failed, still serving ${r.digest}`);
  });
}

export async function runServe(config: Readonly<BrokerConfig>): Promise<number> {
  process.title = PROCESS_TITLE;
  const logger = createLogger(config.log.level);
  const running: RunningBroker = await startBroker({ config, logger });
  onReloadSignal(running, (msg) => logger.info(msg));
  return untilSignal(
    () => running.close(),
    (msg) => logger.info(msg),
  );
}

/** One process, or with `--workers N` the primary of N worker processes (or one of those workers). */
async function serveCommand(parsed: Parsed): Promise<number> {
  const config = loadConfig();
  if (cluster.isWorker) return runWorker(config, Number(process.env[WORKER_SLOT_ENV] ?? '1'));
  const workers = str(parsed, 'workers');
  const metricsListen = str(parsed, 'metrics-listen') || undefined;
  if (!workers) {
    if (metricsListen) throw usageError('--metrics-listen needs --workers');
    return runServe(config);
  }
  return runPrimary(config, parseWorkers(workers, config), metricsListen);
}

export const SERVE_COMMANDS: Command[] = [
  {
    path: 'serve',
    summary:
      'Run the broker. Configuration: the YAML file at SVID_BROKER_CONFIG, then SVID_BROKER_* environment\n' +
      'overrides (see the README). SIGTERM/SIGINT drain and stop; SIGHUP reloads the policy directory\n' +
      '(kill -HUP $(pidof svid-broker)).',
    flags: {
      workers: {
        type: 'string',
        value: 'N',
        help: 'run N worker processes on the shared ports and Redis (see the README), supervised',
      },
      'metrics-listen': {
        type: 'string',
        value: 'HOST:PORT',
        help: 'with --workers: every worker\'s metrics on one port (GET /metrics, labelled worker="N")',
      },
    },
    notes:
      'exit codes: 0 stopped by a signal, 1 could not start (the reason is printed; with --workers: a worker\n' +
      'exited before it served, or one failed to stop cleanly), 2 a bad flag',
    run: serveCommand,
  },
];
