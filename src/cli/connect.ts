/**
 * How CLI commands reach the broker: the caller's SVID from the Workload API at
 * SPIFFE_ENDPOINT_SOCKET, the broker at SVID_BROKER_ADDR, its identity checked. Connection
 * problems are checked here (a socket that is not there, an SVID already expired) so the person
 * at the terminal reads what to do instead of grpc-js's wording.
 */
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { BrokerAdminClient, BrokerClient } from '../client/broker-client.js';
import { brokerClientOptions, expectedBrokerId } from '../client/workload-channel.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import type { X509Svid } from '../identity/types.js';
import { X509Source, parseEndpointSocket } from '../identity/workload-api.js';
import { usageError } from './command.js';

/** Where the CLI looks for the broker: SVID_BROKER_ADDR, else localhost:8443. */
export { brokerAddress } from '../client/workload-channel.js';

export interface Connection {
  client: BrokerClient;
  admin: BrokerAdminClient;
  close(): void;
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
    const brokerId = expectedBrokerId(svid.spiffeId, opts.brokerId);
    // An ID given by flag or SVID_BROKER_ID is checked here, so its error names the flag.
    parseSpiffeId(brokerId, '--broker-id');
    const clientOpts = brokerClientOptions(source, endpoint, svid, brokerId, { auth: opts.auth });
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
