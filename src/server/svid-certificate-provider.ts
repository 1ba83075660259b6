/**
 * Feeds grpc-js the broker's current SVID and trust bundles, so rotation needs no restart: each
 * update replaces the secure context and new handshakes see it at once. (`createSsl` is static.)
 */
import type { experimental } from '@grpc/grpc-js';
import { derToPem } from '../identity/x509-verify.js';
import type { X509Bundle, X509Svid } from '../identity/types.js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = Parameters<CertificateProvider['addCaCertificateListener']>[0];
type IdentityListener = Parameters<CertificateProvider['addIdentityCertificateListener']>[0];

/** What the TLS layer needs from an X509Source: the current SVID, every bundle, and change events. */
export interface TlsIdentitySource {
  getX509Svid(): X509Svid;
  getX509BundleForTrustDomain(trustDomain: string): X509Bundle | undefined;
  /** Every bundle currently held: own trust domain and federated ones. */
  getX509Bundles(): X509Bundle[];
  /** Calls `listener` after each atomic update; returns an unsubscribe function. */
  onUpdate(listener: () => void): () => void;
}

export class SvidCertificateProvider implements CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly unsubscribe: () => void;
  private generation = 0;

  constructor(private readonly source: TlsIdentitySource) {
    this.unsubscribe = source.onUpdate(() => this.publish());
  }

  /** Bumped on every update: auth caches keyed on it drop verdicts made under old bundles. */
  get currentGeneration(): number {
    return this.generation;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    // Deliver after the caller returns: grpc-js registers its watcher only after adding listeners,
    // so a synchronous first update would be lost and the port would drop every connection.
    queueMicrotask(() => {
      if (this.caListeners.has(listener)) listener(this.caUpdate());
    });
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identityListeners.has(listener)) listener(this.identityUpdate());
    });
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  close(): void {
    this.unsubscribe();
  }

  private publish(): void {
    this.generation++;
    const ca = this.caUpdate();
    const id = this.identityUpdate();
    for (const l of this.caListeners) l(ca);
    for (const l of this.identityListeners) l(id);
  }

  // The CA list is what the server advertises in its CertificateRequest; chain checks against the
  // bundle of the peer's own trust domain happen in auth code, never against this union.
  private caUpdate(): { caCertificate: Buffer } {
    const pems = this.source.getX509Bundles().flatMap((b) => b.authorities.map((der) => derToPem(der)));
    return { caCertificate: Buffer.from(pems.join('')) };
  }

  private identityUpdate(): { certificate: Buffer; privateKey: Buffer } {
    const svid = this.source.getX509Svid();
    return {
      certificate: Buffer.from(svid.certChain.map((der) => derToPem(der)).join('')),
      privateKey: Buffer.from(derToPem(svid.privateKey, 'PRIVATE KEY')),
    };
  }
}
