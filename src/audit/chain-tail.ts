/**
 * Reading where an audit file's chain ends, and deciding whether a torn tail is the sink's own
 * interrupted write (safe to cut) or something else (refused: it may be tampering).
 *
 * The sink writes whole records, each `JSON.stringify(record) + '\n'`, and answers a caller only
 * after its batch is synced, so bytes after the last newline were never acknowledged. They are
 * provably the sink's own partial write when all of these hold:
 *   - the last complete line is a record whose own hash verifies (the chain ends in good order);
 *   - the fragment is the start of a record as the sink serialises it (`{"id":"`);
 *   - if the fragment got as far as its `prev_hash`, that is the hash of the last record.
 * Anything else (garbage after the last record, a damaged last record, a fragment that claims
 * another predecessor) is refused with the offset an operator can cut at after looking.
 */
import { createHash } from 'node:crypto';
import { failedPrecondition } from '../errors.js';
import { checkRecordLine, GENESIS_HASH } from './hash-chain.js';

/** The slice of a file handle reading the chain needs (the tail, and the walk since the checkpoint). */
export interface TailReader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** Where the chain ends: the hash to continue from, and a torn tail to cut, if any. */
export interface ChainTail {
  lastHash: string;
  /** seq of the last complete record: 0 for an empty file, undefined for a record from before seq. */
  lastSeq: number | undefined;
  /** Bytes up to and including the last complete record's newline. */
  completeSize: number;
  /** Present when the file ends in the sink's own partial write (after completeSize). */
  torn?: { bytes: number; sha256: string };
}

/** Tail reads go backwards in chunks of this size until the start of the last line is found. */
const TAIL_CHUNK_BYTES = 64 * 1024;
const NEWLINE = 0x0a;
/** How every record the sink writes begins (sealRecord puts `id` first). */
const RECORD_START = '{"id":"';
const PREV_HASH_FIELD = /"prev_hash":"([0-9a-f]{64})"/;

/** The head a file without a complete record continues: genesis, or the newest rotated file's last record. */
export interface TailStart {
  hash: string;
  seq: number;
}

const GENESIS_TAIL: TailStart = Object.freeze({ hash: GENESIS_HASH, seq: 0 });

/**
 * Reads the end of a file of `size` bytes and says where the chain ends (throws when refused).
 * `start` is what a file holding no complete record continues from.
 */
export async function readChainTail(
  handle: TailReader,
  size: number,
  path: string,
  start: TailStart = GENESIS_TAIL,
): Promise<ChainTail> {
  if (size === 0) return { lastHash: start.hash, lastSeq: start.seq, completeSize: 0 };
  const { tail, start: tailStart } = await readLastLines(handle, size);
  const endsWithNewline = tail[tail.length - 1] === NEWLINE;
  // Index just after the newline that closes the last complete record (-1: none in hand).
  const lastNewline = tail.lastIndexOf(NEWLINE, endsWithNewline ? tail.length - 1 : tail.length);
  if (endsWithNewline) {
    return { ...completeRecordHead(tail, lastNewline, path), completeSize: size };
  }
  const completeSize = lastNewline < 0 ? tailStart : tailStart + lastNewline + 1;
  const fragment = tail.subarray(lastNewline + 1);
  const { lastHash, lastSeq } =
    completeSize === 0
      ? { lastHash: start.hash, lastSeq: start.seq }
      : completeRecordHead(tail, lastNewline, path);
  if (!isOwnPartialRecord(fragment.toString('utf8'), lastHash)) {
    throw failedPrecondition(
      'audit_partial_record',
      `audit: ${path} ends with ${size - completeSize} bytes after byte ${completeSize} that are not a ` +
        'record this broker was writing. Refusing to continue the chain: inspect the tail, then truncate ' +
        `the file to ${completeSize} bytes (truncate -s ${completeSize} ${path}) and run ` +
        '`svid-broker audit verify` before restarting.',
    );
  }
  return {
    lastHash,
    lastSeq,
    completeSize,
    torn: { bytes: fragment.length, sha256: createHash('sha256').update(fragment).digest('hex') },
  };
}

/** True when `fragment` is the beginning of a record the sink would write after `lastHash`. */
export function isOwnPartialRecord(fragment: string, lastHash: string): boolean {
  const head = fragment.slice(0, RECORD_START.length);
  if (!RECORD_START.startsWith(head) || fragment.length === 0) return false;
  const prev = PREV_HASH_FIELD.exec(fragment);
  return prev === null || prev[1] === lastHash;
}

/**
 * The bytes from the start of the line before the last one (or the file's start) to the end:
 * enough to hold the last complete record and whatever follows it.
 */
async function readLastLines(handle: TailReader, size: number): Promise<{ tail: Buffer; start: number }> {
  let tail = Buffer.alloc(0);
  let start = size;
  // Two newlines in hand: the one that closes the last complete record and the one before it.
  while (start > 0 && countNewlines(tail, 2) < 2) {
    const from = Math.max(0, start - TAIL_CHUNK_BYTES);
    tail = Buffer.concat([await readBytes(handle, from, start - from), tail]);
    start = from;
  }
  // Drop what comes before the line that holds the last complete record.
  const cut = lineStartBefore(tail);
  return { tail: tail.subarray(cut), start: start + cut };
}

function countNewlines(buffer: Buffer, atMost: number): number {
  let count = 0;
  for (let i = buffer.length - 1; i >= 0 && count < atMost; i -= 1) if (buffer[i] === NEWLINE) count += 1;
  return count;
}

/** Start of the last complete line (the one before a trailing fragment or the final newline). */
function lineStartBefore(tail: Buffer): number {
  const end = tail[tail.length - 1] === NEWLINE ? tail.length - 1 : tail.lastIndexOf(NEWLINE);
  if (end <= 0) return 0;
  return tail.lastIndexOf(NEWLINE, end - 1) + 1;
}

/** The hash of the complete record that ends at `newlineAt`, after checking its own hash. */
function completeRecordHead(
  tail: Buffer,
  newlineAt: number,
  path: string,
): { lastHash: string; lastSeq: number | undefined } {
  const lineStart = newlineAt <= 0 ? 0 : tail.lastIndexOf(NEWLINE, newlineAt - 1) + 1;
  const check = checkRecordLine(tail.subarray(lineStart, newlineAt).toString('utf8'), undefined);
  if (!check.ok) {
    throw failedPrecondition(
      'audit_chain_damaged',
      `audit: the last record of ${path} is damaged (${check.error}); run \`svid-broker audit verify ${path}\``,
    );
  }
  return { lastHash: check.hash, lastSeq: check.seq };
}

/** Exactly `length` bytes from `position` (the tail here, the walk since the checkpoint). */
export async function readBytes(handle: TailReader, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let offset = 0;
  while (offset < length) {
    const { bytesRead } = await handle.read(buffer, offset, length - offset, position + offset);
    if (bytesRead <= 0) throw new Error('the file shrank while being read');
    offset += bytesRead;
  }
  return buffer;
}
