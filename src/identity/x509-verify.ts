/**
 * X.509-SVID verification (spec section 3; go-spiffe `svid/x509svid/verify.go`), plus the DER/PEM
 * helpers the Workload API plumbing needs.
 *
 * The chain walk is done here rather than by `X509ChainBuilder` because the builder neither
 * restricts roots to one trust domain nor checks cA/keyUsage/validity, which are the rules that
 * matter; @peculiar/x509 is used for parsing, key-usage bits and signature checks only.
 */
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs reflect-metadata loaded
// before the library module is evaluated; ESM evaluates imports in order, so this must stay first.
import 'reflect-metadata';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  X509Certificate,
} from '@peculiar/x509';
import { BrokerError, isBrokerError, unauthenticated } from '../errors.js';
import { parseSpiffeId, type SpiffeId } from './spiffe-id.js';
import type { X509BundleSource } from './types.js';

export interface VerifyX509SvidOptions {
  /** Time to check validity periods against; defaults to the current time. */
  now?: Date;
  /** Require clientAuth in the leaf's extKeyUsage when that extension is present. Default true. */
  requireClientAuth?: boolean;
}

export interface VerifiedX509Svid {
  spiffeId: string;
  trustDomain: string;
  path: string;
  /** The validated path, leaf first, ending with the bundle authority it chains to. */
  verifiedChain: Uint8Array[];
}

const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_SUBJECT_KEY_ID = '2.5.29.14';
const OID_AUTHORITY_KEY_ID = '2.5.29.35';
const OID_ANY_EXT_KEY_USAGE = '2.5.29.37.0';

/**
 * Extensions this verifier processes. RFC 5280 4.2 requires rejecting a certificate with a
 * critical extension we do not understand (e.g. nameConstraints), rather than ignoring a limit.
 */
const UNDERSTOOD_EXTENSIONS = new Set([
  OID_BASIC_CONSTRAINTS,
  OID_KEY_USAGE,
  OID_EXT_KEY_USAGE,
  OID_SUBJECT_ALT_NAME,
  OID_SUBJECT_KEY_ID,
  OID_AUTHORITY_KEY_ID,
]);

/** Caps work on hostile input: SPIRE chains are leaf + at most a few intermediates. */
const MAX_CHAIN_LENGTH = 10;
const MAX_PATH_SEARCH_STEPS = 64;

interface ParsedCert {
  readonly der: Uint8Array;
  readonly cert: X509Certificate;
}

/**
 * Verifies a presented X.509-SVID chain (DER, leaf first) against the X.509 bundle of the leaf's
 * own trust domain and returns the authenticated SPIFFE ID. Throws BrokerError UNAUTHENTICATED
 * with a stable `reason` on any failure.
 */
export async function verifyX509Svid(
  chain: readonly Uint8Array[],
  bundles: X509BundleSource,
  opts: VerifyX509SvidOptions = {},
): Promise<VerifiedX509Svid> {
  const now = opts.now ?? new Date();
  const requireClientAuth = opts.requireClientAuth ?? true;

  if (chain.length === 0) throw unauthenticated('no_certificate', 'no client certificate was presented');
  if (chain.length > MAX_CHAIN_LENGTH) {
    throw unauthenticated(
      'chain_too_long',
      `certificate chain has more than ${MAX_CHAIN_LENGTH} certificates`,
    );
  }
  const presented = chain.map((der, i) => parseCertificate(der, i === 0 ? 'leaf' : `chain[${i}]`));
  const leaf = presented[0] as ParsedCert;

  const id = leafSpiffeId(leaf.cert);
  checkExtensionsUnderstood(leaf.cert, 'leaf');
  checkLeafConstraints(leaf.cert, requireClientAuth);
  checkValidity(leaf.cert, now, 'svid', 'X.509-SVID');

  // Roots come only from the leaf's own trust domain: trusting the union of bundles would let
  // any federated domain mint IDs in ours.
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined || bundle.authorities.length === 0) {
    throw unauthenticated('untrusted_domain', `no X.509 bundle for trust domain "${id.trustDomain}"`);
  }
  const roots = parseAuthorities(bundle.authorities);
  if (roots.length === 0) {
    throw unauthenticated(
      'untrusted_domain',
      `the X.509 bundle of trust domain "${id.trustDomain}" has no usable authority`,
    );
  }

  const path = await buildPath(leaf, presented.slice(1), roots, now);
  return {
    spiffeId: id.toString(),
    trustDomain: id.trustDomain,
    path: id.path,
    verifiedChain: path.map((p) => p.der),
  };
}

