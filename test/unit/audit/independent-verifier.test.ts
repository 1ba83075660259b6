/**
 * A second verifier written from the README alone ("Checking a trail from outside"), importing
 * nothing from src/audit: the hash rule, seq continuity across files, the signed-note check with
 * node:crypto. It and `audit verify` (verifyTrail) must reach the same verdict on the same trails,
 * good and tampered.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import canonicalizeExport from 'canonicalize';
import { verifyTrail } from '../../../src/audit/verify-trail.js';
import { parseVkey } from '../../../src/audit/signed-note.js';
import { packageRoot } from '../../../src/package-root.js';
import { buildTrail, editLines, type TrailFixture } from './trail-fixture.js';

type Json = Record<string, unknown>;
const jcs = ((canonicalizeExport as unknown as { default?: unknown }).default ?? canonicalizeExport) as (
  v: unknown,
) => string;

type Verdict = { ok: true } | { ok: false; file?: string; line?: number; why: string };

const sha256hex = (prev: string, body: Json): string =>
  createHash('sha256')
    .update(Buffer.from(prev, 'utf8'))
    .update(Buffer.from(jcs(body), 'utf8'))
    .digest('hex');

/** Steps 1-2: chain order by first seq, then prev_hash, seq and hash for every record. */
function walkChain(files: string[]): { verdict: Verdict; hashBySeq: Map<number, string>; lastSeq: number } {
  const parsed = files.map((file) => ({
    file,
    lines: readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== ''),
  }));
  const firstSeq = (f: { lines: string[] }): number =>
    f.lines.length ? ((JSON.parse(f.lines[0] as string) as Json).seq as number) : Infinity;
  parsed.sort((a, b) => firstSeq(a) - firstSeq(b));
  const hashBySeq = new Map<number, string>();
  let prev = '0'.repeat(64);
  let lastSeq = 0;
  for (const { file, lines } of parsed) {
    for (const [i, line] of lines.entries()) {
      const { hash, ...body } = JSON.parse(line) as Json;
      const bad = (why: string): Verdict => ({ ok: false, file, line: i + 1, why });
      if (body.prev_hash !== prev) return { verdict: bad('prev_hash'), hashBySeq, lastSeq };
      if (body.seq !== lastSeq + 1) return { verdict: bad('seq'), hashBySeq, lastSeq };
      if (hash !== sha256hex(prev, body)) return { verdict: bad('hash'), hashBySeq, lastSeq };
      prev = hash as string;
      lastSeq = body.seq as number;
      hashBySeq.set(lastSeq, prev);
    }
  }
  return { verdict: { ok: true }, hashBySeq, lastSeq };
}

/** Step 3: a note's text, when a signature by the vkey's key verifies. */
function openNote(note: string, vkey: string): string | undefined {
  const [name, idHex, ...rest] = vkey.trim().split('+');
  const material = Buffer.from(rest.join('+'), 'base64');
  const key = createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: material.subarray(1).toString('base64url') },
    format: 'jwk',
  });
  const split = note.lastIndexOf('\n\n');
  const text = note.slice(0, split + 1);
  for (const line of note.slice(split + 2).split('\n')) {
    if (!line.startsWith(`\u2014 ${name} `)) continue;
    const blob = Buffer.from(line.split(' ')[2] as string, 'base64');
    if (blob.subarray(0, 4).toString('hex') !== idHex) continue;
    return verify(null, Buffer.from(text, 'utf8'), key, blob.subarray(4)) ? text : undefined;
  }
  return undefined;
}

function splitNotes(text: string): string[] {
  const notes: string[] = [];
  const lines = text.split('\n');
  let i = 0;
  while (i < lines.length) {
    if (lines[i] === '') {
      i += 1;
      continue;
    }
    const start = i;
    while (lines[i] !== '') i += 1;
    i += 1;
    while (i < lines.length && (lines[i] as string).startsWith('\u2014 ')) i += 1;
    notes.push(`${lines.slice(start, i).join('\n')}\n`);
  }
  return notes;
}

/** Steps 1-4. */
function independentVerify(files: string[], notesText: string, vkey: string): Verdict {
  const { verdict, hashBySeq, lastSeq } = walkChain(files);
  if (!verdict.ok) return verdict;
  let largest = 0;
  for (const note of splitNotes(notesText)) {
    const text = openNote(note, vkey);
    if (text === undefined) return { ok: false, why: 'note signature' };
    const [, size, root] = text.split('\n');
    const n = Number(size);
    largest = Math.max(largest, n);
    const hash = Buffer.from(root as string, 'base64').toString('hex');
    if (n > 0 && hashBySeq.has(n) && hashBySeq.get(n) !== hash) return { ok: false, why: 'checkpoint hash' };
  }
  return largest > lastSeq ? { ok: false, why: 'truncated' } : { ok: true };
}

