/**
 * The loop the reaper and the revocation worker share: run at once (to catch up on what happened
 * while nothing ran), then every intervalMs; a run in flight is joined, never doubled; stop() waits
 * for it. The timer never keeps the process alive on its own.
 */
export interface PeriodicJobOptions<T> {
  intervalMs: number;
  /** Called after each scheduled run that resolved. */
  onResult: (result: T) => void;
  /** Called when a scheduled run rejected; the next run tries again. */
  onError: (err: unknown) => void;
}

export class PeriodicJob<T> {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<T> | undefined;
  private running = false;
  private stopping = false;

  constructor(
    private readonly run: () => Promise<T>,
    private readonly opts: PeriodicJobOptions<T>,
  ) {}

  /** True once stop() was called: long runs check it between batches. */
  get isStopping(): boolean {
    return this.stopping;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = false;
    void this.tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
  }

  /** Runs now, or joins the run in flight. */
  once(): Promise<T> {
    if (!this.inFlight) {
      this.inFlight = this.run().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  private async tick(): Promise<void> {
    try {
      this.opts.onResult(await this.once());
    } catch (err) {
      this.opts.onError(err);
    }
    if (this.running) {
      this.timer = setTimeout(() => void this.tick(), this.opts.intervalMs);
      this.timer.unref();
    }
  }
}