function parseCertificate(der: Uint8Array, what: string): ParsedCert {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(toArrayBuffer(der));
  } catch (err) {
    throw unauthenticated('malformed_certificate', `${what} is not a valid DER certificate`, err);
  }
  // Duplicate extensions are forbidden (RFC 5280 4.2); accepting them would make "the" keyUsage
  // or SAN ambiguous between this verifier and TLS stacks.
  const seen = new Set<string>();
  for (const ext of cert.extensions) {
    if (seen.has(ext.type)) {
      throw unauthenticated('malformed_certificate', `${what} repeats extension ${ext.type}`);
    }
    seen.add(ext.type);
  }
  return { der, cert };
}

/**
 * A bundle authority that does not parse is skipped rather than failing every verification:
 * skipping can only make us trust less, and one bad entry should not lock every caller out.
 */
function parseAuthorities(authorities: readonly Uint8Array[]): ParsedCert[] {
  const out: ParsedCert[] = [];
  authorities.forEach((der, i) => {
    try {
      out.push(parseCertificate(der, `bundle authority ${i}`));
    } catch {
      // Deliberately ignored, see above.
    }
  });
  return out;
}

function leafSpiffeId(cert: X509Certificate): SpiffeId {
  let uris: string[];
  try {
    const san = cert.getExtension(SubjectAlternativeNameExtension);
    uris = san === null ? [] : san.names.items.filter((n) => n.type === 'url').map((n) => n.value);
  } catch (err) {
    throw unauthenticated('malformed_certificate', 'leaf subjectAltName cannot be parsed', err);
  }
  if (uris.length === 0) throw unauthenticated('no_uri_san', 'leaf certificate has no URI SAN (SPIFFE ID)');
  if (uris.length > 1) {
    throw unauthenticated(
      'multiple_uri_sans',
      `leaf certificate has ${uris.length} URI SANs; exactly one is allowed`,
    );
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(uris[0] as string, 'uri_san');
  } catch (err) {
    const detail = isBrokerError(err) ? err.message : 'invalid';
    throw unauthenticated('invalid_spiffe_id', `leaf URI SAN is not a valid SPIFFE ID (${detail})`, err);
  }
  if (!id.isWorkloadId) {
    throw unauthenticated(
      'not_workload_id',
      `leaf SPIFFE ID ${id.toString()} has no path; SVIDs name workloads`,
    );
  }
  return id;
}

function checkExtensionsUnderstood(cert: X509Certificate, what: string): void {
  for (const ext of cert.extensions) {
    if (ext.critical && !UNDERSTOOD_EXTENSIONS.has(ext.type)) {
      throw unauthenticated(
        'unsupported_critical_extension',
        `${what} has critical extension ${ext.type} which this verifier does not process`,
      );
    }
  }
}

function readBasicConstraints(cert: X509Certificate, what: string): BasicConstraintsExtension | null {
  try {
    return cert.getExtension(BasicConstraintsExtension);
  } catch (err) {
    throw unauthenticated('malformed_certificate', `${what} basicConstraints cannot be parsed`, err);
  }
}

function readKeyUsage(cert: X509Certificate, what: string): KeyUsagesExtension | null {
  try {
    return cert.getExtension(KeyUsagesExtension);
  } catch (err) {
    throw unauthenticated('malformed_certificate', `${what} keyUsage cannot be parsed`, err);
  }
}

