/**
 * Where a request's time goes, step by step. A StageTimer is an optional hook (the bench passes
 * one in; production has none, and then each step is called directly). Stage names are the
 * step functions' names, so the bench's breakdown reads as the code does.
 */
import { performance } from 'node:perf_hooks';

export interface StageTimer {
  /** Runs `step`, counting its wall time and its share of the process's CPU under `stage`. */
  time<T>(stage: string, step: () => Promise<T>): Promise<T>;
}

/** `step` under the timer when there is one, else just `step`. */
export function timed<T>(timer: StageTimer | undefined, stage: string, step: () => Promise<T>): Promise<T> {
  return timer === undefined ? step() : timer.time(stage, step);
}

export interface StageFigures {
  stage: string;
  count: number;
  wallUs: number;
  cpuUs: number;
}

/**
 * A StageTimer that attributes the process's CPU (process.cpuUsage) to the stages open while it
 * was spent, in equal shares: with one request in flight that is exactly each stage's CPU; with
 * many, each open stage gets its share. CPU spent while no stage is open (gRPC framing, TLS,
 * other timers) is counted as `outside`. Two getrusage calls per stage: for measuring only.
 */
export class StageClock implements StageTimer {
  /** Off: steps run untimed (the bench turns it on for its breakdown pass only). */
  enabled = true;
  private readonly open = new Map<string, number>();
  private openCount = 0;
  private lastCpuUs = cpuMicros();
  private readonly figures = new Map<string, StageFigures>();
  private outsideCpuUs = 0;

  async time<T>(stage: string, step: () => Promise<T>): Promise<T> {
    if (!this.enabled) return step();
    this.settle();
    this.open.set(stage, (this.open.get(stage) ?? 0) + 1);
    this.openCount++;
    const t0 = performance.now();
    try {
      return await step();
    } finally {
      this.settle();
      this.open.set(stage, (this.open.get(stage) ?? 1) - 1);
      this.openCount--;
      const f = this.figuresOf(stage);
      f.count++;
      f.wallUs += (performance.now() - t0) * 1000;
    }
  }

  /** Totals since the last reset, stages in first-seen order, and the CPU outside every stage. */
  snapshot(): { stages: StageFigures[]; outsideCpuUs: number } {
    this.settle();
    return { stages: [...this.figures.values()].map((f) => ({ ...f })), outsideCpuUs: this.outsideCpuUs };
  }

  reset(): void {
    this.settle();
    this.figures.clear();
    this.outsideCpuUs = 0;
  }

  private settle(): void {
    const now = cpuMicros();
    const spent = now - this.lastCpuUs;
    this.lastCpuUs = now;
    if (this.openCount === 0) {
      this.outsideCpuUs += spent;
      return;
    }
    for (const [stage, n] of this.open) {
      if (n > 0) this.figuresOf(stage).cpuUs += (spent * n) / this.openCount;
    }
  }

  private figuresOf(stage: string): StageFigures {
    let f = this.figures.get(stage);
    if (f === undefined) {
      f = { stage, count: 0, wallUs: 0, cpuUs: 0 };
      this.figures.set(stage, f);
    }
    return f;
  }
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}
