/**
 * One dev workload's identity, issued by a LocalCa and rotated at half its lifetime like SPIRE
 * does, served to the WorkloadApiServer.
 */
import type { X509Svid } from '../identity/types.js';
import type { LocalCa } from './local-ca.js';
import type { WorkloadIdentity, WorkloadIdentityProvider } from './workload-api-server.js';

export interface CaWorkloadIdentityOptions {
  ca: LocalCa;
  spiffeId: string;
  /** X.509-SVID lifetime; rotation happens at half of it. */
  x509TtlSeconds: number;
  jwtTtlSeconds?: number;
  /** Other trust domains this workload federates with. */
  federatesWith?: LocalCa[];
  /** DNS SANs of the X.509-SVID (SPIRE's entry `dns_names`). */
  dnsNames?: string[];
}

export class CaWorkloadIdentity implements WorkloadIdentityProvider {
  private svid!: X509Svid;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();

  private constructor(private readonly opts: CaWorkloadIdentityOptions) {}

  static async create(opts: CaWorkloadIdentityOptions): Promise<CaWorkloadIdentity> {
    const id = new CaWorkloadIdentity(opts);
    await id.rotate();
    return id;
  }

  get spiffeId(): string {
    return this.opts.spiffeId;
  }

  current(): WorkloadIdentity {
    const federated = this.opts.federatesWith ?? [];
    return {
      svids: [this.svid],
      bundle: [...this.opts.ca.authorities()],
      federatedBundles: new Map(federated.map((ca) => [ca.trustDomain, [...ca.authorities()]])),
      jwtBundles: new Map([
        [this.opts.ca.trustDomain, this.opts.ca.jwks()],
        ...federated.map((ca) => [ca.trustDomain, ca.jwks()] as const),
      ]),
    };
  }

  async mintJwtSvid(audience: string[], spiffeId?: string): Promise<string> {
    if (spiffeId && spiffeId !== this.opts.spiffeId)
      throw new Error(`no identity ${spiffeId} for this workload`);
    return this.opts.ca.mintJwtSvid(this.opts.spiffeId, audience, {
      ttlSeconds: this.opts.jwtTtlSeconds ?? 300,
    });
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Issues a fresh SVID now and schedules the next rotation; also called when bundles change. */
  async rotate(): Promise<void> {
    this.svid = await this.opts.ca.issueX509Svid(this.opts.spiffeId, {
      ttlSeconds: this.opts.x509TtlSeconds,
      ...(this.opts.dnsNames ? { dnsNames: this.opts.dnsNames } : {}),
    });
    this.notify();
    this.schedule();
  }

  /** Tells watchers that bundles changed (e.g. a CA rotated its root). */
  notify(): void {
    for (const l of this.listeners) l();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.stop();
    this.timer = setTimeout(
      () => {
        this.rotate().catch(() => undefined);
      },
      (this.opts.x509TtlSeconds * 1000) / 2,
    );
    this.timer.unref();
  }
}