function checkLeafConstraints(cert: X509Certificate, requireClientAuth: boolean): void {
  // An absent basicConstraints means cA=false (RFC 5280 4.2.1.9), which is what a leaf needs.
  if (readBasicConstraints(cert, 'leaf')?.ca === true) {
    throw unauthenticated('leaf_is_ca', 'leaf certificate has basicConstraints cA=true');
  }
  const ku = readKeyUsage(cert, 'leaf');
  if (ku === null) throw unauthenticated('missing_key_usage', 'leaf certificate has no keyUsage extension');
  if (!ku.critical) throw unauthenticated('bad_key_usage', 'leaf keyUsage extension must be critical');
  if ((ku.usages & KeyUsageFlags.digitalSignature) === 0) {
    throw unauthenticated('bad_key_usage', 'leaf keyUsage lacks digitalSignature');
  }
  if ((ku.usages & KeyUsageFlags.keyCertSign) !== 0) {
    throw unauthenticated('bad_key_usage', 'leaf keyUsage must not include keyCertSign');
  }
  if ((ku.usages & KeyUsageFlags.cRLSign) !== 0) {
    throw unauthenticated('bad_key_usage', 'leaf keyUsage must not include cRLSign');
  }
  if (!requireClientAuth) return;
  let eku: ExtendedKeyUsageExtension | null;
  try {
    eku = cert.getExtension(ExtendedKeyUsageExtension);
  } catch (err) {
    throw unauthenticated('malformed_certificate', 'leaf extKeyUsage cannot be parsed', err);
  }
  // No extKeyUsage means "any purpose" (RFC 5280 4.2.1.12); anyExtendedKeyUsage likewise.
  if (eku !== null) {
    const usages = eku.usages.map(String);
    if (!usages.includes(ExtendedKeyUsage.clientAuth) && !usages.includes(OID_ANY_EXT_KEY_USAGE)) {
      throw unauthenticated('bad_ext_key_usage', 'leaf extKeyUsage does not allow clientAuth');
    }
  }
}

/** `prefix` picks the reason family: `svid_expired` for the leaf, `ca_expired` for signers. */
function checkValidity(cert: X509Certificate, now: Date, prefix: 'svid' | 'ca', what: string): void {
  if (now.getTime() < cert.notBefore.getTime()) {
    throw unauthenticated(
      `${prefix}_not_yet_valid`,
      `${what} is not valid before ${cert.notBefore.toISOString()}`,
    );
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    throw unauthenticated(`${prefix}_expired`, `${what} expired at ${cert.notAfter.toISOString()}`);
  }
}

/**
 * Checks a certificate used to sign another: cA=true, keyCertSign, validity, pathLenConstraint.
 * `intermediatesBelow` counts the intermediates between it and the leaf.
 */
function checkSigningCert(cert: X509Certificate, now: Date, what: string, intermediatesBelow: number): void {
  checkExtensionsUnderstood(cert, what);
  const bc = readBasicConstraints(cert, what);
  if (bc === null || !bc.ca)
    throw unauthenticated('issuer_not_ca', `${what} is not a CA (basicConstraints cA=false)`);
  const ku = readKeyUsage(cert, what);
  if (ku === null || (ku.usages & KeyUsageFlags.keyCertSign) === 0) {
    throw unauthenticated('issuer_bad_key_usage', `${what} keyUsage lacks keyCertSign`);
  }
  if (bc.pathLength !== undefined && intermediatesBelow > bc.pathLength) {
    throw unauthenticated('path_length_exceeded', `${what} pathLenConstraint ${bc.pathLength} is exceeded`);
  }
  checkValidity(cert, now, 'ca', what);
}

/** Failure ranking: when no path validates, report the most specific thing that went wrong. */
function failureRank(err: BrokerError): number {
  switch (err.reason) {
    case 'untrusted_chain':
      return 0;
    case 'bad_signature':
      return 1;
    default:
      return 2;
  }
}

/**
 * RFC 5280 path building: depth-first from the leaf through the presented intermediates until a
 * certificate is signed by one of `roots`. Each step requires issuer/subject name chaining and a
 * valid signature, and the signer must pass `checkSigningCert`. Backtracking matters during root
 * rotation, when old and new authorities share a subject name.
 *
 * Hostile chains can make the search explode (many same-name CAs that all sign each other), so
 * signature results are cached per pair and the number of search steps is capped.
 */
