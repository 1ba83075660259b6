/**
 * The sink's own checkpoint beside the audit file (`<file>.checkpoint`: the size and chain head it
 * had synced), so a restart verifies every record written since, not only the last one. A record
 * edited a few lines before the end leaves the last record's own hash intact; only walking the
 * chain from a point known good catches it. Without a checkpoint (a new file, or the first start
 * after an upgrade) the walk starts at the genesis hash: the whole file is read once.
 */
import { open, readFile, rename } from 'node:fs/promises';
import { failedPrecondition } from '../errors.js';
import { readBytes, type TailReader } from './chain-tail.js';
import { checkRecordLine, GENESIS_HASH } from './hash-chain.js';

export interface Checkpoint {
  /** Bytes of the file up to and including the newline of the record whose hash is `hash`. */
  size: number;
  hash: string;
}

const CHUNK_BYTES = 256 * 1024;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

export const checkpointFile = (auditPath: string): string => `${auditPath}.checkpoint`;

export const GENESIS_CHECKPOINT: Checkpoint = Object.freeze({ size: 0, hash: GENESIS_HASH });

/** The checkpoint, or undefined when there is none; a malformed one is refused (fail closed). */
export async function readCheckpoint(auditPath: string): Promise<Checkpoint | undefined> {
  let text: string;
  try {
    text = await readFile(checkpointFile(auditPath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = safeParse(text) as Partial<Checkpoint> | undefined;
  if (
    !parsed ||
    !Number.isSafeInteger(parsed.size) ||
    (parsed.size ?? -1) < 0 ||
    typeof parsed.hash !== 'string' ||
    !HEX_SHA256.test(parsed.hash)
  ) {
    throw failedPrecondition(
      'audit_checkpoint_invalid',
      `audit: ${checkpointFile(auditPath)} is not a checkpoint this broker wrote; refusing to continue the chain. ` +
        'Keep both files as evidence and start a new trail (see "svid-broker audit verify").',
    );
  }
  return { size: parsed.size as number, hash: parsed.hash };
}

/**
 * Atomic replace (write beside, then rename); mode 0600 like the trail. With `fsync` the new text
 * is on disk before the rename: otherwise a power cut can leave the renamed file empty, and an
 * empty checkpoint is refused at startup (readCheckpoint), keeping the broker down.
 */
export async function writeCheckpoint(auditPath: string, cp: Checkpoint, fsync: boolean): Promise<void> {
  const file = checkpointFile(auditPath);
  const tmp = `${file}.tmp`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify({ size: cp.size, hash: cp.hash })}\n`, 'utf8');
    if (fsync) await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
}

/**
 * Walks the records from `from` to `end` (the last complete record's newline) and checks each
 * one's own hash and its link to the one before, ending at `head`. Throws FAILED_PRECONDITION
 * naming the first record that does not verify.
 */
export async function verifyChainSince(
  handle: TailReader,
  from: Checkpoint,
  end: number,
  head: string,
  path: string,
): Promise<void> {
  const refuse = (what: string): never => {
    throw failedPrecondition(
      'audit_tail_unverified',
      `audit: ${path}: ${what}. Refusing to append to a chain that does not verify since its last ` +
        `checkpoint (byte ${from.size}). Keep the file as evidence, run "svid-broker audit verify ${path}" ` +
        'to see the first bad record, and start a new trail (move the file and its .checkpoint aside).',
    );
  };
  if (from.size > end)
    refuse(`the file (${end} bytes) is shorter than its last checkpoint (${from.size} bytes)`);
  let prev = from.hash;
  let offset = from.size;
  for await (const line of linesBetween(handle, from.size, end)) {
    const check = checkRecordLine(line, prev);
    if (!check.ok) {
      refuse(
        `the record at byte ${offset}${check.id ? ` (${check.id})` : ''} does not verify: ${check.error}`,
      );
    } else prev = check.hash;
    offset += Buffer.byteLength(line) + 1;
  }
  if (prev !== head) refuse('the chain since the checkpoint does not end at the last record');
}

/** Each newline-terminated line in [start, end), read in chunks. */
async function* linesBetween(handle: TailReader, start: number, end: number): AsyncGenerator<string> {
  let carry = Buffer.alloc(0);
  for (let pos = start; pos < end;) {
    const length = Math.min(CHUNK_BYTES, end - pos);
    let data = Buffer.concat([carry, await readBytes(handle, pos, length)]);
    pos += length;
    for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a)) {
      yield data.subarray(0, nl).toString('utf8');
      data = data.subarray(nl + 1);
    }
    carry = data;
  }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
