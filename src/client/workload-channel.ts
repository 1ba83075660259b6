/**
 * An agent's connection to the broker built from the Workload API: the agent's X.509-SVID stays
 * fresh (the source watches for rotations) and each call uses a gRPC client built for the SVID
 * current at that moment, so a long-running agent (the MCP server, an SDK user) never presents an
 * expired certificate.
 */
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { X509BundleSource, X509Svid } from '../identity/types.js';
import { X509Source, fetchJwtSvid, parseEndpointSocket } from '../identity/workload-api.js';
import { BrokerClient as RawBrokerClient, type BrokerClientOptions } from './broker-client.js';

const DEFAULT_BROKER_ADDR = 'localhost:8443';

/** host:port of the broker: the one given, else SVID_BROKER_ADDR, else localhost:8443. */
export function brokerAddress(address?: string): string {
  return address ?? (process.env.SVID_BROKER_ADDR || DEFAULT_BROKER_ADDR);
}

/**
 * The broker's SPIFFE ID: the one given, else SVID_BROKER_ID, else `spiffe://<own trust domain>/broker`.
 * The expected broker and the JWT audience are this one ID: a JWT-SVID minted for the broker must
 * only go to a server proving it is the broker, or any workload of the trust domain answering at
 * the broker's address could replay it to the real one.
 */
export function expectedBrokerId(ownSpiffeId: string, brokerId?: string): string {
  return (
    brokerId || process.env.SVID_BROKER_ID || `spiffe://${parseSpiffeId(ownSpiffeId).trustDomain}/broker`
  );
}

/** How to reach the broker with this SVID: its trust domain's bundle, its ID, the authentication. */
export function brokerClientOptions(
  bundles: Pick<X509BundleSource, 'getX509BundleForTrustDomain'>,
  endpoint: string,
  svid: X509Svid,
  brokerId: string,
  opts: { address?: string; auth?: 'x509' | 'jwt'; timeoutMs?: number },
): BrokerClientOptions {
  const brokerTd = parseSpiffeId(brokerId).trustDomain;
  const serverBundle = bundles.getX509BundleForTrustDomain(brokerTd);
  if (!serverBundle) throw new Error(`no trust bundle for the broker's trust domain "${brokerTd}"`);
  return {
    address: brokerAddress(opts.address),
    svid,
    serverBundle,
    brokerId,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    auth:
      opts.auth === 'jwt'
        ? { kind: 'jwt', token: async () => (await fetchJwtSvid(endpoint, [brokerId])).token }
        : { kind: 'x509' },
  };
}

export interface WorkloadChannelOptions {
  /** host:port of the broker (default: SVID_BROKER_ADDR, then localhost:8443). */
  address?: string;
  /** Workload API endpoint (default: SPIFFE_ENDPOINT_SOCKET). */
  endpointSocket?: string;
  /** The broker's SPIFFE ID (default: SVID_BROKER_ID, then spiffe://<own trust domain>/broker). */
  brokerId?: string;
  /** 'x509' (mTLS, default) or 'jwt' (a JWT-SVID for the broker's ID as bearer token). */
  auth?: 'x509' | 'jwt';
  /** Per-call deadline in ms (default 10 s). */
  timeoutMs?: number;
  /** How long to wait for the first SVID (default 10 s). */
  svidTimeoutMs?: number;
}

export class WorkloadChannel {
  private current: { svid: X509Svid; client: RawBrokerClient } | undefined;

  private constructor(
    private readonly source: X509Source,
    private readonly endpoint: string,
    readonly brokerId: string,
    private readonly opts: WorkloadChannelOptions,
  ) {}

  static async open(opts: WorkloadChannelOptions = {}): Promise<WorkloadChannel> {
    const auth = opts.auth ?? 'x509';
    if (auth !== 'x509' && auth !== 'jwt') throw new Error('auth must be x509 or jwt');
    const endpoint = parseEndpointSocket(opts.endpointSocket ?? process.env.SPIFFE_ENDPOINT_SOCKET);
    const source = await X509Source.create({ endpoint, timeoutMs: opts.svidTimeoutMs ?? 10_000 });
    const brokerId = expectedBrokerId(source.getX509Svid().spiffeId, opts.brokerId);
    return new WorkloadChannel(source, endpoint, brokerId, { ...opts, auth });
  }

  /** The agent's own SPIFFE ID (from its current SVID). */
  get spiffeId(): string {
    return this.source.getX509Svid().spiffeId;
  }

  /** A client for the SVID current now; rebuilt when the SVID rotated since the last call. */
  client(): RawBrokerClient {
    const svid = this.source.getX509Svid();
    if (this.current?.svid === svid) return this.current.client;
    const fresh = new RawBrokerClient(this.clientOptions(svid));
    this.current?.client.close();
    this.current = { svid, client: fresh };
    return fresh;
  }

  close(): void {
    this.current?.client.close();
    this.current = undefined;
    this.source.close();
  }

  private clientOptions(svid: X509Svid): BrokerClientOptions {
    return brokerClientOptions(this.source, this.endpoint, svid, this.brokerId, this.opts);
  }
}
