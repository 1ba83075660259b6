/**
 * Rotation of the chain file (`audit.rotate`). Once the active file has reached `maxBytes` or is
 * older than `maxAgeSeconds` (its first record's time), the sink, before it writes its next batch,
 * renames it to `rotatedFileName(file, firstSeq, lastSeq)` (chain-files.ts), starts a new empty
 * active file, saves `<file>.checkpoint` as `{size: 0, hash: <last hash>}` and fsyncs the
 * directory. The next record links to the last one as always (prev_hash, seq + 1): the chain
 * continues, and no record is written twice or lost, since records are sealed before any batch
 * and batches never straddle a rotation.
 *
 * A crash between the rename and the first write leaves no active file, or an empty one, and a
 * `.checkpoint` that may still describe the file just rotated: startup then continues from the
 * newest rotated file's last record (verifying it since that checkpoint).
 */
import { constants as fsConstants } from 'node:fs';
import { failedPrecondition } from '../errors.js';
import type { Checkpoint } from './chain-checkpoint.js';
import { verifyChainSince } from './chain-checkpoint.js';
import { listRotatedFiles } from './chain-files.js';
import { readBytes, readChainTail, type TailReader, type TailStart } from './chain-tail.js';
import { GENESIS_HASH } from './hash-chain.js';

export interface RotationPolicy {
  maxBytes?: number | undefined;
  maxAgeSeconds?: number | undefined;
}

/** The active file as rotation sees it: its size, the seq of its first record, when it began. */
export interface ActiveFile {
  size: number;
  firstSeq: number;
  /** Epoch ms of its first record; undefined while it holds none. */
  startedAt: number | undefined;
}

/** The slice of the sink's file system that opening a rotated file needs. */
interface RotatedFileOpener {
  open(
    path: string,
    flags: number,
    mode: number,
  ): Promise<TailReader & { stat(): Promise<{ size: number }>; close(): Promise<void> }>;
}

/** Whether the active file has passed a bound (an empty file never rotates). */
export function rotationDue(policy: RotationPolicy, file: ActiveFile, nowMs: number): boolean {
  if (file.size === 0) return false;
  if (policy.maxBytes !== undefined && file.size >= policy.maxBytes) return true;
  return (
    policy.maxAgeSeconds !== undefined &&
    file.startedAt !== undefined &&
    nowMs - file.startedAt >= policy.maxAgeSeconds * 1000
  );
}

const GENESIS_TAIL: TailStart = Object.freeze({ hash: GENESIS_HASH, seq: 0 });

/** Where the active file's chain starts, and the checkpoint to verify it from. */
export interface ResumePoint {
  start: TailStart;
  /** What the active file is verified from (`<file>.checkpoint`, or its start when there is none). */
  from: Checkpoint;
}

/**
 * The head the active file continues (genesis, or the newest rotated file's last record) and the
 * checkpoint that applies to it. With an empty active file the checkpoint may still describe the
 * newest rotated file (a crash right after the rename): that file is then verified since it.
 */
export async function resumePoint(
  fileSystem: RotatedFileOpener,
  auditFile: string,
  activeSize: number,
  checkpoint: Checkpoint | undefined,
): Promise<ResumePoint> {
  const newest = (await listRotatedFiles(auditFile)).at(-1);
  if (newest === undefined)
    return { start: GENESIS_TAIL, from: checkpoint ?? { size: 0, hash: GENESIS_HASH } };
  const handle = await fileSystem.open(newest.path, fsConstants.O_RDONLY, 0);
  try {
    const { size } = await handle.stat();
    const tail = await readChainTail(handle, size, newest.path);
    if (tail.torn !== undefined || tail.lastSeq !== newest.lastSeq) {
      throw failedPrecondition(
        'audit_chain_damaged',
        `audit: the rotated file ${newest.path} does not end at seq ${newest.lastSeq}; ` +
          `run \`svid-broker audit verify\` on the trail`,
      );
    }
    const start = { hash: tail.lastHash, seq: newest.lastSeq };
    const atStart = { size: 0, hash: start.hash };
    const refersToRotated =
      activeSize === 0 &&
      checkpoint !== undefined &&
      !(checkpoint.size === 0 && checkpoint.hash === start.hash);
    if (!refersToRotated) return { start, from: checkpoint ?? atStart };
    await verifyChainSince(handle, checkpoint, size, start.hash, newest.path);
    return { start, from: atStart };
  } finally {
    await handle.close();
  }
}

/** Epoch ms of the file's first record (undefined when it has none or its time does not parse). */
export async function firstRecordTime(handle: TailReader, size: number): Promise<number | undefined> {
  if (size === 0) return undefined;
  const head = await readBytes(handle, 0, Math.min(size, 64 * 1024));
  const newline = head.indexOf(0x0a);
  try {
    const record = JSON.parse(head.subarray(0, newline < 0 ? head.length : newline).toString('utf8')) as {
      time?: unknown;
    };
    const ms = typeof record.time === 'string' ? Date.parse(record.time) : NaN;
    return Number.isNaN(ms) ? undefined : ms;
  } catch {
    return undefined;
  }
}
