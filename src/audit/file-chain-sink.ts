/**
 * The durable audit sink: a hash-chained JSON Lines file.
 *
 * Every credential issuance waits on write(), so writes use group commit: records that arrive
 * while a flush is in flight are chained in arrival order, written with one write() and made
 * durable with one fdatasync, and each caller is answered only after that sync. Under load the
 * cost of a sync is shared by the whole batch instead of serialising callers behind it.
 *
 * Failing closed: after any I/O error the sink stays failed, because whether the failed batch
 * reached the disk (and so where the chain now ends) is unknown; continuing would risk a fork.
 */
import { constants as fsConstants } from 'node:fs';
import { mkdir, open as openFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BrokerError, failedPrecondition, unavailable } from '../errors.js';
import { checkRecordLine, GENESIS_HASH, sealRecord } from './hash-chain.js';
import type { AuditEventInput, AuditRecord, AuditSink } from './types.js';
import { createUuidV7Factory } from './uuid-v7.js';

/** The slice of fs/promises' FileHandle the sink uses; a seam for counting syncs and injecting faults. */
export interface ChainFileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  stat(): Promise<{ size: number }>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface ChainFileSystem {
  open(path: string, flags: string | number, mode: number): Promise<ChainFileHandle>;
  mkdir(path: string, options: { recursive: true; mode: number }): Promise<unknown>;
}

export const nodeChainFileSystem: ChainFileSystem = {
  open: (path, flags, mode) => openFile(path, flags, mode),
  mkdir: (path, options) => mkdir(path, options),
};

export interface FileChainSinkOptions {
  /**
   * Sync each batch to disk before answering (default true). Turning it off makes write() resolve
   * once the OS has the bytes: acknowledged records can then be lost to a power failure.
   */
  fsync?: boolean;
  now?: () => Date;
  idFactory?: () => string;
  fileSystem?: ChainFileSystem;
}

interface PendingWrite {
  record: AuditRecord;
  line: string;
  resolve: (record: AuditRecord) => void;
  reject: (err: unknown) => void;
}

/** Tail reads go backwards in chunks of this size until the start of the last line is found. */
const TAIL_CHUNK_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

export class FileChainSink implements AuditSink {
  private queue: PendingWrite[] = [];
  private flushing: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private failure: BrokerError | undefined;

  private constructor(
    private readonly path: string,
    private readonly handle: ChainFileHandle,
    private lastHash: string,
    private readonly fsync: boolean,
    private readonly now: () => Date,
    private readonly nextId: () => string,
  ) {}

  /**
   * Opens (creating with mode 0600, parent directories 0700) and resumes the chain from the last
   * record. The tail record's own hash is checked; the rest of the file is not read (that is
   * `audit verify`'s job), so opening stays O(1) in the file size.
   *
   * A last line without its newline is an interrupted write. It cannot have been acknowledged
   * (callers are answered only after the whole batch is synced), but it may also be the visible
   * sign of tampering, so open refuses rather than truncating evidence on its own; the error says
   * at which byte offset an operator can cut the file after looking at it.
   */
  static async open(path: string, opts: FileChainSinkOptions = {}): Promise<FileChainSink> {
    const fileSystem = opts.fileSystem ?? nodeChainFileSystem;
    const fsync = opts.fsync ?? true;
    const now = opts.now ?? (() => new Date());
    const nextId = opts.idFactory ?? createUuidV7Factory(() => now().getTime());
    const dir = dirname(path);
    let handle: ChainFileHandle;
    try {
      await fileSystem.mkdir(dir, { recursive: true, mode: 0o700 });
      // O_APPEND: every write lands at the end whatever else holds the file open.
      handle = await fileSystem.open(
        path,
        fsConstants.O_RDWR | fsConstants.O_APPEND | fsConstants.O_CREAT,
        0o600,
      );
    } catch (err) {
      throw unavailable('audit_unavailable', `audit: cannot open ${path}: ${describe(err)}`, err);
    }
    try {
      const { size } = await handle.stat();
      const lastHash = size === 0 ? GENESIS_HASH : await readTailHash(handle, size, path);
      if (size === 0 && fsync) await syncDirectory(fileSystem, dir);
      return new FileChainSink(path, handle, lastHash, fsync, now, nextId);
    } catch (err) {
      await handle.close().catch(() => undefined);
      if (err instanceof BrokerError) throw err;
      throw unavailable('audit_unavailable', `audit: cannot read ${path}: ${describe(err)}`, err);
    }
  }

