/** One duration vocabulary for every `--ttl`: `90` or `90s` seconds, `15m`, `2h`, `1d`. */
import { usageError } from './command.js';

const UNITS = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** Seconds; `0` stays 0 (each command says what it means). Throws a usage error naming `flag`. */
export function parseDuration(text: string, flag: string): number {
  const t = text.trim();
  if (/^-/.test(t)) throw usageError(`${flag}: must not be negative (got ${t})`);
  const m = /^(\d+)([smhd]?)$/.exec(t);
  if (!m) throw usageError(`${flag}: expected a duration like 90, 90s, 15m, 2h or 1d (got "${t}")`);
  const seconds = Number(m[1]) * UNITS[m[2] as keyof typeof UNITS];
  if (!Number.isSafeInteger(seconds)) throw usageError(`${flag}: too long`);
  return seconds;
}
