/**
 * Debian's chromium for the browser tests (never a downloaded browser): /usr/bin/chromium, or
 * CHROMIUM_PATH; installed with apt-get when running as root on Debian (as CI does), as the
 * redis-server setup does.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { onPath } from '../../src/dev/redis-process.js';

const DEFAULT_PATH = '/usr/bin/chromium';
const NOT_FOUND = 'chromium not found: install it (Debian: apt-get install -y chromium) and rerun npm test';

export function findOrInstallChromium(): string {
  const path = process.env.CHROMIUM_PATH || DEFAULT_PATH;
  if (existsSync(path)) return path;
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    console.log('chromium not found: installing it with apt-get (Debian package chromium)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', 'chromium']]) {
      const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
      if (run.status !== 0) throw new Error(`${NOT_FOUND} (apt-get ${args.join(' ')} failed)`);
    }
    if (existsSync(path)) return path;
  }
  throw new Error(NOT_FOUND);
}
