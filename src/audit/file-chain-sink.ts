/**
 * The durable audit sink: a hash-chained JSON Lines file.
 *
 * Every credential issuance waits on write(), so writes use group commit: records that arrive
 * while a flush is in flight are chained in arrival order, written with one write() that is
 * durable when it returns (the file is open with O_DSYNC: a write and an fdatasync in one system
 * call), and each caller is answered only after that write. Under load the
 * cost of a sync is shared by the whole batch instead of serialising callers behind it.
 *
 * Failing closed, and healing: when a batch cannot be written or synced (a full disk, an I/O
 * error) every caller of that batch and every later one is refused. The sink knows where the file
 * ended before the batch, so it cuts exactly what it wrote of it and keeps the chain head of the
 * last record it had synced; then it retries with backoff, and the first write that succeeds is
 * an `audit.recovered` record (how long it was down, how many writes it refused), after which it
 * accepts writes again. The cause (errno, path, free space) is logged once per state change.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open as openFile, rename, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BrokerError, unavailable } from '../errors.js';
import { readCheckpoint, verifyChainSince, writeCheckpoint, type Checkpoint } from './chain-checkpoint.js';
import { rotatedFileName } from './chain-files.js';
import {
  firstRecordTime,
  resumePoint,
  rotationDue,
  type ActiveFile,
  type RotationPolicy,
} from './chain-rotation.js';
import { readChainTail, type ChainTail } from './chain-tail.js';
import { DEFAULT_SOURCE, sealRecord } from './hash-chain.js';
import type { AuditEventInput, AuditRecord, AuditSinkHealth, ChainKeeper, CommitListener } from './types.js';
import { createUuidV7Factory } from './uuid-v7.js';

/** The slice of fs/promises' FileHandle the sink uses; a seam for counting syncs and injecting faults. */
export interface ChainFileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  stat(): Promise<{ size: number }>;
  truncate(length: number): Promise<void>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface ChainFileSystem {
  open(path: string, flags: string | number, mode: number): Promise<ChainFileHandle>;
  mkdir(path: string, options: { recursive: true; mode: number }): Promise<unknown>;
  /** Rotation renames the active file (default: fs/promises rename). */
  rename?(from: string, to: string): Promise<void>;
  /** Free bytes for unprivileged writers on the file system holding `path` (for the log only). */
  freeBytes?(path: string): Promise<number>;
}

export const nodeChainFileSystem: ChainFileSystem = {
  open: (path, flags, mode) => openFile(path, flags, mode),
  mkdir: (path, options) => mkdir(path, options),
  rename: (from, to) => rename(from, to),
  freeBytes: async (path) => {
    const s = await statfs(path);
    return s.bavail * s.bsize;
  },
};

/** The slice of a pino logger the sink uses. */
export interface SinkLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface FileChainSinkOptions {
  /**
   * Sync each batch to disk before answering (default true). Turning it off makes write() resolve
   * once the OS has the bytes: acknowledged records can then be lost to a power failure.
   */
  fsync?: boolean;
  now?: () => Date;
  idFactory?: () => string;
  fileSystem?: ChainFileSystem;
  logger?: SinkLogger;
  /** Backoff between attempts to heal after a failed write: base doubles up to max. 100 ms, 5 s. */
  retry?: { baseDelayMs: number; maxDelayMs: number };
  /** How often the synced size and chain head are saved to `<file>.checkpoint`. Default 5 s. */
  checkpointIntervalMs?: number;
  /** `source` of every record: the broker replica's SPIFFE ID. Default `svid-broker`. */
  source?: string;
  /** audit.rotate: rotate the active file past these bounds (chain-rotation.ts). Default: never. */
  rotate?: RotationPolicy;
}

interface PendingWrite {
  record: AuditRecord;
  line: string;
  resolve: (record: AuditRecord) => void;
  reject: (err: unknown) => void;
}

/** While the sink refuses writes: since when, why, how often it refused, its next attempt. */
interface Outage {
  since: number;
  cause: string;
  errno: string | undefined;
  refused: number;
  attempt: number;
  timer?: NodeJS.Timeout;
  refusal: BrokerError;
}

/** Where the file is known good: its size and the hash and seq of its last record, all synced. */
interface Committed {
  size: number;
  hash: string;
  seq: number;
}

