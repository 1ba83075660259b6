/**
 * The `svid-broker` command as npm installs it (bin/svid-broker, reached through a symlink in
 * node_modules/.bin): the launcher puts its memory settings into the environment of the process
 * that serves (it `exec`s node, so that is the launcher's own pid) and of every `--workers`
 * worker, keeps values the operator already set, and passes arguments, output and exit codes
 * through unchanged. The package here is a copy of the real launcher beside a dist/src/cli/main.js
 * that imports the CLI's source (run through tsx, as every CLI test runs it), so no build is needed.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { eventually, startHarness, type Harness } from '../support/broker-harness.js';
import { runProcess } from '../support/run-cli.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SETTINGS = ['MALLOC_ARENA_MAX', 'MALLOC_TRIM_THRESHOLD_', 'NODE_OPTIONS'] as const;

/** A package laid out as npm installs it; returns the path of node_modules/.bin/svid-broker. */
function installLauncher(dir: string): string {
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'bin'), { recursive: true });
  mkdirSync(join(pkg, 'dist', 'src', 'cli'), { recursive: true });
  copyFileSync(join(REPO, 'bin', 'svid-broker'), join(pkg, 'bin', 'svid-broker'));
  chmodSync(join(pkg, 'bin', 'svid-broker'), 0o755);
  const source = pathToFileURL(join(REPO, 'src', 'cli', 'main.ts')).href;
  writeFileSync(join(pkg, 'dist', 'src', 'cli', 'main.js'), `import ${JSON.stringify(source)};\n`);
  mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true });
  const bin = join(dir, 'node_modules', '.bin', 'svid-broker');
  symlinkSync('../../pkg/bin/svid-broker', bin);
  return bin;
}

/** This process's environment without the launcher's settings, plus `env` (tsx loads the source). */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const full: NodeJS.ProcessEnv = { ...process.env };
  for (const name of SETTINGS) delete full[name];
  delete full.SVID_BROKER_ID;
  delete full.SVID_BROKER_CONFIG;
  return { ...full, NODE_OPTIONS: '--import tsx', ...env };
}

/** The variables of a running process, as the kernel holds them (/proc/PID/environ). */
function environOf(pid: number): Map<string, string> {
  const vars = new Map<string, string>();
  for (const entry of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return vars;
}

/** `svid-broker serve ...` through the launcher, and the JSON log lines it and its workers print. */
class Served {
  readonly lines: Array<{ msg?: string; role?: string; pid?: number }> = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(bin: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(bin, ['serve', ...args], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    createInterface({ input: this.child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Served['lines'][number]);
      } catch {
        // not a log line
      }
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.child.kill(signal);
  }
}

describe('integration: the svid-broker launcher (bin/svid-broker)', function () {
  this.timeout(90_000);
  let h: Harness;
  let bin: string;
  let configFile: string;
  const started: Served[] = [];

  before(async () => {
    h = await startHarness();
    bin = installLauncher(h.dir);
    configFile = join(h.dir, 'launcher.yaml');
    writeFileSync(configFile, JSON.stringify(h.configFor(join(h.dir, 'policies'), join(h.dir, 'l.jsonl'))));
  });
  after(async () => {
    for (const s of started) s.stop('SIGKILL');
    await h?.close();
  });

  it('serves from the launched pid, with the memory settings in its and each worker environment', async () => {
    const served = new Served(
      bin,
      ['--workers', '2', '--metrics-listen', '127.0.0.1:0'],
      environment({ SVID_BROKER_CONFIG: configFile }),
    );
    started.push(served);
    const workers = await eventually(() => {
      const pids = served.lines.filter((l) => l.role === 'primary' && l.msg === 'worker serving');
      return pids.length === 2 ? pids.map((l) => l.pid as number) : undefined;
    }, 60_000);

    // exec: no shell stays around; the pid the launcher started under is node, serving.
    assert.equal(realpathSync(`/proc/${served.pid}/exe`), realpathSync(process.execPath));
    for (const pid of [served.pid, ...workers]) {
      const env = environOf(pid);
      assert.equal(env.get('MALLOC_TRIM_THRESHOLD_'), '131072', `pid ${pid}`);
      assert.equal(env.get('NODE_OPTIONS'), '--max-semi-space-size=8 --import tsx', `pid ${pid}`);
    }
    served.stop();
    assert.equal(await served.exited, 0);
  });

  it("keeps the operator's values: its environment wins, its NODE_OPTIONS come after the default", async () => {
    const served = new Served(
      bin,
      [],
      environment({
        SVID_BROKER_CONFIG: configFile,
        MALLOC_TRIM_THRESHOLD_: '65536',
        NODE_OPTIONS: '--import tsx --max-semi-space-size=16',
      }),
    );
    started.push(served);
    await eventually(() => served.lines.some((l) => l.msg === 'svid-broker serving'), 60_000);
    const env = environOf(served.pid);
    assert.equal(env.get('MALLOC_TRIM_THRESHOLD_'), '65536');
    assert.equal(env.get('NODE_OPTIONS'), '--max-semi-space-size=8 --import tsx --max-semi-space-size=16');
    served.stop();
    assert.equal(await served.exited, 0);
  });

  it('passes arguments, output and exit codes through as node running the CLI does', async () => {
    const odd = join(h.dir, "no such 'dir'", '$HOME *.yaml');
    const cases: Array<[string[], number]> = [
      [['config', 'validate', odd], 1],
      [['help', 'serve'], 0],
      [['serve', '--workers', 'x'], 2],
    ];
    for (const [args, code] of cases) {
      const env = environment({});
      const direct = await runProcess(process.execPath, ['src/cli/main.ts', ...args], { cwd: REPO, env });
      const launched = await runProcess(bin, args, { cwd: REPO, env });
      assert.equal(launched.code, code, `${args.join(' ')}: ${launched.stderr}`);
      assert.deepEqual(launched, direct, args.join(' '));
    }
  });
});
