/**
 * Turns a gRPC call into a verified Caller: the X.509-SVID from the TLS handshake (checked here
 * against the bundle of its own trust domain, since the TLS layer only requests the certificate),
 * or a JWT-SVID in `authorization: Bearer <jwt>`.
 */
import type { Metadata } from '@grpc/grpc-js';
import { createHash, X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate } from 'node:tls';
import { unauthenticated, isBrokerError, BrokerError } from '../errors.js';
import { verifyJwtSvid } from '../identity/jwt-verify.js';
import type { Caller, JwtBundleSource, X509BundleSource } from '../identity/types.js';
import { verifyX509Svid } from '../identity/x509-verify.js';

interface PeerSocket {
  getPeerCertificate(detailed: true): DetailedPeerCertificate | PeerCertificate | Record<string, never>;
  /** TLSSocket: refuses TLS 1.2 renegotiation, so the peer certificate is fixed for the socket's life. */
  disableRenegotiation?(): void;
}

/** The HTTP/2 session the call arrived on; stable per connection, so verdicts can be cached on it. */
interface CallConnection {
  session: object;
  socket: PeerSocket;
}

/**
 * grpc-js hands handlers only the leaf (and only when Node's own check, against the union of every
 * bundle, passed). Per-trust-domain verification needs the whole presented chain, so we reach the
 * TLS socket through the call's internals. If a grpc-js upgrade moves them, this returns undefined
 * and X.509 callers are refused (fail closed); the integration tests catch it.
 */
export function callConnection(call: object): CallConnection | undefined {
  let inner: unknown = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && typeof inner === 'object' && inner !== null; depth++) {
    const stream = (inner as { stream?: { session?: { socket?: PeerSocket } } }).stream;
    if (stream?.session?.socket && typeof stream.session.socket.getPeerCertificate === 'function') {
      return { session: stream.session, socket: stream.session.socket };
    }
    inner = (inner as { nextCall?: unknown }).nextCall;
  }
  return undefined;
}

/** The chain as presented (leaf first), without a self-signed root Node may have appended from its CA list. */
export function presentedChain(socket: PeerSocket): Uint8Array[] {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !('raw' in peer) || !peer.raw) return [];
  const leaf = peer as DetailedPeerCertificate;
  const chain: Uint8Array[] = [];
  const seen = new Set<string>();
  let cur: DetailedPeerCertificate | PeerCertificate | undefined = leaf;
  while (cur && 'raw' in cur && cur.raw && chain.length < 10) {
    const fp = cur.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    const selfSigned =
      cur.subject && cur.issuer && JSON.stringify(cur.subject) === JSON.stringify(cur.issuer);
    if (chain.length > 0 && selfSigned) break;
    chain.push(new Uint8Array(cur.raw));
    cur = 'issuerCertificate' in cur ? cur.issuerCertificate : undefined;
  }
  return chain;
}

export interface AuthenticatorOptions {
  x509Bundles: X509BundleSource;
  jwtBundles: JwtBundleSource;
  /** Accepted JWT-SVID audiences (a getter: the default is the broker's own ID, which can change). */
  audiences: () => string[];
  /** Trust domains allowed to call; empty = any domain we hold a bundle for. */
  trustDomains: readonly string[];
  /** Bumped whenever bundles change; cached X.509 verdicts from older generations are dropped. */
  generation: () => number;
  now?: () => number;
}

interface CachedVerdict {
  caller: Caller;
  generation: number;
  notAfter: number;
  leafFingerprint: string;
  /** Renegotiation was off before the chain was read: the verdict holds without re-reading it. */
  pinned: boolean;
}

