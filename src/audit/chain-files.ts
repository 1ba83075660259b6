/**
 * Where a replica's chain lives on disk: the active file (`audit.file`) and, once rotation is on,
 * the files rotated out of it, named by the seq range they hold so that name order is chain order:
 *
 *   <audit.file>.<first seq, 12 digits>-<last seq, 12 digits>   e.g. audit.jsonl.000000000001-000000004096
 *
 * The chain continues across them: the first record of each file links (prev_hash, seq) to the
 * last record of the file before it.
 */
import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const SEQ_DIGITS = 12;
const ROTATED_SUFFIX = new RegExp(`^\\.(\\d{${SEQ_DIGITS}})-(\\d{${SEQ_DIGITS}})$`);

export interface RotatedFile {
  path: string;
  firstSeq: number;
  lastSeq: number;
}

/** The name a file holding records `firstSeq`..`lastSeq` gets when it is rotated out. */
export function rotatedFileName(auditFile: string, firstSeq: number, lastSeq: number): string {
  const pad = (n: number): string => String(n).padStart(SEQ_DIGITS, '0');
  return `${auditFile}.${pad(firstSeq)}-${pad(lastSeq)}`;
}

/** The rotated files of `auditFile`, oldest first (none when rotation never ran). */
export async function listRotatedFiles(auditFile: string): Promise<RotatedFile[]> {
  const dir = dirname(auditFile);
  const base = basename(auditFile);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const rotated: RotatedFile[] = [];
  for (const name of names) {
    if (!name.startsWith(base)) continue;
    const m = ROTATED_SUFFIX.exec(name.slice(base.length));
    if (m === null) continue;
    rotated.push({ path: join(dir, name), firstSeq: Number(m[1]), lastSeq: Number(m[2]) });
  }
  return rotated.sort((a, b) => a.firstSeq - b.firstSeq);
}

/** Every file of the chain in chain order: the rotated ones, then the active file. */
export async function listChainFiles(auditFile: string): Promise<string[]> {
  return [...(await listRotatedFiles(auditFile)).map((f) => f.path), auditFile];
}
