/** Runs the CLI as a person would (a child process, from the checkout) and collects what it printed. */
import { spawn, type SpawnOptions } from 'node:child_process';
import { packageRoot } from '../../src/package-root.js';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` is merged over this process's environment; SVID_BROKER_ID and SVID_BROKER_CONFIG are unset. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const full: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete full.SVID_BROKER_ID;
  delete full.SVID_BROKER_CONFIG;
  return runProcess(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: packageRoot(),
    env: full,
  });
}

/** Runs a program to its end and collects what it printed (stdin closed). */
export function runProcess(
  command: string,
  args: string[],
  opts: Pick<SpawnOptions, 'cwd' | 'env'>,
): Promise<CliResult> {
  const child = spawn(command, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A stack trace in CLI output: never shown to the person at the terminal. */
export const STACK_TRACE = /\n\s+at |\bat (?:\S+ \()?(?:file:\/\/)?\/[^\s)]+\.[cm]?[jt]s:\d+/;
