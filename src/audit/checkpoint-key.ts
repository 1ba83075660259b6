/**
 * The Ed25519 key that signs checkpoints (audit.checkpoints.keyFile): PKCS#8 PEM, created with
 * mode 0600 when missing. Its verifier key (vkey) is public: served on the ops listener.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { failedPrecondition } from '../errors.js';
import { formatVkey, isKeyName, type NoteSigner } from './signed-note.js';

export interface CheckpointKey extends NoteSigner {
  vkey: string;
}

/** Reads the key at `file` (creating it when missing) for signing under key name `name`. */
export async function loadCheckpointKey(file: string, name: string): Promise<CheckpointKey> {
  if (!isKeyName(name)) {
    throw failedPrecondition(
      'audit_checkpoint_origin',
      `audit.checkpoints.origin "${name}" may not contain spaces or "+" (it is the note's key name)`,
    );
  }
  const pem = await readOrCreate(file);
  let privateKey;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw failedPrecondition('audit_checkpoint_key', `audit: ${file} is not a PKCS#8 PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw failedPrecondition('audit_checkpoint_key', `audit: ${file} is not an Ed25519 key`);
  }
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
  const publicKey = Buffer.from(jwk.x as string, 'base64url');
  return { name, privateKey, publicKey, vkey: formatVkey(name, publicKey) };
}

async function readOrCreate(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  try {
    // wx: two replicas (or two starts) racing to create it keep whichever landed first.
    await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
    return pem;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file, 'utf8');
    throw err;
  }
}
