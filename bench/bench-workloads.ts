/**
 * The bench's identities and their Workload API: a LocalCa for example.org serving the broker's
 * and the demo agent's SVIDs, one Unix socket each, as the dev stack does. Shared by the broker
 * process (bench/broker-process.ts), the capacity bench's `serve` processes and the drivers.
 */
import { join } from 'node:path';
import { CaWorkloadIdentity } from '../src/dev/ca-workload-identity.js';
import { LocalCa } from '../src/dev/local-ca.js';
import { WorkloadApiServer } from '../src/dev/workload-api-server.js';

export const TRUST_DOMAIN = 'example.org';
export const BROKER_ID = `spiffe://${TRUST_DOMAIN}/broker`;
export const DEMO_AGENT = `spiffe://${TRUST_DOMAIN}/agents/demo`;

/**
 * Serves the broker's and the demo agent's Workload API under `dir`; what it starts is pushed
 * onto `closers`. Returns each socket's endpoint (`unix://...`) by name: `broker`, `demo`.
 */
export async function startBenchWorkloads(
  dir: string,
  closers: Array<() => Promise<void> | void>,
): Promise<Record<'broker' | 'demo', string>> {
  const ca = await LocalCa.create(TRUST_DOMAIN);
  const endpoints = { broker: '', demo: '' };
  for (const [name, spiffeId] of [
    ['broker', BROKER_ID],
    ['demo', DEMO_AGENT],
  ] as const) {
    const identity = await CaWorkloadIdentity.create({ ca, spiffeId, x509TtlSeconds: 3600 });
    closers.push(() => identity.stop());
    const socket = join(dir, `${name}.sock`);
    const server = await WorkloadApiServer.start(socket, identity);
    closers.push(() => server.close());
    endpoints[name] = `unix://${socket}`;
  }
  return endpoints;
}