const DEFAULT_RETRY = { baseDelayMs: 100, maxDelayMs: 5000 };
const silentLogger: SinkLogger = { error: () => undefined, warn: () => undefined, info: () => undefined };

export class FileChainSink implements ChainKeeper {
  private queue: PendingWrite[] = [];
  private readonly listeners = new Set<CommitListener>();
  /** seq of the last record accepted (possibly not yet on disk), as lastHash. */
  private lastSeq: number;
  private flushing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private outage: Outage | undefined;
  /** The chain head for new records: the last record accepted (possibly not yet on disk). */
  private lastHash: string;
  /** What `<file>.checkpoint` says now (what the next start verifies from). */
  private savedCheckpoint: Committed | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  /** The last checkpoint save queued (saves never reject: a failure is logged). */
  private checkpointSaves: Promise<void> = Promise.resolve();
  /** Where the active file's records begin (seq) and when its first was written. */
  private active: Omit<ActiveFile, 'size'>;
  /** Set while a rotation runs; `renamedTo` once the rename is done (a retry then only starts the new file). */
  private rotation: { renamedTo?: string } | undefined;

  private constructor(
    private readonly path: string,
    private handle: ChainFileHandle,
    private committed: Committed,
    private readonly settings: {
      fsync: boolean;
      now: () => Date;
      nextId: () => string;
      fileSystem: ChainFileSystem;
      logger: SinkLogger;
      retry: { baseDelayMs: number; maxDelayMs: number };
      source: string;
      rotate: RotationPolicy;
    },
    firstSeq: number,
    startedAt: number | undefined,
  ) {
    this.lastHash = committed.hash;
    this.lastSeq = committed.seq;
    this.active = { firstSeq, startedAt };
  }

  /**
   * Opens (creating with mode 0600, parent directories 0700) and resumes the chain from the last
   * record. The tail record's own hash is checked, and every record since `<file>.checkpoint`
   * (chain-checkpoint.ts): opening reads what was written since the last checkpoint, the whole
   * file only when there is none.
   *
   * A last line without its newline is an interrupted write, never acknowledged. When it is
   * provably this sink's own (chain-tail.ts) it is cut and the repair is recorded as
   * `audit.repaired`; anything else is refused, with the offset an operator can cut at.
   */
  static async open(path: string, opts: FileChainSinkOptions = {}): Promise<FileChainSink> {
    const fileSystem = opts.fileSystem ?? nodeChainFileSystem;
    const now = opts.now ?? (() => new Date());
    const settings = {
      fsync: opts.fsync ?? true,
      now,
      nextId: opts.idFactory ?? createUuidV7Factory(() => now().getTime()),
      fileSystem,
      logger: opts.logger ?? silentLogger,
      retry: opts.retry ?? DEFAULT_RETRY,
      source: opts.source ?? DEFAULT_SOURCE,
      rotate: opts.rotate ?? {},
    };
    const handle = await openChainFile(fileSystem, path, settings.fsync);
    let sink: FileChainSink | undefined;
    try {
      const { size } = await handle.stat();
      // The active file continues genesis or the newest rotated file (chain-rotation.ts).
      const { start, from } = await resumePoint(fileSystem, path, size, await readCheckpoint(path));
      const tail = await readChainTail(handle, size, path, start);
      // Every record since the last checkpoint must verify, not only the last one.
      await verifyChainSince(handle, from, tail.completeSize, tail.lastHash, path);
      if (size === 0 && settings.fsync) await syncDirectory(fileSystem, dirname(path));
      // A file from before seq existed continues at 1: the verifier accepts that step.
      const committed = { size: tail.completeSize, hash: tail.lastHash, seq: tail.lastSeq ?? 0 };
      const startedAt =
        tail.completeSize === 0
          ? undefined
          : ((await firstRecordTime(handle, tail.completeSize)) ?? now().getTime());
      sink = new FileChainSink(path, handle, committed, settings, start.seq + 1, startedAt);
      // A repair that cannot be recorded fails startup: the next start finds the same tail.
      if (tail.torn) await sink.repairTornTail(tail, size);
      await sink.startCheckpoints(opts.checkpointIntervalMs ?? 5000);
      return sink;
    } catch (err) {
      await (sink ?? handle).close().catch(() => undefined);
      if (err instanceof BrokerError) throw err;
      throw unavailable('audit_unavailable', `audit: cannot read ${path}: ${describe(err)}`, err);
    }
  }

