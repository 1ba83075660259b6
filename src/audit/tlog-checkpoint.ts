/**
 * The chain head as a C2SP tlog-checkpoint note text (c2sp.org/tlog-checkpoint):
 *
 *   <origin>\n<tree size>\n<root hash>\n
 *
 * tree size = seq of the chain head (0 before the first record); root hash = base64 of the 32
 * bytes of its hash (the chain head stands where a Merkle root would: every record before it is
 * bound into it through prev_hash).
 */
import { GENESIS_HASH } from './hash-chain.js';

export interface ChainCheckpoint {
  origin: string;
  /** seq of the chain head. */
  size: number;
  /** Lowercase hex SHA-256: the head record's `hash` (64 zeros at size 0). */
  hash: string;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;

export function checkpointText(cp: ChainCheckpoint): string {
  return `${cp.origin}\n${cp.size}\n${Buffer.from(cp.hash, 'hex').toString('base64')}\n`;
}

/** Parses the text of an opened note; throws an Error saying what is wrong. */
export function parseCheckpointText(text: string): ChainCheckpoint {
  const [origin, size, root] = text.split('\n');
  if (!origin || size === undefined || root === undefined)
    throw new Error('not a checkpoint: fewer than 3 lines');
  if (!DECIMAL.test(size) || !Number.isSafeInteger(Number(size)))
    throw new Error('tree size is not a decimal');
  if (!BASE64_SHA256.test(root)) throw new Error('root hash is not 32 bytes of base64');
  const cp = { origin, size: Number(size), hash: Buffer.from(root, 'base64').toString('hex') };
  if (cp.size === 0 && cp.hash !== GENESIS_HASH) throw new Error('an empty chain has the genesis hash');
  return cp;
}

/** `svid-broker/<SPIFFE ID without spiffe://>`, the origin (and key name) unless configured. */
export function defaultOrigin(spiffeId: string): string {
  return `svid-broker/${spiffeId.replace(/^spiffe:\/\//, '')}`;
}
