/**
 * How CLI commands reach the broker: the caller's SVID from the Workload API at
 * SPIFFE_ENDPOINT_SOCKET, the broker at SVID_BROKER_ADDR, its identity checked.
 */
import { BrokerAdminClient, BrokerClient, type BrokerClientOptions } from '../client/broker-client.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import { X509Source, fetchJwtSvid, parseEndpointSocket } from '../identity/workload-api.js';

const DEFAULT_ADDR = 'localhost:8443';

export interface Connection {
  client: BrokerClient;
  admin: BrokerAdminClient;
  close(): void;
}

export async function connect(opts: { auth: string; brokerId: string | undefined }): Promise<Connection> {
  const endpoint = parseEndpointSocket(process.env.SPIFFE_ENDPOINT_SOCKET);
  const source = await X509Source.create({ endpoint, timeoutMs: 10_000 });
  try {
    const svid = source.getX509Svid();
    const ownTd = parseSpiffeId(svid.spiffeId).trustDomain;
    const brokerId = opts.brokerId ?? process.env.SVID_BROKER_ID;
    const brokerTd = brokerId ? parseSpiffeId(brokerId).trustDomain : ownTd;
    const serverBundle = source.getX509BundleForTrustDomain(brokerTd);
    if (!serverBundle) throw new Error(`no trust bundle for the broker's trust domain "${brokerTd}"`);
    if (opts.auth !== 'x509' && opts.auth !== 'jwt') throw new Error('--auth must be x509 or jwt');
    // The expected broker and the JWT audience are one ID, defaulted together: a JWT-SVID minted for
    // the broker must only go to a server proving it is the broker, or any workload of the trust
    // domain answering at SVID_BROKER_ADDR could replay it to the real one.
    const audience = brokerId ?? `spiffe://${ownTd}/broker`;
    const clientOpts: BrokerClientOptions = {
      address: process.env.SVID_BROKER_ADDR || DEFAULT_ADDR,
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
