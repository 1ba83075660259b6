/**
 * One dev stack per directory: `<dir>/dev.pid` holds the running stack's pid, created exclusively,
 * so a second `svid-broker dev` in the same place refuses to start instead of replacing the first
 * one's sockets and Redis data. A lock whose process is gone (a crash, kill -9) is taken over.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface DevLock {
  readonly path: string;
  release(): void;
}

/** True when a process with this pid exists (EPERM: it exists, but is someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function acquireDevLock(dir: string, pid = process.pid): DevLock {
  const path = join(dir, 'dev.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${pid}\n`, { flag: 'wx', mode: 0o600 });
      return { path, release: () => releaseIfOurs(path, pid) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(readFileSync(path, 'utf8'), 10);
    if (Number.isSafeInteger(holder) && holder > 0 && alive(holder)) {
      throw new Error(
        `a dev stack is already running here (${dir}), pid ${holder}: stop it (Ctrl-C in its terminal, ` +
          `or kill ${holder}) or use another --dir`,
      );
    }
    rmSync(path, { force: true }); // stale: its process is gone
  }
  throw new Error(`could not take the dev stack lock ${path}`);
}

/** Removes the lock only while it still names this process. */
function releaseIfOurs(path: string, pid: number): void {
  try {
    if (Number.parseInt(readFileSync(path, 'utf8'), 10) === pid) rmSync(path, { force: true });
  } catch {
    // already gone
  }
}
