/**
 * A webhook's records on disk until its receiver acknowledged them, so a broker restart while the
 * receiver is down replays them, in order, with no gap.
 *
 * `<dir>/spool.jsonl` holds the records as sealed (one JSON line each), appended before they are
 * sent; `<dir>/acked` holds the highest seq the receiver acknowledged (overwritten in place: no
 * rename, no size change, so an acknowledgement adds no file-system metadata work beside the
 * chain file's fsync). Acknowledged records are removed in bulk: once 1000 of them are in the file
 * it is emptied (all acknowledged) or rewritten without them (when they are most of it), and at
 * every start. Appends are synchronous (they reach the page cache before the write that committed
 * them resolves), not fsynced: a broker crash loses nothing, a host crash may lose the spool's
 * tail, which the chain file (fsynced) still holds.
 */
import {
  appendFileSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { AuditRecord } from '../types.js';

/** Acknowledged records tolerated in the file before it is emptied or rewritten without them. */
const COMPACT_AFTER = 1000;
/** The ack file's fixed width: every seq fits, so overwriting it never changes its size. */
const ACK_WIDTH = 20;

export interface SpoolLoad {
  /** Records spooled and not acknowledged, in order. */
  records: AuditRecord[];
  /** A torn last line (a crash mid-append) that was dropped. */
  tornBytes: number;
}

export class WebhookSpool {
  private readonly file: string;
  private readonly ackFile: string;
  /** Records in the file not yet acknowledged, in order. */
  private pending: AuditRecord[] = [];
  /** Records in the file already acknowledged (dead lines, until the next compaction). */
  private acknowledged = 0;
  private ackFd: number | undefined;

  constructor(private readonly dir: string) {
    this.file = join(dir, 'spool.jsonl');
    this.ackFile = join(dir, 'acked');
  }

  /** Creates the directory (0700) and reads what a previous run left. Call once, first. */
  open(): SpoolLoad {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const ackedSeq = this.readAcked();
    const { records, tornBytes } = readLines(this.file);
    this.pending = records.filter((r) => r.seq > ackedSeq);
    this.acknowledged = records.length - this.pending.length;
    // Start from a clean file: what is still owed, nothing else.
    this.rewrite();
    this.ackFd = openSync(this.ackFile, constants.O_RDWR | constants.O_CREAT, 0o600);
    return { records: [...this.pending], tornBytes };
  }

  /** Appends records (before they are sent). Throws on an I/O error. */
  append(records: readonly AuditRecord[]): void {
    if (records.length === 0) return;
    appendFileSync(this.file, records.map((r) => `${JSON.stringify(r)}\n`).join(''), { mode: 0o600 });
    this.pending.push(...records);
  }

  /** The receiver acknowledged every record up to `seq`: they leave the spool. */
  acknowledge(seq: number): void {
    let done = 0;
    while (done < this.pending.length && (this.pending[done] as AuditRecord).seq <= seq) done += 1;
    if (done === 0) return;
    this.pending.splice(0, done);
    this.acknowledged += done;
    if (this.ackFd !== undefined) writeSync(this.ackFd, `${String(seq).padStart(ACK_WIDTH)}\n`, 0);
    if (this.acknowledged < COMPACT_AFTER) return;
    if (this.pending.length === 0) {
      truncateSync(this.file, 0);
      this.acknowledged = 0;
    } else if (this.acknowledged >= this.pending.length) {
      this.rewrite();
    }
  }

  /** Releases the ack file (the spool stays on disk for the next run). */
  close(): void {
    if (this.ackFd !== undefined) closeSync(this.ackFd);
    this.ackFd = undefined;
  }

  /** Records spooled and not yet acknowledged. */
  get size(): number {
    return this.pending.length;
  }

  private rewrite(): void {
    writeAtomically(this.file, this.pending.map((r) => `${JSON.stringify(r)}\n`).join(''));
    this.acknowledged = 0;
  }

  private readAcked(): number {
    try {
      const seq = Number(readFileSync(this.ackFile, 'utf8').trim());
      return Number.isSafeInteger(seq) && seq > 0 ? seq : 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
  }
}

function readLines(file: string): SpoolLoad {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], tornBytes: 0 };
    throw err;
  }
  const lines = text.split('\n');
  // Everything after the last newline is a torn append (or nothing).
  const tail = lines.pop() ?? '';
  const records = lines.filter((l) => l !== '').map((l) => JSON.parse(l) as AuditRecord);
  return { records, tornBytes: Buffer.byteLength(tail) };
}

function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}