async function bothVerdicts(t: TrailFixture, files = t.files, vkey = t.vkey): Promise<[Verdict, Verdict]> {
  const notes = await readFile(t.notesFile, 'utf8');
  const ours = await verifyTrail(files, { path: t.notesFile, text: notes, verifier: parseVkey(vkey) });
  const mine: Verdict = ours.ok
    ? { ok: true }
    : ours.at === undefined
      ? { ok: false, why: ours.error }
      : { ok: false, file: ours.at.file, line: ours.at.line, why: ours.error };
  return [mine, independentVerify(files, notes, vkey)];
}

function assertAgree([ours, theirs]: [Verdict, Verdict], expectOk: boolean): void {
  assert.equal(ours.ok, expectOk, `audit verify: ${JSON.stringify(ours)}`);
  assert.equal(theirs.ok, expectOk, `independent: ${JSON.stringify(theirs)}`);
  if (!ours.ok && !theirs.ok && theirs.line !== undefined && ours.line !== undefined) {
    assert.deepEqual([ours.file, ours.line], [theirs.file, theirs.line], 'the same first bad record');
  }
}

describe('audit: an independent verifier written from the README agrees with audit verify', () => {
  let t: TrailFixture;
  beforeEach(async () => {
    t = await buildTrail(30, 2000, 5);
  });
  afterEach(() => rm(t.dir, { recursive: true, force: true }));

  it('a good trail of several files: both accept', async () => {
    assert.ok(t.files.length >= 3);
    assertAgree(await bothVerdicts(t, [...t.files].reverse()), true);
  });

  const tamperings: Array<[string, (t: TrailFixture) => Promise<void>]> = [
    [
      'an edited record',
      (x) =>
        editLines(
          x.files[1] as string,
          (l) => [l[0], (l[1] as string).replace('lease-', 'lease-X'), ...l.slice(2)] as string[],
        ),
    ],
    ['a deleted record', (x) => editLines(x.files[0] as string, (l) => l.filter((_, i) => i !== 2))],
    [
      'reordered records',
      (x) => editLines(x.files[2] as string, (l) => [l[1], l[0], ...l.slice(2)] as string[]),
    ],
    ['a truncated tail', (x) => editLines(x.files.at(-1) as string, (l) => l.slice(0, -1))],
    ['a missing middle file', async (x) => void (await rm(x.files[1] as string))],
  ];
  for (const [what, tamper] of tamperings) {
    it(`${what}: both refuse, at the same record`, async () => {
      await tamper(t);
      const files = t.files.filter((f) => f !== t.files[1] || what !== 'a missing middle file');
      assertAgree(await bothVerdicts(t, files), false);
    });
  }

  it('a re-sealed edit: both refuse by the checkpoint', async () => {
    let prev = '';
    for (const file of t.files) {
      await editLines(file, (lines) =>
        lines.map((line) => {
          const { hash, ...body } = JSON.parse(line) as Json;
          if ((body.seq as number) < 8) {
            prev = hash as string;
            return line;
          }
          if (body.seq === 8) body.lease_id = 'lease-forged';
          body.prev_hash = prev;
          prev = sha256hex(prev, body);
          return JSON.stringify({ ...body, hash: prev });
        }),
      );
    }
    assert.equal(walkChain(t.files).verdict.ok, true, 'the chain alone verifies');
    assertAgree(await bothVerdicts(t), false);
  });

  it('a note with a bad signature, or the wrong key: both refuse', async () => {
    const other = await buildTrail(2);
    try {
      assertAgree(await bothVerdicts(t, t.files, other.vkey), false);
      const text = await readFile(t.notesFile, 'utf8');
      await writeFile(t.notesFile, text.replace(/\n5\n/, '\n6\n'));
      assertAgree(await bothVerdicts(t), false);
    } finally {
      await rm(other.dir, { recursive: true, force: true });
    }
  });

  it("the README's example note verifies with the README's example vkey", () => {
    const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
    const note = /```text\n(svid-broker\/[^\n]+\n\d+\n[^\n]+\n\n\u2014 [^\n]+\n)```/.exec(readme)?.[1];
    const vkey = /the vkey `([^`]+)`/.exec(readme)?.[1];
    assert.ok(note !== undefined && vkey !== undefined, 'README has the example note and vkey');
    assert.equal(openNote(note, vkey)?.split('\n')[1], '4096');
    assert.ok(parseVkey(vkey));
  });
});
