/**
 * Signed entries in state the replicas share (the JWKS in Redis, the policy set in Redis): each
 * entry is sealed with the X.509-SVID of the broker that wrote it, and opened only if that SVID
 * chains to the trust bundle and names an allowed broker. A write into Redis by anyone else (no
 * SVID key of an allowed broker) is refused.
 *
 * The envelope is JSON `{"payload": "<text>", "sig": "<detached JWS>"}`. `sig` is a compact JWS
 * with a detached payload (RFC 7515 Appendix F: `header..signature`) over the UTF-8 bytes of
 * `payload`, exactly as stored; its protected header carries `alg`, `typ` and `x5c` (the signing
 * SVID's chain, leaf first, base64 DER), so a verifier needs nothing but its trust bundle.
 *
 * A signature stays valid while every certificate of its chain is: an entry sealed by an SVID
 * that has since rotated still opens until that certificate expires. Writers re-seal what they
 * hold before then (see SharedJwks and PolicySync).
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { base64url, compactVerify, CompactSign, decodeProtectedHeader } from 'jose';
import type { X509BundleSource, X509SvidSource } from './types.js';
import { verifyX509Svid } from './x509-verify.js';

/** Why an entry was refused: stable codes for the audit trail and the metric. */
export type SealRefusal =
  'malformed' | 'unsigned' | 'bad_signature' | 'untrusted_signer' | 'signer_not_allowed';

export class SealRefused extends Error {
  constructor(
    readonly reason: SealRefusal,
    message: string,
    /** The signer's SPIFFE ID, when the chain named one. */
    readonly signer?: string,
  ) {
    super(`svid-seal: ${message}`);
    this.name = 'SealRefused';
  }
}

/** A shared-state entry that was not used, as reported to the audit trail (`replica.entry_refused`). */
export interface RefusedEntry {
  kind: 'jwks' | 'policy';
  /** The Redis key (and hash field) that held it. */
  key: string;
  /** A SealRefusal, or `stale_generation`: a sound record older than the set in service (a replay). */
  reason: SealRefusal | 'stale_generation';
  /** The signer's SPIFFE ID when its chain named one. */
  signer?: string;
  message: string;
}

export interface OpenedEntry {
  /** The payload exactly as signed. */
  payload: string;
  /** The SPIFFE ID of the broker that sealed it. */
  signer: string;
  /** Epoch ms after which the signature no longer verifies (the earliest notAfter of its chain). */
  expiresAt: number;
}

/** Contract: seal() signs with this broker's current SVID; open() throws SealRefused for anything it cannot vouch for. */
export interface EntrySeal {
  seal(payload: string): Promise<string>;
  open(raw: string): Promise<OpenedEntry>;
}

export interface SvidSealOptions {
  svid: X509SvidSource;
  bundles: X509BundleSource;
  /** SPIFFE IDs whose entries are accepted (read on every open, so config or SVID changes apply). */
  allowedIds: () => readonly string[];
  now?: () => number;
}

const TYP = 'svid-broker-entry+jws';
const MAX_CHAIN = 10;

export class SvidSeal implements EntrySeal {
  private readonly now: () => number;

  constructor(private readonly opts: SvidSealOptions) {
    this.now = opts.now ?? Date.now;
  }

  async seal(payload: string): Promise<string> {
    const svid = this.opts.svid.getX509Svid();
    const key = createPrivateKey({ key: Buffer.from(svid.privateKey), format: 'der', type: 'pkcs8' });
    const jws = await new CompactSign(new TextEncoder().encode(payload))
      .setProtectedHeader({
        alg: algorithmOf(key),
        typ: TYP,
        x5c: svid.certChain.map((der) => Buffer.from(der).toString('base64')),
      })
      .sign(key);
    const [header, , signature] = jws.split('.');
    return JSON.stringify({ payload, sig: `${header}..${signature}` });
  }

  async open(raw: string): Promise<OpenedEntry> {
    const { payload, sig } = readEnvelope(raw);
    const [header, middle, signature, extra] = sig.split('.');
    if (header === undefined || middle !== '' || signature === undefined || extra !== undefined) {
      throw new SealRefused('malformed', 'sig is not a detached compact JWS');
    }
    const chain = chainOf(header);
    const { signer, verified } = await this.verifyChain(chain);
    const publicKey = new X509Certificate(chain[0] as Uint8Array).publicKey;
    try {
      await compactVerify(`${header}.${base64url.encode(payload)}.${signature}`, publicKey, {
        algorithms: [algorithmOf(publicKey)],
      });
    } catch (err) {
      throw new SealRefused('bad_signature', `signature does not verify: ${(err as Error).message}`, signer);
    }
    const expiresAt = Math.min(...verified.map((der) => Date.parse(new X509Certificate(der).validTo)));
    return { payload, signer, expiresAt };
  }

  /** The signer's SPIFFE ID and the verified path (leaf to bundle authority). */
  private async verifyChain(chain: Uint8Array[]): Promise<{ signer: string; verified: Uint8Array[] }> {
    let spiffeId: string;
    let verified: Uint8Array[];
    try {
      ({ spiffeId, verifiedChain: verified } = await verifyX509Svid(chain, this.opts.bundles, {
        now: new Date(this.now()),
        requireClientAuth: false,
      }));
    } catch (err) {
      throw new SealRefused('untrusted_signer', `signing chain refused: ${(err as Error).message}`);
    }
    if (!this.opts.allowedIds().includes(spiffeId)) {
      throw new SealRefused('signer_not_allowed', `${spiffeId} is not in replicas.allowedIds`, spiffeId);
    }
    return { signer: spiffeId, verified };
  }
}

/** The JWS algorithm for a key: fixed by the key, so a header cannot pick a weaker one. */
function algorithmOf(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
      if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
      if (curve === 'secp521r1' || curve === 'P-521') return 'ES512';
      break;
    case 'rsa':
      return 'RS256';
    case 'ed25519':
      return 'EdDSA';
  }
  throw new SealRefused(
    'malformed',
    `unsupported SVID key type ${key.asymmetricKeyType ?? '?'} ${curve ?? ''}`,
  );
}

function readEnvelope(raw: string): { payload: string; sig: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new SealRefused('malformed', 'entry is not JSON');
  }
  const obj = parsed as Record<string, unknown> | null;
  if (obj === null || typeof obj !== 'object' || typeof obj.payload !== 'string') {
    throw new SealRefused('unsigned', 'entry is not a sealed envelope');
  }
  if (typeof obj.sig !== 'string') throw new SealRefused('unsigned', 'entry carries no signature');
  return { payload: obj.payload, sig: obj.sig };
}

function chainOf(header: string): Uint8Array[] {
  let x5c: unknown;
  try {
    const decoded = decodeProtectedHeader(`${header}..`);
    if (decoded.typ !== TYP) throw new Error(`typ is not ${TYP}`);
    x5c = decoded.x5c;
  } catch (err) {
    throw new SealRefused('malformed', `bad protected header: ${(err as Error).message}`);
  }
  if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > MAX_CHAIN) {
    throw new SealRefused('malformed', 'protected header has no usable x5c chain');
  }
  return x5c.map((c) => {
    if (typeof c !== 'string') throw new SealRefused('malformed', 'x5c holds a non-string');
    return new Uint8Array(Buffer.from(c, 'base64'));
  });
}