  write(event: AuditEventInput): Promise<AuditRecord> {
    const refusal = this.refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    let record: AuditRecord;
    try {
      record = sealRecord(this.lastHash, event, this.nextMeta(this.lastSeq));
    } catch (err) {
      return Promise.reject(err);
    }
    // Chained now, in call order; the flush loop preserves that order on disk.
    this.lastHash = record.hash;
    this.lastSeq = record.seq;
    return new Promise<AuditRecord>((resolve, reject) => {
      this.queue.push({ record, line: `${JSON.stringify(record)}\n`, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** The last durable record (seq 0 and the genesis hash before the first): what a signed checkpoint covers. */
  head(): { seq: number; hash: string } {
    return { seq: this.committed.seq, hash: this.committed.hash };
  }

  /** Every committed record, in chain order, before the writes of its batch resolve. */
  subscribe(listener: CommitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private nextMeta(afterSeq: number): { id: string; time: string; seq: number; source: string } {
    return {
      id: this.settings.nextId(),
      time: this.settings.now().toISOString(),
      seq: afterSeq + 1,
      source: this.settings.source,
    };
  }

  /** Tells subscribers; a listener that throws is logged, never allowed to fail the write. */
  private publish(records: readonly AuditRecord[]): void {
    for (const listener of this.listeners) {
      try {
        listener(records);
      } catch (err) {
        this.settings.logger.error({ err: describe(err) }, 'audit: a commit listener threw');
      }
    }
  }

  health(): AuditSinkHealth {
    if (this.outage === undefined) return { ok: true };
    return { ok: false, since: new Date(this.outage.since).toISOString(), cause: this.outage.cause };
  }

  private async startCheckpoints(intervalMs: number): Promise<void> {
    await this.saveCheckpoint();
    this.checkpointTimer = setInterval(() => void this.saveCheckpoint(), intervalMs);
    this.checkpointTimer.unref();
  }

  /**
   * Saves what is synced; a failure only means the next start verifies from further back. Saves
   * run one at a time (the timer's and close's): two writing the same temporary file at once
   * could rename a half-written one into place.
   */
  private saveCheckpoint(): Promise<void> {
    this.checkpointSaves = this.checkpointSaves.then(() => this.saveCheckpointNow());
    return this.checkpointSaves;
  }

  private async saveCheckpointNow(): Promise<void> {
    // Mid-rotation `committed` may describe the file being renamed: the rotation saves its own.
    if (this.rotation !== undefined) return;
    const at = this.committed;
    if (this.savedCheckpoint?.size === at.size && this.savedCheckpoint.hash === at.hash) return;
    try {
      await writeCheckpoint(this.path, at, this.settings.fsync);
      this.savedCheckpoint = at;
    } catch (err) {
      this.settings.logger.warn({ path: this.path, err: describe(err) }, 'audit checkpoint not saved');
    }
  }

  /**
   * Flushes what was accepted, then closes; later writes reject. Safe to call more than once.
   * Closed while down, it still cuts back to the last synced record (as healing would), so the
   * file ends with what callers were told was recorded.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.outage?.timer);
      clearInterval(this.checkpointTimer);
      await this.flushing;
      if (this.outage !== undefined) await this.handle.truncate(this.committed.size).catch(() => undefined);
      await this.saveCheckpoint();
      await this.handle.close();
    })();
    return this.closing;
  }

  private refusal(): BrokerError | undefined {
    if (this.closing !== undefined) return unavailable('audit_closed', 'audit log closed');
    if (this.outage === undefined) return undefined;
    this.outage.refused += 1;
    return this.outage.refusal;
  }

  private async flushLoop(): Promise<void> {
    // One microtask of patience lets writes issued in the same tick share the first sync.
    await Promise.resolve();
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      const data = Buffer.from(batch.map((p) => p.line).join(''), 'utf8');
      try {
        await this.rotateIfDue();
        await this.append(data);
      } catch (err) {
        this.fail(err, [...batch, ...this.queue]);
        this.queue = [];
        break;
      }
      const last = lastOf(batch).record;
      this.committed = { size: this.committed.size + data.length, hash: last.hash, seq: last.seq };
      this.active.startedAt ??= this.settings.now().getTime();
      this.publish(batch.map((p) => p.record));
      for (const pending of batch) pending.resolve(pending.record);
    }
    this.flushing = undefined;
  }

  /** The file is open with O_DSYNC when syncing: each write returns once its bytes are durable. */
  private async append(data: Buffer): Promise<void> {
    await writeFully(this.handle, data);
  }

  /**
   * A batch failed: refuse it and everything queued behind it (they were chained onto it), go
   * back to the last synced record, cut what reached the file, and start healing.
   */
  private fail(err: unknown, rejected: PendingWrite[]): void {
    const errno = (err as NodeJS.ErrnoException).code;
    // The message reaches callers, so it stays generic; the path and errno are logged once.
    const refusal = new BrokerError('UNAVAILABLE', 'audit log unavailable', {
      reason: 'audit_unavailable',
      reported: true,
      cause: new Error(`audit: writing ${this.path} failed (${describe(err)})`, { cause: err }),
    });
    this.outage = {
      since: this.settings.now().getTime(),
      cause: describe(err),
      errno,
      refused: rejected.length,
      attempt: 0,
      refusal,
    };
    this.lastHash = this.committed.hash;
    this.lastSeq = this.committed.seq;
    for (const pending of rejected) pending.reject(refusal);
    void this.logFailure('audit sink failed: refusing every request until a write succeeds', err, 'error');
    this.scheduleHeal();
  }

  private scheduleHeal(): void {
    const outage = this.outage;
    if (outage === undefined || this.closing !== undefined) return;
    const { baseDelayMs, maxDelayMs } = this.settings.retry;
    const delay = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(outage.attempt, 20));
    outage.attempt += 1;
    outage.timer = setTimeout(() => void this.heal(outage), delay);
  }

  /** One attempt: cut back to the last synced record, then write `audit.recovered`. */
  private async heal(outage: Outage): Promise<void> {
    if (this.closing !== undefined) return;
    const downMs = this.settings.now().getTime() - outage.since;
    const record = sealRecord(
      this.committed.hash,
      {
        type: 'audit.recovered',
        agent: '',
        down_ms: downMs,
        down_since: new Date(outage.since).toISOString(),
        refused_writes: outage.refused,
        cause: outage.cause,
      },
      this.nextMeta(this.committed.seq),
    );
    const data = Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
    try {
      // A rotation cut short (renamed, no new file yet) is finished before anything is written.
      await this.rotateIfDue();
      await this.handle.truncate(this.committed.size);
      await this.append(data);
    } catch (err) {
      this.noteStillFailing(outage, err);
      this.scheduleHeal();
      return;
    }
    this.committed = { size: this.committed.size + data.length, hash: record.hash, seq: record.seq };
    this.active.startedAt ??= this.settings.now().getTime();
    this.lastHash = record.hash;
    this.lastSeq = record.seq;
    this.outage = undefined;
    this.publish([record]);
    this.settings.logger.info(
      { path: this.path, down_ms: downMs, refused_writes: outage.refused },
      'audit sink recovered: accepting writes again',
    );
  }

  /**
   * Rotates when the active file passed a bound (or a rotation was cut short): rename it to its
   * seq range, start a new active file, save `.checkpoint` at its start, sync the directory. Runs
   * between batches only; a failure refuses the batch like a failed write, and healing retries.
   */
  private async rotateIfDue(): Promise<void> {
    if (this.committed.seq < this.active.firstSeq) return; // no record of its own (legacy): nothing to name
    const now = this.settings.now().getTime();
    const due = rotationDue(this.settings.rotate, { size: this.committed.size, ...this.active }, now);
    if (this.rotation === undefined && !due) return;
    this.rotation ??= {};
    const head = this.committed;
    const target = rotatedFileName(this.path, this.active.firstSeq, head.seq);
    if (this.rotation.renamedTo === undefined) {
      await (this.settings.fileSystem.rename ?? rename)(this.path, target);
      this.rotation.renamedTo = target;
    }
    // The rename is durable before the .checkpoint names the new file's start: a .checkpoint of
    // {0, head} beside an active file that was never renamed would refuse the next start.
    await this.syncDirectoryIfAsked();
    await this.startActiveFile({ size: 0, hash: head.hash, seq: head.seq });
    this.settings.logger.info(
      { path: this.path, rotated: target, last_seq: head.seq },
      'audit file rotated; the chain continues in a new file',
    );
  }

  /** Opens the new active file, saves `.checkpoint` at its start, then writes go to it. */
  private async startActiveFile(start: Committed): Promise<void> {
    const next = await openChainFile(this.settings.fileSystem, this.path, this.settings.fsync);
    try {
      await this.saveRotationCheckpoint(start);
      await this.syncDirectoryIfAsked();
    } catch (err) {
      await next.close().catch(() => undefined);
      throw err;
    }
    const previous = this.handle;
    this.handle = next;
    this.committed = start;
    this.savedCheckpoint = start;
    this.active = { firstSeq: start.seq + 1, startedAt: undefined };
    this.rotation = undefined;
    await previous.close().catch(() => undefined);
  }

  private async syncDirectoryIfAsked(): Promise<void> {
    if (this.settings.fsync) await syncDirectory(this.settings.fileSystem, dirname(this.path));
  }

  /** Saved in line with the timer's saves (never two writers on the temporary file), failing loudly. */
  private saveRotationCheckpoint(start: Checkpoint): Promise<void> {
    const saved = this.checkpointSaves.then(() => writeCheckpoint(this.path, start, this.settings.fsync));
    this.checkpointSaves = saved.catch(() => undefined);
    return saved;
  }

  /** Logs only when the cause changed (another errno): a state change, not every attempt. */
  private noteStillFailing(outage: Outage, err: unknown): void {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === outage.errno) return;
    outage.errno = errno;
    outage.cause = describe(err);
    void this.logFailure('audit sink still failing, with another cause', err, 'warn');
  }

  private async logFailure(msg: string, err: unknown, level: 'error' | 'warn'): Promise<void> {
    const free = await this.settings.fileSystem.freeBytes?.(dirname(this.path)).catch(() => undefined);
    const e = err as NodeJS.ErrnoException;
    this.settings.logger[level](
      {
        path: this.path,
        errno: e.code,
        syscall: e.syscall,
        error: describe(err),
        ...(free === undefined ? {} : { free_bytes: free }),
        chain_bytes: this.committed.size,
      },
      msg,
    );
  }

  /** Cuts the sink's own partial write found at startup and records the repair. */
  private async repairTornTail(tail: ChainTail, size: number): Promise<void> {
    const torn = tail.torn;
    if (torn === undefined) return;
    await this.handle.truncate(tail.completeSize);
    if (this.settings.fsync) await this.handle.datasync();
    this.settings.logger.warn(
      { path: this.path, offset: tail.completeSize, bytes: torn.bytes },
      'audit: cut an interrupted write at the end of the file (never acknowledged); recorded as audit.repaired',
    );
    await this.write({
      type: 'audit.repaired',
      agent: '',
      repair: 'cut_partial_record',
      offset: tail.completeSize,
      file_size: size,
      removed_bytes: torn.bytes,
      removed_sha256: torn.sha256,
    });
  }
}

/**
 * O_APPEND: every write lands at the end whatever else holds the file open. O_DSYNC (when syncing):
 * a write returns once its data, and what is needed to read it back, is on stable storage, as a
 * write followed by fdatasync would, in one system call and one trip through libuv's thread pool
 * instead of two.
 */
async function openChainFile(
  fileSystem: ChainFileSystem,
  path: string,
  sync: boolean,
): Promise<ChainFileHandle> {
  try {
    await fileSystem.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const flags = fsConstants.O_RDWR | fsConstants.O_APPEND | fsConstants.O_CREAT;
    return await fileSystem.open(path, sync ? flags | fsConstants.O_DSYNC : flags, 0o600);
  } catch (err) {
    throw unavailable('audit_unavailable', `audit: cannot open ${path}: ${describe(err)}`, err);
  }
}

function lastOf<T>(items: T[]): T {
  return items[items.length - 1] as T;
}

async function writeFully(handle: ChainFileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    offset += bytesWritten;
  }
}

/** A new file's directory entry must be durable too, or a crash can lose the whole file. */
async function syncDirectory(fileSystem: ChainFileSystem, dir: string): Promise<void> {
  const handle = await fileSystem.open(dir, fsConstants.O_RDONLY, 0);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    // Node's own messages already start with the code ("ENOSPC: no space left on device, write").
    return code === undefined || err.message.startsWith(code) ? err.message : `${code}: ${err.message}`;
  }
  return String(err);
}
