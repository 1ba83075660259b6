/** `svid-broker serve`: start, then shut down gracefully on SIGTERM/SIGINT. */
import type { BrokerConfig } from '../config/schema.js';
import { createLogger, startBroker, type RunningBroker } from '../main.js';

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

export async function runServe(config: Readonly<BrokerConfig>): Promise<number> {
  const logger = createLogger(config.log.level);
  const running: RunningBroker = await startBroker({ config, logger });
  return untilSignal(
    () => running.close(),
    (msg) => logger.info(msg),
  );
}
