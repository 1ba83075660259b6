/**
 * `svid-broker serve --workers 2` as an operator runs it (a child process from the checkout): two
 * workers share the gRPC port and serve credentials from the shared Redis, each writes its own
 * audit chain (`<audit.file>.w<N>`), the primary serves both workers' metrics on one port, a worker
 * killed with SIGKILL is started again in its slot, and SIGTERM to the primary stops every worker
 * and then the primary (exit 0). `--workers 2` on the in-process store is refused (exit 2).
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { verifyAuditFile } from '../../src/audit/verify-file.js';
import { eventually, startHarness, type Harness } from '../support/broker-harness.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface LogLine {
  msg?: string;
  worker?: number;
  pid?: number;
  grpc?: number;
  metrics?: number;
  role?: string;
}

/** The primary as a child process, and every JSON log line it and its workers printed. */
class Primary {
  readonly lines: LogLine[] = [];
  /** Everything on stderr, log lines or not. */
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(configFile: string, args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', ...args], {
      cwd: REPO,
      env: { ...process.env, SVID_BROKER_CONFIG: configFile },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const closed = new Promise<void>((resolve) => this.child.stderr?.once('end', () => resolve()));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => void closed.then(() => resolve(code))),
    );
    createInterface({ input: this.child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      this.stderr += `${line}\n`;
      try {
        this.lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** The primary's `worker serving` lines, in order. */
  serving(): LogLine[] {
    return this.lines.filter((l) => l.role === 'primary' && l.msg === 'worker serving');
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('integration: svid-broker serve --workers', function () {
  this.timeout(90_000);
  let h: Harness;
  let primary: Primary | undefined;

  before(async () => {
    h = await startHarness();
  });
  afterEach(function () {
    // What the processes said, when a step failed: the assertion alone rarely tells why.
    if (this.currentTest?.state === 'failed' && primary) console.error(primary.stderr.slice(-6000));
  });
  after(async () => {
    if (primary) {
      primary.kill('SIGKILL');
      for (const l of primary.serving()) if (l.pid && alive(l.pid)) process.kill(l.pid, 'SIGKILL');
    }
    await h?.close();
  });

  it('serves from two workers, restarts a killed one, and stops every worker on SIGTERM', async () => {
    const audit = join(h.dir, 'workers-audit.jsonl');
    const configFile = join(h.dir, 'workers.yaml');
    writeFileSync(configFile, JSON.stringify(h.configFor(join(h.dir, 'policies'), audit)));
    primary = new Primary(configFile, ['--workers', '2', '--metrics-listen', '127.0.0.1:0']);
    const p = primary;

    await eventually(() => new Set(p.serving().map((l) => l.worker)).size === 2, 60_000);
    const [first, second] = p.serving() as [LogLine, LogLine];
    assert.equal(first.grpc, second.grpc, 'both workers serve on the one gRPC port');
    assert.notEqual(first.pid, second.pid);
    assert.ok(alive(first.pid as number) && alive(second.pid as number));

    // Credentials come out of the shared port, on fresh connections (spread over the workers).
    const address = `127.0.0.1:${first.grpc as number}`;
    for (let i = 0; i < 4; i++) {
      const client = await h.clientsAt(address).client('demo');
      const task = await client.beginTask({ environment: 'dev', intent: `workers ${i}`, ttl_seconds: 600 });
      const issued = await client.issueCredential({
        task_id: task.task_id,
        role: 'token/demo',
        ttl_seconds: 60,
      });
      assert.ok(issued.credential?.token);
    }

    // Each worker keeps its own audit chain, and each chain verifies.
    for (const slot of [1, 2]) {
      const file = `${audit}.w${slot}`;
      assert.ok(existsSync(file), `${file} exists`);
      assert.equal((await verifyAuditFile(file)).ok, true, `${file} verifies`);
    }
    assert.ok(!existsSync(audit), 'no worker writes the un-suffixed file');

    // The primary's metrics port answers with both workers' series.
    const metricsPort = p.lines.find((l) => l.msg === 'cluster metrics')?.metrics;
    const text = await (await fetch(`http://127.0.0.1:${metricsPort as number}/metrics`)).text();
    assert.match(text, /process_resident_memory_bytes\{worker="1"\} \d/);
    assert.match(text, /process_resident_memory_bytes\{worker="2"\} \d/);

    // A worker killed outright is started again in its slot.
    process.kill(first.pid as number, 'SIGKILL');
    await eventually(() => p.serving().some((l) => l.worker === first.worker && l.pid !== first.pid), 60_000);
    const restarted = p.serving().find((l) => l.worker === first.worker && l.pid !== first.pid) as LogLine;
    assert.ok(p.lines.some((l) => l.msg === 'worker exited: restarting' && l.pid === first.pid));
    const again = await h.clientsAt(address).client('demo');
    assert.ok(
      (await again.beginTask({ environment: 'dev', intent: 'after restart', ttl_seconds: 600 })).task_id,
    );

    // SIGTERM to the primary: every worker drains and exits, then the primary, with 0.
    p.kill('SIGTERM');
    assert.equal(await p.exited, 0);
    for (const pid of [restarted.pid as number, second.pid as number])
      assert.ok(!alive(pid), `worker ${pid} exited`);
    assert.equal(p.lines.filter((l) => l.msg === 'worker stopped').length, 2);
  });

  it('refuses --workers 2 on the in-process store, naming what it needs (exit 2)', async () => {
    const configFile = join(h.dir, 'memory.yaml');
    const config = h.configFor(join(h.dir, 'policies'), join(h.dir, 'memory-audit.jsonl'));
    writeFileSync(configFile, JSON.stringify({ ...config, redis: { ...config.redis, store: 'memory' } }));
    const refused = new Primary(configFile, ['--workers', '2']);
    assert.equal(await refused.exited, 2, refused.stderr);
    assert.match(refused.stderr, /--workers 2 needs redis\.store: redis/);
    assert.match(refused.stderr, /cannot be shared between processes/);
    assert.ok(!refused.lines.some((l) => l.msg === 'worker started'), 'no worker was forked');
  });
});
