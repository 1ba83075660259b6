/**
 * UUIDv7 (RFC 9562): a millisecond timestamp followed by randomness, so audit record ids sort in
 * write order. Within one millisecond the 12-bit rand_a field is a counter (RFC 9562 §6.2,
 * method 1), and a clock that steps backwards is ignored, so ids from one factory are strictly
 * increasing even across NTP corrections.
 */
import { randomFillSync } from 'node:crypto';

const MAX_COUNTER = 0xfff;
/** Random bytes drawn from the kernel at once: one getrandom call per about 200 ids, not two per id. */
const POOL_BYTES = 4096;

/** `n` fresh random bytes at a time from a pool refilled when spent; no byte is handed out twice. */
function randomPool(): (n: number) => Buffer {
  const pool = Buffer.alloc(POOL_BYTES);
  let used = POOL_BYTES;
  return (n) => {
    if (used + n > POOL_BYTES) {
      randomFillSync(pool);
      used = 0;
    }
    used += n;
    return pool.subarray(used - n, used);
  };
}

export function createUuidV7Factory(now: () => number = Date.now): () => string {
  let lastMs = -1;
  let counter = 0;
  const random = randomPool();
  return () => {
    const clockMs = now();
    if (clockMs > lastMs) {
      lastMs = clockMs;
      // Start low in the range (top bit clear) so a busy millisecond has room to count.
      counter = random(2).readUInt16BE(0) & 0x7ff;
    } else if (counter < MAX_COUNTER) {
      counter += 1;
    } else {
      // Counter exhausted: borrow the next millisecond rather than repeat or go backwards.
      lastMs += 1;
      counter = 0;
    }
    const bytes = Buffer.from(random(16));
    bytes.writeUIntBE(lastMs, 0, 6);
    bytes[6] = 0x70 | (counter >> 8);
    bytes[7] = counter & 0xff;
    bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
    const hex = bytes.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };
}
