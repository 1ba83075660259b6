import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { computeRecordHash, type RecordWithoutHash } from '../../../src/audit/hash-chain.js';
import type { AuditRecord } from '../../../src/audit/types.js';
import { main } from '../../../src/cli/cli.js';
import { buildTrail, editLines, type TrailFixture } from '../audit/trail-fixture.js';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { log, error } = console;
  let out = '';
  let err = '';
  console.log = (...a: unknown[]) => void (out += `${a.map(String).join(' ')}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.map(String).join(' ')}\n`);
  try {
    return { code: await main(args), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const idOf = (line: string | undefined): string => (JSON.parse(line as string) as AuditRecord).id;

/** What an attacker with the files (not the key) does: edit one record and re-seal every hash after it. */
async function editAndReseal(files: string[], seq: number): Promise<void> {
  let prev: string | undefined;
  for (const file of files) {
    await editLines(file, (lines) =>
      lines.map((line) => {
        const { hash: _old, ...rest } = JSON.parse(line) as AuditRecord;
        if (rest.seq === seq) rest.lease_id = 'lease-forged';
        if (prev !== undefined && rest.seq > seq) rest.prev_hash = prev;
        const hash = rest.seq >= seq ? computeRecordHash(rest.prev_hash, rest as RecordWithoutHash) : _old;
        prev = hash;
        return JSON.stringify({ ...rest, hash });
      }),
    );
  }
}

describe('cli: audit verify FILE... --checkpoints --key', () => {
  let t: TrailFixture;
  const verify = (files: string[], ...flags: string[]) => run(['audit', 'verify', ...files, ...flags]);
  const withCheckpoints = (files: string[]) => verify(files, '--checkpoints', t.notesFile, '--key', t.vkey);

  beforeEach(async () => {
    t = await buildTrail();
    assert.ok(t.files.length >= 4, `a trail of several files (got ${t.files.length})`);
  });

  afterEach(() => rm(t.dir, { recursive: true, force: true }));

  it('an intact trail verifies in any file order, with its checkpoints', async () => {
    const res = await withCheckpoints([...t.files].reverse());
    assert.equal(res.code, 0, res.err);
    assert.match(
      res.out,
      new RegExp(`^ok: 40 records in ${t.files.length} files, chain intact, last hash [0-9a-f]{64}\n`),
    );
    assert.match(
      res.out,
      /ok: 7 checkpoints verify with key svid-broker\/example\.org\/broker; the latest covers seq 40/,
    );
  });

  it('one file keeps the single-file output', async () => {
    const res = await verify([t.files[0] as string]);
    assert.equal(res.code, 0, res.err);
    assert.match(res.out, /^ok: \d+ records, chain intact, last hash [0-9a-f]{64}\n$/);
  });

  it('an edited record is named (file, line, id)', async () => {
    const file = t.files[1] as string;
    let id = '';
    await editLines(file, (lines) => {
      id = idOf(lines[2]);
      lines[2] = (lines[2] as string).replace(/lease-\d+/, 'lease-other');
      return lines;
    });
    const res = await withCheckpoints(t.files);
    assert.equal(res.code, 1);
    assert.match(res.err, new RegExp(`BROKEN at ${file} line 3 \\(record ${id}\\): hash mismatch`));
    assert.match(res.err, /lines 1-2 verify; the last good record is line 2/);
  });

  it('a deleted record breaks the link of the next one', async () => {
    const file = t.files[2] as string;
    let id = '';
    await editLines(file, (lines) => {
      id = idOf(lines[2]);
      return lines.filter((_, i) => i !== 1);
    });
    const res = await withCheckpoints(t.files);
    assert.equal(res.code, 1);
    assert.match(res.err, new RegExp(`BROKEN at ${file} line 2 \\(record ${id}\\): prev_hash mismatch`));
  });

  it('reordered records are caught', async () => {
    const file = t.files[0] as string;
    await editLines(file, (lines) => [lines[0], lines[2], lines[1], ...lines.slice(3)] as string[]);
    const res = await withCheckpoints(t.files);
    assert.equal(res.code, 1);
    assert.match(res.err, new RegExp(`BROKEN at ${file} line 2 .*prev_hash mismatch`));
  });

  it('a missing middle file is a break at the first record after the gap', async () => {
    const files = t.files.filter((_, i) => i !== 1);
    const res = await verify(files);
    assert.equal(res.code, 1);
    assert.match(res.err, new RegExp(`BROKEN at ${t.files[2]} line 1 .*prev_hash mismatch`));
    assert.match(
      res.err,
      /\n {2}2\. the files before it verify; the last good record is \S+ line \d+, hash [0-9a-f]{64};/,
    );
  });

  it('a truncated tail still chains on its own; only the checkpoint catches it', async () => {
    const active = t.files.at(-1) as string;
    const rotated = t.files.at(-2) as string;
    await writeFile(active, '');
    await editLines(rotated, (lines) => lines.slice(0, -1));
    // Without its last record the rotated file's name no longer matches, but the chain still holds.
    const alone = await verify(t.files);
    assert.equal(alone.code, 0, alone.err);
    const res = await withCheckpoints(t.files);
    assert.equal(res.code, 1);
    assert.match(res.err, /^BROKEN: truncated: the last checkpoint covers seq 40, the trail ends at \d+\n/);
    assert.match(res.err, /records signed by a checkpoint are missing from the end of the trail/);
  });

  it('an edit re-sealed by someone without the key chains, but the checkpoint catches it', async () => {
    await editAndReseal(t.files, 12);
    assert.equal((await verify(t.files)).code, 0, 'the re-sealed chain verifies on its own');
    const res = await withCheckpoints(t.files);
    assert.equal(res.code, 1);
    assert.match(
      res.err,
      /checkpoint mismatch: the checkpoint at line \d+ covers seq 14 with hash [0-9a-f]{64}, the chain has/,
    );
  });

  it('a note with a bad signature, or checked with the wrong key, is refused', async () => {
    const text = await readFile(t.notesFile, 'utf8');
    const lines = text.split('\n');
    const sigLine = lines.findIndex((l) => l.startsWith('— '));
    const sig = Buffer.from((lines[sigLine] as string).split(' ')[2] as string, 'base64');
    sig[20] = (sig[20] as number) ^ 0xff;
    lines[sigLine] =
      `${(lines[sigLine] as string).split(' ').slice(0, 2).join(' ')} ${sig.toString('base64')}`;
    await writeFile(t.notesFile, lines.join('\n'));
    const bad = await withCheckpoints(t.files);
    assert.equal(bad.code, 1);
    assert.match(
      bad.err,
      new RegExp(`BROKEN: checkpoint at line 1 of ${t.notesFile}: signature does not verify`),
    );

    const other = await buildTrail(3);
    try {
      await writeFile(t.notesFile, text);
      const wrong = await verify(t.files, '--checkpoints', t.notesFile, '--key', other.vkey);
      assert.equal(wrong.code, 1);
      assert.match(wrong.err, /no signature by key svid-broker\/example\.org\/broker \(wrong key\?\)/);
      // --key also takes a file holding the vkey.
      const keyFile = join(t.dir, 'vkey.txt');
      await writeFile(keyFile, `${t.vkey}\n`);
      assert.equal((await verify(t.files, '--checkpoints', t.notesFile, '--key', keyFile)).code, 0);
    } finally {
      await rm(other.dir, { recursive: true, force: true });
    }
  });

  it('usage: --checkpoints needs --key, and a malformed key is a usage error (exit 2)', async () => {
    assert.equal((await verify(t.files, '--checkpoints', t.notesFile)).code, 2);
    assert.equal((await verify(t.files, '--checkpoints', t.notesFile, '--key', 'nonsense')).code, 2);
    assert.equal((await verify(t.files, '--key', t.vkey)).code, 2);
  });
});
