/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the verifier key (`vkey`) text
 * that names one. Pure functions over node:crypto, shared by the broker (signing checkpoints) and
 * `audit verify` (checking them), so that signing and checking cannot drift apart.
 *
 *   note      = text ending in "\n", "\n", then lines "— <key name> <base64(key id || signature)>\n"
 *   key id    = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]
 *   vkey      = <key name>+<hex key id>+<base64(0x01 || public key)>
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

const ED25519_TYPE = 0x01;
const SIGNATURE_PREFIX = '\u2014 ';
const KEY_NAME = /^[^\s+]+$/u;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A key that signs notes: its name, id and both halves. */
export interface NoteSigner {
  name: string;
  privateKey: KeyObject;
  /** The raw 32-byte Ed25519 public key. */
  publicKey: Buffer;
}

/** A key that verifies notes, as parsed from a vkey. */
export interface NoteVerifier {
  name: string;
  keyId: Buffer;
  publicKey: KeyObject;
}

/** Key names must be non-empty and hold neither spaces nor `+` (the spec's rule). */
export function isKeyName(name: string): boolean {
  return KEY_NAME.test(name);
}

export function noteKeyId(name: string, rawPublicKey: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from(`${name}\n`, 'utf8'))
    .update(Buffer.from([ED25519_TYPE]))
    .update(rawPublicKey)
    .digest()
    .subarray(0, 4);
}

export function formatVkey(name: string, rawPublicKey: Buffer): string {
  const material = Buffer.concat([Buffer.from([ED25519_TYPE]), rawPublicKey]).toString('base64');
  return `${name}+${noteKeyId(name, rawPublicKey).toString('hex')}+${material}`;
}

/** Parses a vkey; throws an Error saying what is wrong with it. */
export function parseVkey(vkey: string): NoteVerifier {
  // The base64 key may hold '+' itself: only the first two separate fields.
  const [name, idHex, ...rest] = vkey.trim().split('+');
  const material = rest.join('+');
  if (idHex === undefined || rest.length === 0)
    throw new Error('a verifier key is <name>+<hex key id>+<base64 key>');
  if (name === undefined) throw new Error('the key name is empty');
  if (!isKeyName(name)) throw new Error('the key name is empty or holds a space');
  const raw = BASE64.test(material) ? Buffer.from(material, 'base64') : Buffer.alloc(0);
  if (raw.length !== 33 || raw[0] !== ED25519_TYPE) throw new Error('not an Ed25519 verifier key');
  const rawPublicKey = raw.subarray(1);
  const keyId = noteKeyId(name, rawPublicKey);
  if (idHex.toLowerCase() !== keyId.toString('hex')) throw new Error('the key id does not match the key');
  return { name, keyId, publicKey: ed25519PublicKey(rawPublicKey) };
}

export function ed25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
    format: 'jwk',
  });
}

/** The note: `text` (which must end in a newline) signed by `signer`. */
export function signNote(text: string, signer: NoteSigner): string {
  if (!text.endsWith('\n')) throw new Error('note text must end with a newline');
  const signature = sign(null, Buffer.from(text, 'utf8'), signer.privateKey);
  const blob = Buffer.concat([noteKeyId(signer.name, signer.publicKey), signature]).toString('base64');
  return `${text}\n${SIGNATURE_PREFIX}${signer.name} ${blob}\n`;
}

export type OpenedNote = { ok: true; text: string } | { ok: false; error: string };

/**
 * The note's text once a signature by `verifier` verifies. Signatures by other keys are ignored
 * (as the spec requires); a note without one by this key, or whose one does not verify, is refused.
 */
export function openNote(note: string, verifier: NoteVerifier): OpenedNote {
  const split = note.lastIndexOf('\n\n');
  if (!note.endsWith('\n') || split < 0) return { ok: false, error: 'not a signed note' };
  if ([...note].some((c) => c < ' ' && c !== '\n')) return { ok: false, error: 'control character in note' };
  const text = note.slice(0, split + 1);
  const signatures = note.slice(split + 2, -1).split('\n');
  let ours = 0;
  for (const line of signatures) {
    const sig = parseSignatureLine(line);
    if (sig === undefined) return { ok: false, error: 'malformed signature line' };
    if (sig.name !== verifier.name || !sig.keyId.equals(verifier.keyId)) continue;
    ours += 1;
    if (!verify(null, Buffer.from(text, 'utf8'), verifier.publicKey, sig.signature)) {
      return { ok: false, error: 'signature does not verify' };
    }
  }
  if (ours === 0) return { ok: false, error: `no signature by key ${verifier.name} (wrong key?)` };
  return { ok: true, text };
}

function parseSignatureLine(line: string): { name: string; keyId: Buffer; signature: Buffer } | undefined {
  if (!line.startsWith(SIGNATURE_PREFIX)) return undefined;
  const [name, blob, extra] = line.slice(SIGNATURE_PREFIX.length).split(' ');
  if (name === undefined || blob === undefined || extra !== undefined || !BASE64.test(blob)) return undefined;
  const bytes = Buffer.from(blob, 'base64');
  if (bytes.length < 5) return undefined;
  return { name, keyId: bytes.subarray(0, 4), signature: bytes.subarray(4) };
}

/** A note found in a file of notes, with the line it starts on (1-based). */
export interface NoteInFile {
  note: string;
  line: number;
}

/**
 * Splits a file of notes written one after another, each followed by one empty line: a note is
 * its text lines, one empty line, then its signature lines.
 */
export function splitNotes(fileText: string): NoteInFile[] {
  const lines = fileText.split('\n');
  const notes: NoteInFile[] = [];
  let i = 0;
  while (i < lines.length) {
    while (i < lines.length && lines[i] === '') i += 1;
    if (i >= lines.length) break;
    const first = i;
    while (i < lines.length && lines[i] !== '') i += 1; // the text
    i += 1; // the separating empty line
    while (i < lines.length && (lines[i] as string).startsWith(SIGNATURE_PREFIX)) i += 1;
    notes.push({ note: `${lines.slice(first, i).join('\n')}\n`, line: first + 1 });
  }
  return notes;
}