export class Authenticator {
  // Verifying a chain costs several signature checks; a connection presents one chain for its life.
  private readonly cache = new WeakMap<object, CachedVerdict>();
  private readonly now: () => number;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.now = opts.now ?? Date.now;
  }

  async authenticate(call: object, metadata: Metadata): Promise<Caller> {
    const conn = callConnection(call);
    const fromPeer = conn ? await this.fromConnection(conn) : undefined;
    if (fromPeer) return fromPeer;
    const header = metadata.get('authorization')[0];
    if (typeof header === 'string' && header.length > 0) return this.fromJwt(header);
    throw unauthenticated('no_credentials', 'no client certificate and no bearer JWT-SVID presented');
  }

  /** The X.509-SVID presented on a TLS socket (the AuthZEN listener), verified and cached as on gRPC. */
  async authenticateTlsPeer(socket: PeerSocket): Promise<Caller> {
    const caller = await this.fromConnection({ session: socket, socket });
    if (!caller) throw unauthenticated('no_credentials', 'present an X.509-SVID (mTLS)');
    return caller;
  }

  /** The connection's peer X.509-SVID, verified; undefined when it presented none. */
  private async fromConnection(conn: CallConnection): Promise<Caller | undefined> {
    // Fast path: reading the peer chain (getPeerCertificate(true)) costs more than the rest of
    // a cached lookup, so a pinned connection's verdict is served without it.
    const cached = this.cache.get(conn.session);
    if (cached?.pinned && cached.generation === this.opts.generation() && cached.notAfter > this.now()) {
      return cached.caller;
    }
    // Before the chain is read: from here on the peer cannot swap certificates by renegotiating.
    conn.socket.disableRenegotiation?.();
    const chain = presentedChain(conn.socket);
    return chain.length > 0 ? this.fromX509(conn, chain) : undefined;
  }

  private async fromX509(conn: CallConnection, chain: Uint8Array[]): Promise<Caller> {
    const leaf = chain[0] as Uint8Array;
    const fp = createHash('sha256').update(leaf).digest('hex');
    const cached = this.cache.get(conn.session);
    const now = this.now();
    if (
      cached &&
      cached.generation === this.opts.generation() &&
      cached.notAfter > now &&
      cached.leafFingerprint === fp
    ) {
      return cached.caller;
    }
    try {
      const verified = await verifyX509Svid(chain, this.opts.x509Bundles, { now: new Date(now) });
      this.checkTrustDomain(verified.trustDomain);
      const caller: Caller = {
        spiffeId: verified.spiffeId,
        trustDomain: verified.trustDomain,
        path: verified.path,
        authMethod: 'x509',
      };
      this.cache.set(conn.session, {
        caller,
        generation: this.opts.generation(),
        notAfter: leafNotAfter(verified.verifiedChain),
        leafFingerprint: fp,
        pinned: typeof conn.socket.disableRenegotiation === 'function',
      });
      return caller;
    } catch (err) {
      throw asUnauthenticated(err, 'x509_invalid');
    }
  }

  private async fromJwt(header: string): Promise<Caller> {
    const match = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(header);
    if (!match)
      throw unauthenticated('bad_authorization_header', 'authorization header must be "Bearer <jwt>"');
    try {
      const verified = await verifyJwtSvid(match[1] as string, this.opts.jwtBundles, this.opts.audiences(), {
        now: new Date(this.now()),
      });
      this.checkTrustDomain(verified.trustDomain);
      return {
        spiffeId: verified.spiffeId,
        trustDomain: verified.trustDomain,
        path: verified.path,
        authMethod: 'jwt',
      };
    } catch (err) {
      throw asUnauthenticated(err, 'jwt_invalid');
    }
  }

  private checkTrustDomain(td: string): void {
    if (this.opts.trustDomains.length > 0 && !this.opts.trustDomains.includes(td)) {
      throw unauthenticated('trust_domain_not_allowed', `trust domain "${td}" may not call this broker`);
    }
  }
}

function asUnauthenticated(err: unknown, reason: string): BrokerError {
  if (isBrokerError(err)) {
    return err.code === 'UNAUTHENTICATED' ? err : unauthenticated(err.reason, err.message);
  }
  return unauthenticated(reason, 'credential verification failed');
}

/** Expiry of the leaf (first) certificate of a verified chain, in epoch ms. */
function leafNotAfter(chain: readonly Uint8Array[]): number {
  const leaf = chain[0];
  if (!leaf) return 0;
  const ms = Date.parse(new X509Certificate(leaf).validTo);
  return Number.isFinite(ms) ? ms : 0;
}
