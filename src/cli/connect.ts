/**
 * How CLI commands reach the broker: the caller's SVID from the Workload API at
 * SPIFFE_ENDPOINT_SOCKET, the broker at SVID_BROKER_ADDR, its identity checked. Connection
 * problems are checked here (a socket that is not there, an SVID already expired) so the person
 * at the terminal reads what to do instead of grpc-js's wording.
 */
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { BrokerAdminClient, BrokerClient, type BrokerClientOptions } from '../client/broker-client.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { X509Svid } from '../identity/types.js';
import { X509Source, fetchJwtSvid, parseEndpointSocket } from '../identity/workload-api.js';
import { usageError } from './command.js';

const DEFAULT_ADDR = 'localhost:8443';

export interface Connection {
  client: BrokerClient;
  admin: BrokerAdminClient;
  close(): void;
}

/** Where the CLI looks for the broker. */
export function brokerAddress(): string {
  return process.env.SVID_BROKER_ADDR || DEFAULT_ADDR;
}

/** A Unix socket that is not there fails at once, naming the path, instead of after a 10 s wait. */
function checkEndpointSocket(endpoint: string): void {
  if (!endpoint.startsWith('unix://')) return;
  const path = endpoint.slice('unix://'.length);
  let isSocket: boolean;
  try {
    isSocket = statSync(path).isSocket();
  } catch {
    throw new Error(
      `SPIFFE_ENDPOINT_SOCKET: no Workload API socket at ${path}: is the SPIRE agent (or svid-broker dev) running?`,
    );
  }
  if (!isSocket) throw new Error(`SPIFFE_ENDPOINT_SOCKET: ${path} is not a socket`);
}

/** An SVID the Workload API handed out already expired: the broker would refuse it anyway. */
export function checkSvidValidity(svid: X509Svid, now = new Date()): void {
  const leaf = svid.certChain[0];
  if (!leaf) return;
  const cert = new X509Certificate(leaf);
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() < now.getTime()) {
    throw new Error(
      `your SVID (${svid.spiffeId}) expired at ${notAfter.toISOString()}: ` +
        "the Workload API did not renew it; check the SPIRE agent and this host's clock",
    );
  }
}

export async function connect(opts: { auth: string; brokerId: string | undefined }): Promise<Connection> {
  if (opts.auth !== 'x509' && opts.auth !== 'jwt') throw usageError('--auth must be x509 or jwt');
  const endpoint = parseEndpointSocket(process.env.SPIFFE_ENDPOINT_SOCKET);
  checkEndpointSocket(endpoint);
  const source = await X509Source.create({ endpoint, timeoutMs: 10_000 });
  try {
    const svid = source.getX509Svid();
    checkSvidValidity(svid);
    const ownTd = parseSpiffeId(svid.spiffeId).trustDomain;
    const brokerId = opts.brokerId || process.env.SVID_BROKER_ID;
    const brokerTd = brokerId ? parseSpiffeId(brokerId, '--broker-id').trustDomain : ownTd;
    const serverBundle = source.getX509BundleForTrustDomain(brokerTd);
    if (!serverBundle) throw new Error(`no trust bundle for the broker's trust domain "${brokerTd}"`);
    // The expected broker and the JWT audience are one ID, defaulted together: a JWT-SVID minted for
    // the broker must only go to a server proving it is the broker, or any workload of the trust
    // domain answering at SVID_BROKER_ADDR could replay it to the real one.
    const audience = brokerId || `spiffe://${ownTd}/broker`;
    const clientOpts: BrokerClientOptions = {
      address: brokerAddress(),
      svid,
      serverBundle,
      brokerId: audience,
      auth:
        opts.auth === 'jwt'
          ? { kind: 'jwt', token: async () => (await fetchJwtSvid(endpoint, [audience])).token }
          : { kind: 'x509' },
    };
    const client = new BrokerClient(clientOpts);
    const admin = new BrokerAdminClient(clientOpts);
    return {
      client,
      admin,
      close: () => {
        client.close();
        admin.close();
        source.close();
      },
    };
  } catch (err) {
    source.close();
    throw err;
  }
}
