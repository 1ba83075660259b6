/**
 * `audit tail FILE --follow`: after the trail so far, keep printing records as the broker appends
 * them, across rotation. Polls the active file (no watcher API behaves the same on every file
 * system): new bytes are read from where it left off, complete lines only; when the active file
 * was rotated (another inode, or shorter than what was read), the rest of the old file is read
 * from its rotated name, records by seq so none is printed twice, then the new file from its start.
 */
import { open, stat } from 'node:fs/promises';
import { listRotatedFiles } from '../audit/chain-files.js';
import type { AuditRecord } from '../audit/types.js';

export interface FollowPosition {
  /** seq of the last record handed out (0: none). */
  seq: number;
}

export interface FollowOptions {
  intervalMs?: number;
  signal?: AbortSignal;
}

/** Reads `file` from `offset` to its end: the complete lines, and the offset after the last one. */
async function readNewLines(file: string, offset: number): Promise<{ lines: string[]; offset: number }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    // Between a rotation's rename and the new file: nothing to read yet.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], offset };
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size <= offset) return { lines: [], offset };
    const buffer = Buffer.alloc(size - offset);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
    const text = buffer.subarray(0, bytesRead).toString('utf8');
    const end = text.lastIndexOf('\n');
    if (end < 0) return { lines: [], offset };
    return {
      lines: text.slice(0, end).split('\n'),
      offset: offset + Buffer.byteLength(text.slice(0, end + 1)),
    };
  } finally {
    await handle.close();
  }
}

function records(lines: readonly string[], after: FollowPosition): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const line of lines) {
    if (line === '') continue;
    let record: AuditRecord;
    try {
      record = JSON.parse(line) as AuditRecord;
    } catch {
      continue; // not a record (read from the middle of a file that changed under us)
    }
    if (typeof record.seq === 'number' && record.seq <= after.seq) continue;
    out.push(record);
  }
  return out;
}

/** The records of rotated files that follow `after` (the part of the old active file not yet read). */
async function rotatedSince(file: string, after: FollowPosition): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (const rotated of await listRotatedFiles(file)) {
    if (rotated.lastSeq <= after.seq) continue;
    out.push(...records((await readNewLines(rotated.path, 0)).lines, after));
  }
  return out;
}

/**
 * Hands every record appended to `file` after `from` to `emit`, in chain order, until `signal`
 * aborts. `offset` is where the caller's own read of the active file ended.
 */
export async function followTrail(
  file: string,
  from: FollowPosition & { offset: number },
  emit: (record: AuditRecord) => void,
  opts: FollowOptions = {},
): Promise<void> {
  const position = { seq: from.seq };
  let offset = from.offset;
  let inode: number | undefined;
  const hand = (batch: readonly AuditRecord[]): void => {
    for (const record of batch) {
      if (typeof record.seq === 'number' && record.seq <= position.seq) continue;
      emit(record);
      if (typeof record.seq === 'number') position.seq = record.seq;
    }
  };
  while (opts.signal?.aborted !== true) {
    const now = await stat(file).catch(() => undefined);
    if (now !== undefined) {
      if ((inode !== undefined && now.ino !== inode) || now.size < offset) {
        hand(await rotatedSince(file, position));
        offset = 0;
      }
      inode = now.ino;
      const read = await readNewLines(file, offset);
      offset = read.offset;
      const fresh = records(read.lines, position);
      // A gap before the first new record: the rest of the old file was rotated out meanwhile.
      if (fresh.length > 0 && (fresh[0]?.seq ?? 0) > position.seq + 1)
        hand(await rotatedSince(file, position));
      hand(fresh);
    }
    await sleep(opts.intervalMs ?? 500, opts.signal);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