async function buildPath(
  leaf: ParsedCert,
  intermediates: readonly ParsedCert[],
  roots: readonly ParsedCert[],
  now: Date,
): Promise<ParsedCert[]> {
  let best: BrokerError = unauthenticated(
    'untrusted_chain',
    'certificate chain does not lead to an authority of the trust domain bundle',
  );
  const record = (err: unknown): void => {
    if (!isBrokerError(err)) throw err;
    if (failureRank(err) >= failureRank(best)) best = err;
  };
  const signatures = new Map<ParsedCert, Map<ParsedCert, Promise<boolean>>>();
  const signedBy = (child: ParsedCert, issuer: ParsedCert): Promise<boolean> => {
    let byIssuer = signatures.get(child);
    if (byIssuer === undefined) signatures.set(child, (byIssuer = new Map()));
    let result = byIssuer.get(issuer);
    if (result === undefined) byIssuer.set(issuer, (result = verifySignature(child.cert, issuer.cert)));
    return result;
  };
  let steps = 0;

  /** True when `issuer` validly signs the path's last certificate; records why not otherwise. */
  const tryIssuer = async (
    path: readonly ParsedCert[],
    issuer: ParsedCert,
    what: string,
  ): Promise<boolean> => {
    const current = path[path.length - 1] as ParsedCert;
    if (issuer.cert.subject !== current.cert.issuer) return false;
    if (!(await signedBy(current, issuer))) {
      record(unauthenticated('bad_signature', 'certificate signature does not verify against its issuer'));
      return false;
    }
    try {
      checkSigningCert(issuer.cert, now, what, path.length - 1);
      return true;
    } catch (err) {
      record(err);
      return false;
    }
  };

  const extend = async (path: ParsedCert[]): Promise<ParsedCert[] | undefined> => {
    if (++steps > MAX_PATH_SEARCH_STEPS) return undefined;
    for (const root of roots) {
      if (await tryIssuer(path, root, 'bundle authority')) return [...path, root];
    }
    if (path.length >= MAX_CHAIN_LENGTH) return undefined;
    for (const candidate of intermediates) {
      if (path.includes(candidate)) continue;
      if (!(await tryIssuer(path, candidate, 'intermediate certificate'))) continue;
      const found = await extend([...path, candidate]);
      if (found !== undefined) return found;
    }
    return undefined;
  };

  const found = await extend([leaf]);
  if (found === undefined) throw best;
  return found;
}

async function verifySignature(child: X509Certificate, issuer: X509Certificate): Promise<boolean> {
  try {
    return await child.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    // Unsupported or mismatched key algorithms surface as exceptions; either way, not signed.
    return false;
  }
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

// One DER splitter for the whole identity package (Workload API chains and bundles).
export { splitConcatenatedDer } from './der.js';

/** Encodes one or more DER blocks as PEM (Node TLS wants PEM); a chain becomes consecutive blocks. */
export function derToPem(der: Uint8Array | readonly Uint8Array[], label = 'CERTIFICATE'): string {
  const blocks = der instanceof Uint8Array ? [der] : der;
  return blocks
    .map((block) => {
      const b64 = Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('base64');
      const lines = b64.match(/.{1,64}/g) ?? [];
      return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
    })
    .join('');
}

/**
 * Decodes every PEM block in `pem` (optionally only blocks with `label`) to DER, in order.
 * Throws INVALID_ARGUMENT `malformed_pem` when no block is found.
 */
export function pemToDer(pem: string, label?: string): Uint8Array[] {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const out: Uint8Array[] = [];
  for (const match of pem.matchAll(re)) {
    if (label !== undefined && match[1] !== label) continue;
    const body = (match[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) {
      throw new BrokerError('INVALID_ARGUMENT', `PEM block ${match[1]} is not valid base64`, {
        reason: 'malformed_pem',
      });
    }
    out.push(new Uint8Array(Buffer.from(body, 'base64')));
  }
  if (out.length === 0) {
    const what = label === undefined ? 'PEM block' : `PEM ${label} block`;
    throw new BrokerError('INVALID_ARGUMENT', `no ${what} found`, { reason: 'malformed_pem' });
  }
  return out;
}