  write(event: AuditEventInput): Promise<AuditRecord> {
    const refusal = this.refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    let record: AuditRecord;
    try {
      record = sealRecord(this.lastHash, event, this.nextId(), this.now().toISOString());
    } catch (err) {
      return Promise.reject(err);
    }
    // Chained now, in call order; the flush loop preserves that order on disk.
    this.lastHash = record.hash;
    return new Promise<AuditRecord>((resolve, reject) => {
      this.queue.push({ record, line: `${JSON.stringify(record)}\n`, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /** Flushes what was accepted, then closes; later writes reject. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flushing;
      await this.handle.close();
    })();
    return this.closing;
  }

  private refusal(): BrokerError | undefined {
    if (this.failure !== undefined) return this.failure;
    if (this.closing !== undefined) return unavailable('audit_closed', 'audit log closed');
    return undefined;
  }

  private async flushLoop(): Promise<void> {
    // One microtask of patience lets writes issued in the same tick share the first sync.
    await Promise.resolve();
    while (this.queue.length > 0) {
      const batch = this.queue;
      this.queue = [];
      try {
        await writeFully(this.handle, Buffer.from(batch.map((p) => p.line).join(''), 'utf8'));
        if (this.fsync) await this.handle.datasync();
      } catch (err) {
        // The message reaches callers, so it stays generic; the path and errno travel in the cause.
        const detail = new Error(
          `audit: writing ${this.path} failed (${describe(err)}); the sink stays failed because the chain position is uncertain`,
          { cause: err },
        );
        this.failure = unavailable('audit_unavailable', 'audit log unavailable', detail);
        for (const pending of [...batch, ...this.queue]) pending.reject(this.failure);
        this.queue = [];
        break;
      }
      for (const pending of batch) pending.resolve(pending.record);
    }
    this.flushing = undefined;
  }
}

async function writeFully(handle: ChainFileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    offset += bytesWritten;
  }
}

async function readFully(handle: ChainFileHandle, buffer: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, position + offset);
    if (bytesRead <= 0) throw new Error('file shrank while reading its tail');
    offset += bytesRead;
  }
}

/** Returns the hash of the last record, after checking that record's own hash. */
async function readTailHash(handle: ChainFileHandle, size: number, path: string): Promise<string> {
  let tail = Buffer.alloc(0);
  let start = size;
  // Read backwards until the newline before the last line (or the file's start) is in hand.
  while (start > 0 && (tail.length < 2 || tail.lastIndexOf(NEWLINE, tail.length - 2) < 0)) {
    const from = Math.max(0, start - TAIL_CHUNK_BYTES);
    const chunk = Buffer.alloc(start - from);
    await readFully(handle, chunk, from);
    tail = Buffer.concat([chunk, tail]);
    start = from;
  }
  const lineStart = tail.length < 2 ? 0 : tail.lastIndexOf(NEWLINE, tail.length - 2) + 1;
  if (tail[tail.length - 1] !== NEWLINE) {
    const offset = start + lineStart;
    throw failedPrecondition(
      'audit_partial_record',
      `audit: ${path} ends with an incomplete record (${size - offset} bytes after byte ${offset}), ` +
        'most likely a write cut short by a crash; it was never acknowledged. Refusing to continue the chain: ' +
        `inspect the tail, then truncate the file to ${offset} bytes (truncate -s ${offset} ${path}) and run ` +
        '`svid-broker audit verify` before restarting.',
    );
  }
  const line = tail.subarray(lineStart, tail.length - 1).toString('utf8');
  const check = checkRecordLine(line, undefined);
  if (!check.ok) {
    throw failedPrecondition(
      'audit_chain_damaged',
      `audit: the last record of ${path} is damaged (${check.error}); run \`svid-broker audit verify ${path}\``,
    );
  }
  return check.hash;
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
    return code === undefined ? err.message : `${code}: ${err.message}`;
  }
  return String(err);
}
