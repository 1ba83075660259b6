/**
 * The primary of `svid-broker serve --workers N`: keeps N worker processes (each a full broker
 * replica) running. A worker that exits while the primary is not stopping is started again in its
 * slot after a backoff that doubles with each quick crash (reset once a worker has served for
 * `stableMs`); a worker that exits before it ever served on its first start means the broker cannot
 * start, so the primary stops the others and fails. SIGTERM/SIGINT become `stop` (drain and exit)
 * to every worker, a second one `stop-now`; SIGHUP becomes `reload`. The primary's promise settles
 * once every worker has exited after a stop.
 *
 * Process plumbing (node:cluster) is the caller's: this file sees workers through WorkerHandle, so
 * the policy is tested without processes.
 */

/** What the primary tells a worker. */
export type ControlOp = 'stop' | 'stop-now' | 'reload';

/** One forked worker, as the supervisor sees it. */
export interface WorkerHandle {
  readonly pid: number | undefined;
  send(op: ControlOp): void;
  /** Called once, when the worker's process has exited. */
  onExit(listener: (code: number | null, signal: string | null) => void): void;
  /** Called when the worker reports it serves. */
  onServing(listener: (ports: Record<string, number>) => void): void;
}

export interface Backoff {
  /** The delay before the first restart of a slot. */
  initialMs: number;
  /** Ceiling of the doubling delay. */
  maxMs: number;
  /** A worker that served this long resets its slot's delay. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 30_000, stableMs: 60_000 };

export interface SupervisorDeps {
  workers: number;
  /** Starts the worker of `slot` (1..workers). */
  fork(slot: number): WorkerHandle;
  log(fields: Record<string, unknown>, msg: string): void;
  backoff?: Backoff;
  /** Defaults to setTimeout; tests pass a recorder. */
  schedule?: (run: () => void, ms: number) => void;
  now?: () => number;
}

interface Slot {
  worker?: WorkerHandle;
  /** The slot's worker has served at least once (since the primary started). */
  served: boolean;
  servingSince?: number;
  nextDelayMs: number;
}

export class WorkerSupervisor {
  private readonly slots = new Map<number, Slot>();
  private readonly backoff: Backoff;
  private readonly schedule: (run: () => void, ms: number) => void;
  private readonly now: () => number;
  private stopping = false;
  private failed = false;
  private settle: ((code: number) => void) | undefined;

  constructor(private readonly deps: SupervisorDeps) {
    this.backoff = deps.backoff ?? DEFAULT_BACKOFF;
    this.schedule = deps.schedule ?? ((run, ms) => void setTimeout(run, ms));
    this.now = deps.now ?? Date.now;
  }

  /** Forks every worker; resolves with the exit code once all have exited after a stop. */
  run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.settle = resolve));
    for (let slot = 1; slot <= this.deps.workers; slot++) {
      this.slots.set(slot, { served: false, nextDelayMs: this.backoff.initialMs });
      this.start(slot);
    }
    return done;
  }

  /** A signal the primary received: SIGTERM/SIGINT stop (the second one at once), SIGHUP reloads. */
  signal(name: 'SIGTERM' | 'SIGINT' | 'SIGHUP'): void {
    if (name === 'SIGHUP') {
      this.deps.log({ signal: name }, 'reloading the policy directory in every worker');
      this.broadcast('reload');
      return;
    }
    const op: ControlOp = this.stopping ? 'stop-now' : 'stop';
    this.deps.log({ signal: name, workers: this.running().length }, `${name}: ${op} to every worker`);
    this.stopping = true;
    this.broadcast(op);
    this.settleIfDone();
  }

  private start(slot: number): void {
    const state = this.slots.get(slot) as Slot;
    const worker = this.deps.fork(slot);
    state.worker = worker;
    state.servingSince = undefined;
    this.deps.log({ worker: slot, pid: worker.pid }, 'worker started');
    worker.onServing((ports) => {
      state.served = true;
      state.servingSince = this.now();
      this.deps.log({ worker: slot, pid: worker.pid, ...ports }, 'worker serving');
      // A stop that arrived while it was starting: it has its listener now, tell it again.
      if (this.stopping) worker.send('stop');
    });
    worker.onExit((code, signal) => this.exited(slot, worker, code, signal));
  }

  private exited(slot: number, worker: WorkerHandle, code: number | null, signal: string | null): void {
    const state = this.slots.get(slot) as Slot;
    if (state.worker === worker) state.worker = undefined;
    const fields = { worker: slot, pid: worker.pid, code, signal };
    if (this.stopping) {
      if (code !== 0) this.failed = true;
      this.deps.log(fields, 'worker stopped');
      this.settleIfDone();
      return;
    }
    if (!state.served) {
      // It never served: the configuration or an environment problem every restart would repeat.
      this.deps.log(fields, 'worker exited before it served: stopping');
      this.failed = true;
      this.stopping = true;
      this.broadcast('stop');
      this.settleIfDone();
      return;
    }
    if (state.servingSince !== undefined && this.now() - state.servingSince >= this.backoff.stableMs) {
      state.nextDelayMs = this.backoff.initialMs;
    }
    const delayMs = state.nextDelayMs;
    state.nextDelayMs = Math.min(this.backoff.maxMs, delayMs * 2);
    this.deps.log({ ...fields, restartInMs: delayMs }, 'worker exited: restarting');
    this.schedule(() => {
      if (!this.stopping) this.start(slot);
      else this.settleIfDone();
    }, delayMs);
  }

  private running(): WorkerHandle[] {
    return [...this.slots.values()].flatMap((s) => (s.worker ? [s.worker] : []));
  }

  private broadcast(op: ControlOp): void {
    for (const worker of this.running()) worker.send(op);
  }

  private settleIfDone(): void {
    if (!this.stopping || this.running().length > 0) return;
    this.settle?.(this.failed ? 1 : 0);
    this.settle = undefined;
  }
}
