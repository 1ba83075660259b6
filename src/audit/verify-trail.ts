/**
 * Verifies a whole trail: the rotated files and the active one, in chain order (by the seq of
 * their first record, whatever order they were named in), each continuing the one before (a
 * missing file is a break in prev_hash and seq), optionally against signed checkpoints: every
 * note must verify with the given key, the chain at each note's size must have exactly its hash,
 * and the trail must reach the last note's size (a tail cut after the fact still chains, only
 * the checkpoint shows it). Backs `svid-broker audit verify FILE... --checkpoints`.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { ChainVerifier, GENESIS_START, type ChainStart } from './hash-chain.js';
import { openNote, splitNotes, type NoteVerifier } from './signed-note.js';
import { parseCheckpointText } from './tlog-checkpoint.js';

export interface TrailCheckpoints {
  /** The notes file's path (for messages) and text. */
  path: string;
  text: string;
  verifier: NoteVerifier;
}

/** Where a trail is good up to: the record before a break. */
export interface TrailPosition {
  file: string;
  /** Line of that record in its file (0: before the file's first line). */
  line: number;
  hash: string;
}

export type TrailResult =
  | {
      ok: true;
      files: string[];
      count: number;
      lastHash: string;
      lastSeq: number;
      /** Checkpoints checked, and the seq the latest covers (undefined without --checkpoints). */
      checkpoints?: { count: number; latest: number };
    }
  | {
      ok: false;
      files: string[];
      /** Valid records before the break. */
      count: number;
      error: string;
      /** The first bad record, when the break is one (not a bad note). */
      at?: { file: string; line: number; id?: string };
      lastGood?: TrailPosition;
      truncated?: boolean;
    };

interface Note {
  hash: string;
  line: number;
}

type Notes = { ok: true; bySeq: Map<number, Note>; latest: number } | { ok: false; error: string };

/** Every note verified with the key, mapped by the seq it covers; the first bad one refuses all. */
export function readCheckpointNotes(cps: TrailCheckpoints): Notes {
  const bySeq = new Map<number, Note>();
  let latest = -1;
  for (const { note, line } of splitNotes(cps.text)) {
    const where = `checkpoint at line ${line} of ${cps.path}`;
    const opened = openNote(note, cps.verifier);
    if (!opened.ok) return { ok: false, error: `${where}: ${opened.error}` };
    let cp;
    try {
      cp = parseCheckpointText(opened.text);
    } catch (err) {
      return { ok: false, error: `${where}: ${(err as Error).message}` };
    }
    const seen = bySeq.get(cp.size);
    if (seen !== undefined && seen.hash !== cp.hash) {
      return {
        ok: false,
        error: `${where}: seq ${cp.size} was signed before (line ${seen.line}) with another hash`,
      };
    }
    bySeq.set(cp.size, { hash: cp.hash, line });
    latest = Math.max(latest, cp.size);
  }
  if (latest < 0) return { ok: false, error: `no checkpoint in ${cps.path}` };
  return { ok: true, bySeq, latest };
}

export async function verifyTrail(paths: readonly string[], cps?: TrailCheckpoints): Promise<TrailResult> {
  const notes = cps === undefined ? undefined : readCheckpointNotes(cps);
  const files = await chainOrder(paths);
  if (notes !== undefined && !notes.ok) return { ok: false, files, count: 0, error: notes.error };
  const walk = new TrailWalk(notes?.bySeq ?? new Map());
  for (const file of files) {
    const broken = await walk.file(file);
    if (broken !== undefined) return { ...broken, files };
  }
  const { count, head } = walk;
  const lastSeq = head.seq ?? 0;
  if (notes === undefined) return { ok: true, files, count, lastHash: head.hash, lastSeq };
  if (notes.latest > lastSeq) {
    const error = `truncated: the last checkpoint covers seq ${notes.latest}, the trail ends at ${lastSeq}`;
    return { ok: false, files, count, error, truncated: true, lastGood: walk.position };
  }
  // Every note verified and was reached (a note at size 0 covers the genesis hash).
  const checkpoints = { count: notes.bySeq.size, latest: notes.latest };
  return { ok: true, files, count, lastHash: head.hash, lastSeq, checkpoints };
}

/** The walk across files: one chain verifier per file, each starting where the last ended. */
class TrailWalk {
  count = 0;
  head: ChainStart = GENESIS_START;
  position: TrailPosition = { file: '', line: 0, hash: GENESIS_START.hash };

  constructor(private readonly notes: Map<number, Note>) {}

  async file(file: string): Promise<Extract<TrailResult, { ok: false }> | undefined> {
    const verifier = new ChainVerifier(this.head);
    let line = 0;
    for await (const text of readLines(file)) {
      line += 1;
      verifier.push(text);
      const r = verifier.result();
      if (!r.ok) {
        const at = r.id === undefined ? { file, line: r.line } : { file, line: r.line, id: r.id };
        return { ok: false, files: [], count: this.count, error: r.error, at, lastGood: this.position };
      }
      if (text === '') continue; // tolerated at the very end only (the verifier says so otherwise)
      this.count += 1;
      this.head = r.lastSeq === undefined ? { hash: r.lastHash } : { hash: r.lastHash, seq: r.lastSeq };
      const mismatch = this.checkNote(text, file, line);
      if (mismatch !== undefined) return mismatch;
      this.position = { file, line, hash: r.lastHash };
    }
    return undefined;
  }

  /** The chain at a note's size must have exactly the note's hash. */
  private checkNote(
    text: string,
    file: string,
    line: number,
  ): Extract<TrailResult, { ok: false }> | undefined {
    const note = this.head.seq === undefined ? undefined : this.notes.get(this.head.seq);
    if (note === undefined) return undefined;
    if (note.hash === this.head.hash) return undefined;
    const id = (JSON.parse(text) as { id: string }).id;
    return {
      ok: false,
      files: [],
      count: this.count - 1,
      error:
        `checkpoint mismatch: the checkpoint at line ${note.line} covers seq ${this.head.seq} with hash ` +
        `${note.hash}, the chain has ${this.head.hash} (records up to this one were rewritten)`,
      at: { file, line, id },
      lastGood: this.position,
    };
  }
}

/** The files in chain order: by the seq of their first record; files without records last. */
async function chainOrder(paths: readonly string[]): Promise<string[]> {
  const keyed = await Promise.all(paths.map(async (path, i) => ({ path, i, seq: await firstSeq(path) })));
  return keyed.sort((a, b) => a.seq - b.seq || a.i - b.i).map((k) => k.path);
}

/** seq of the file's first record (0 when it has none or is not a record: it is checked first). */
async function firstSeq(path: string): Promise<number> {
  for await (const line of readLines(path)) {
    if (line === '') return Number.POSITIVE_INFINITY;
    try {
      const seq = (JSON.parse(line) as { seq?: unknown }).seq;
      return typeof seq === 'number' ? seq : 0;
    } catch {
      return 0;
    }
  }
  return Number.POSITIVE_INFINITY;
}

/** The file's lines, streamed (constant memory); rejects when it cannot be opened. */
async function* readLines(path: string): AsyncGenerator<string> {
  const input = createReadStream(path, { encoding: 'utf8' });
  await new Promise<void>((resolve, reject) => {
    input.once('ready', () => resolve());
    input.once('error', reject);
  });
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    yield* lines;
  } finally {
    lines.close();
    input.destroy();
  }
}
