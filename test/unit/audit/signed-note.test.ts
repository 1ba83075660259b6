import assert from 'node:assert/strict';
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpointKey } from '../../../src/audit/checkpoint-key.js';
import { GENESIS_HASH } from '../../../src/audit/hash-chain.js';
import {
  formatVkey,
  noteKeyId,
  openNote,
  parseVkey,
  signNote,
  splitNotes,
  type NoteSigner,
} from '../../../src/audit/signed-note.js';
import { checkpointText, defaultOrigin, parseCheckpointText } from '../../../src/audit/tlog-checkpoint.js';

/** The example in c2sp.org/signed-note ("Verifier keys"). */
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE =
  'This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';

function newSigner(name: string): NoteSigner {
  const { privateKey } = generateKeyPairSync('ed25519');
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x as string;
  return { name, privateKey, publicKey: Buffer.from(x, 'base64url') };
}

describe('audit/signed-note: C2SP signed notes and checkpoints', () => {
  it("verifies the spec's own example note with the spec's example vkey", () => {
    const verifier = parseVkey(SPEC_VKEY);
    assert.equal(verifier.keyId.toString('hex'), '530d903a');
    assert.deepEqual(openNote(SPEC_NOTE, verifier), { ok: true, text: 'This is an example message.\n' });
    const edited = SPEC_NOTE.replace('example message', 'exampel message');
    assert.deepEqual(openNote(edited, verifier), { ok: false, error: 'signature does not verify' });
  });

  it('signs a note that verifies with its vkey; the key id is SHA-256(name \\n 0x01 key)[:4]', () => {
    const signer = newSigner('svid-broker/example.org/broker');
    const vkey = formatVkey(signer.name, signer.publicKey);
    const [name, id, ...rest] = vkey.split('+');
    const material = rest.join('+');
    assert.equal(name, signer.name);
    assert.equal(id, noteKeyId(signer.name, signer.publicKey).toString('hex'));
    assert.equal(Buffer.from(material, 'base64')[0], 0x01);
    const note = signNote('a\nb\n', signer);
    assert.match(note, /^a\nb\n\n— svid-broker\/example\.org\/broker [A-Za-z0-9+/]+=*\n$/);
    assert.equal(Buffer.from(note.split(' ').at(-1) as string, 'base64').length, 4 + 64);
    assert.deepEqual(openNote(note, parseVkey(vkey)), { ok: true, text: 'a\nb\n' });
  });

  it('refuses a note with a bad signature, and one signed by another key (same name or not)', () => {
    const signer = newSigner('svid-broker/a');
    const verifier = parseVkey(formatVkey(signer.name, signer.publicKey));
    const note = signNote('origin\n1\nAAAA\n', signer);
    const sig = note.split(' ').at(-1) as string;
    const bytes = Buffer.from(sig, 'base64');
    bytes[10] = (bytes[10] as number) ^ 1;
    const forged = note.replace(sig, `${bytes.toString('base64')}\n`).replace(/\n\n$/, '\n');
    assert.deepEqual(openNote(forged, verifier), { ok: false, error: 'signature does not verify' });
    const impostor = newSigner('svid-broker/a');
    const other = openNote(signNote('origin\n1\nAAAA\n', impostor), verifier);
    assert.equal(other.ok, false);
    assert.match((other as { error: string }).error, /no signature by key svid-broker\/a/);
    // Signatures by unknown keys are ignored when the known key's verifies (spec: cosigners).
    const cosigned = `${note}— witness.example/w ${Buffer.alloc(68, 7).toString('base64')}\n`;
    assert.equal(openNote(cosigned, verifier).ok, true);
  });

  it('refuses malformed vkeys', () => {
    assert.throws(
      () => parseVkey('example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k'),
      /key id/,
    );
    assert.throws(() => parseVkey('example.com/foo+530d903a'), /name/);
    assert.throws(() => parseVkey('a b+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k'), /space/);
  });

  it('splits a file of notes written one after another, each followed by an empty line', () => {
    const signer = newSigner('o');
    const notes = [signNote('o\n1\nx\n', signer), signNote('o\n2\ny\n', signer)];
    const split = splitNotes(notes.map((n) => `${n}\n`).join(''));
    assert.deepEqual(
      split.map((n) => n.note),
      notes,
    );
    assert.deepEqual(
      split.map((n) => n.line),
      [1, 7],
    );
    // Notes fetched one by one from GET /v1/audit/checkpoint and simply concatenated split the same way.
    assert.deepEqual(
      splitNotes(notes.join('')).map((n) => n.note),
      notes,
    );
  });

  it('checkpoint text: origin, size, base64 of the head hash; parsed back; the empty chain has the genesis hash', () => {
    const hash = 'ab'.repeat(32);
    const text = checkpointText({ origin: 'svid-broker/example.org/broker', size: 42, hash });
    assert.equal(
      text,
      `svid-broker/example.org/broker\n42\n${Buffer.from(hash, 'hex').toString('base64')}\n`,
    );
    assert.deepEqual(parseCheckpointText(text), { origin: 'svid-broker/example.org/broker', size: 42, hash });
    assert.deepEqual(
      parseCheckpointText(checkpointText({ origin: 'o', size: 0, hash: GENESIS_HASH })).size,
      0,
    );
    assert.throws(
      () => parseCheckpointText(`o\n0\n${Buffer.from(hash, 'hex').toString('base64')}\n`),
      /genesis/,
    );
    assert.throws(() => parseCheckpointText('o\n042\nAAAA\n'), /decimal/);
    // The spec's example checkpoint parses.
    const spec = parseCheckpointText(
      'example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n',
    );
    assert.equal(spec.size, 20852163);
    assert.equal(defaultOrigin('spiffe://example.org/broker'), 'svid-broker/example.org/broker');
  });

  it('creates the signing key (PKCS#8 PEM, 0600) when missing and reads the same key back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'svid-broker-ckey-'));
    try {
      const file = join(dir, 'audit.jsonl.checkpoint-key');
      const first = await loadCheckpointKey(file, 'svid-broker/example.org/broker');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.match(await readFile(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
      const again = await loadCheckpointKey(file, 'svid-broker/example.org/broker');
      assert.equal(again.vkey, first.vkey);
      await assert.rejects(loadCheckpointKey(file, 'has space'), /may not contain spaces/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
