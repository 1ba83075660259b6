/**
 * Files shipped beside the code (proto/, policies/, Lua scripts) are found from the package root,
 * which is one level up from src/ when run with tsx and two levels up from dist/src/ when built.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'proto'))) return (cached = dir);
    dir = dirname(dir);
  }
  throw new Error('svid-broker: cannot find the package root (package.json beside proto/)');
}

export function protoDir(): string {
  return join(packageRoot(), 'proto');
}
