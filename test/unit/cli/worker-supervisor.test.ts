/**
 * WorkerSupervisor (the primary of `serve --workers N`) against fake workers: which worker is
 * started, told what, and when the primary is done. Backoff delays are read from the scheduler it
 * is given (recorded, run by the test), never waited for.
 */
import { strict as assert } from 'node:assert';
import { type ControlOp, WorkerSupervisor, type WorkerHandle } from '../../../src/cli/worker-supervisor.js';

class FakeWorker implements WorkerHandle {
  readonly sent: ControlOp[] = [];
  private exitListener: ((code: number | null, signal: string | null) => void) | undefined;
  private servingListener: ((ports: Record<string, number>) => void) | undefined;

  constructor(
    readonly slot: number,
    readonly pid: number,
  ) {}

  send(op: ControlOp): void {
    this.sent.push(op);
  }
  onExit(listener: (code: number | null, signal: string | null) => void): void {
    this.exitListener = listener;
  }
  onServing(listener: (ports: Record<string, number>) => void): void {
    this.servingListener = listener;
  }
  serve(): void {
    this.servingListener?.({ grpc: 8443 });
  }
  exit(code: number | null, signal: string | null = null): void {
    this.exitListener?.(code, signal);
  }
}

function setup(workers: number) {
  const forked: FakeWorker[] = [];
  const scheduled: Array<{ run: () => void; ms: number }> = [];
  const logs: string[] = [];
  let clock = 0;
  const supervisor = new WorkerSupervisor({
    workers,
    fork: (slot) => {
      const w = new FakeWorker(slot, 1000 + forked.length);
      forked.push(w);
      return w;
    },
    log: (_fields, msg) => logs.push(msg),
    backoff: { initialMs: 100, maxMs: 400, stableMs: 10_000 },
    schedule: (run, ms) => scheduled.push({ run, ms }),
    now: () => clock,
  });
  let code: number | undefined;
  void supervisor.run().then((c) => (code = c));
  const settled = async (): Promise<number | undefined> => {
    await new Promise((resolve) => setImmediate(resolve));
    return code;
  };
  const advance = (ms: number): void => {
    clock += ms;
  };
  const latest = (slot: number): FakeWorker => forked.filter((w) => w.slot === slot).at(-1) as FakeWorker;
  return { supervisor, forked, scheduled, logs, settled, advance, latest };
}

describe('WorkerSupervisor', () => {
  it('forks one worker per slot', () => {
    const t = setup(3);
    assert.deepEqual(
      t.forked.map((w) => w.slot),
      [1, 2, 3],
    );
  });

  it('restarts a crashed worker in its slot after a backoff that doubles up to the ceiling', () => {
    const t = setup(2);
    for (const w of t.forked) w.serve();
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      t.latest(1).exit(null, 'SIGKILL');
      const next = t.scheduled.shift() as { run: () => void; ms: number };
      delays.push(next.ms);
      next.run();
      t.latest(1).serve();
    }
    assert.deepEqual(delays, [100, 200, 400, 400]);
    assert.equal(t.forked.filter((w) => w.slot === 1).length, 5);
    assert.equal(t.forked.filter((w) => w.slot === 2).length, 1, 'the other slot is left alone');
  });

  it('resets the backoff once a worker has served for stableMs', () => {
    const t = setup(1);
    t.latest(1).serve();
    t.latest(1).exit(1);
    (t.scheduled.shift() as { run: () => void }).run();
    t.latest(1).serve();
    t.advance(10_000);
    t.latest(1).exit(1);
    assert.equal((t.scheduled.shift() as { ms: number }).ms, 100);
  });

  it('stops every worker and fails (1) when a worker exits before it ever served', async () => {
    const t = setup(2);
    t.latest(2).serve();
    t.latest(1).exit(1);
    assert.deepEqual(t.latest(2).sent, ['stop']);
    assert.equal(t.scheduled.length, 0, 'no restart');
    assert.equal(await t.settled(), undefined, 'waits for the other worker');
    t.latest(2).exit(0);
    assert.equal(await t.settled(), 1);
  });

  it('SIGTERM sends stop to every worker, a second signal stop-now; done (0) once all exited', async () => {
    const t = setup(2);
    for (const w of t.forked) w.serve();
    t.supervisor.signal('SIGTERM');
    t.supervisor.signal('SIGINT');
    for (const w of t.forked) assert.deepEqual(w.sent, ['stop', 'stop-now']);
    t.latest(1).exit(0);
    assert.equal(await t.settled(), undefined);
    t.latest(2).exit(0);
    assert.equal(await t.settled(), 0);
  });

  it('answers 1 when a worker does not stop cleanly', async () => {
    const t = setup(1);
    t.latest(1).serve();
    t.supervisor.signal('SIGTERM');
    t.latest(1).exit(1);
    assert.equal(await t.settled(), 1);
  });

  it('does not restart a worker that crashed while stopping, nor one whose restart was pending', async () => {
    const t = setup(2);
    for (const w of t.forked) w.serve();
    t.latest(1).exit(null, 'SIGKILL');
    t.supervisor.signal('SIGTERM');
    t.latest(2).exit(0);
    (t.scheduled.shift() as { run: () => void }).run();
    assert.equal(t.forked.length, 2, 'no new fork after the stop');
    assert.equal(await t.settled(), 0);
  });

  it('tells a worker still starting to stop again once it serves', () => {
    const t = setup(1);
    t.supervisor.signal('SIGTERM');
    t.latest(1).serve();
    assert.deepEqual(t.latest(1).sent, ['stop', 'stop']);
  });

  it('SIGHUP sends reload to every worker and stops nothing', async () => {
    const t = setup(2);
    for (const w of t.forked) w.serve();
    t.supervisor.signal('SIGHUP');
    for (const w of t.forked) assert.deepEqual(w.sent, ['reload']);
    assert.equal(await t.settled(), undefined);
  });
});
