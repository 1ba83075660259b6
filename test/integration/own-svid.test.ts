/**
 * The broker picks its own SVID by SPIFFE ID (workloadApi.expectedId, SVID_BROKER_ID) or entry
 * hint, never by position: a Workload API that hands the broker's process several SVIDs (say the
 * demo agent's entry also matches it) must not bring it up as the demo agent.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load-config.js';
import type { BrokerConfig } from '../../src/config/schema.js';
import { WorkloadApiServer } from '../../src/dev/workload-api-server.js';
import type { X509Svid } from '../../src/identity/types.js';
import { startBroker, StartupError, type RunningBroker } from '../../src/main.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  LogCapture,
  TRUST_DOMAIN,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { FakeIdentityProvider } from '../support/fake-identity-provider.js';
import { createLogger } from '../../src/main.js';

describe('integration: the broker selects its own SVID', () => {
  let h: Harness;
  let demoSvid: X509Svid;
  let brokerSvid: X509Svid;
  const servers: WorkloadApiServer[] = [];
  const brokers: RunningBroker[] = [];

  before(async () => {
    h = await startHarness();
    demoSvid = await h.ca.issueX509Svid(DEMO_AGENT, { ttlSeconds: 600 });
    brokerSvid = await h.ca.issueX509Svid(BROKER_ID, { ttlSeconds: 600 });
  });
  afterEach(async () => {
    for (const b of brokers.splice(0)) await b.close();
    for (const s of servers.splice(0)) await s.close();
  });
  after(async () => h?.close());

  /** A Workload API socket that hands out `svids` in this order. */
  async function socketOffering(name: string, svids: X509Svid[]): Promise<string> {
    const provider = new FakeIdentityProvider({
      svids,
      bundle: [...h.ca.authorities()],
      jwtBundles: new Map([[TRUST_DOMAIN, h.ca.jwks()]]),
    });
    const path = join(h.dir, `${name}.sock`);
    servers.push(await WorkloadApiServer.start(path, provider));
    return `unix://${path}`;
  }

  function configFor(socket: string, workloadApi: Record<string, unknown>): BrokerConfig {
    const base = h.configFor(join(h.dir, 'policies'), join(h.dir, `audit-${servers.length}.jsonl`));
    return parseConfig({
      ...base,
      workloadApi: { socket, firstUpdateTimeoutMs: 5000, ...workloadApi },
    });
  }

  async function start(config: BrokerConfig): Promise<RunningBroker> {
    const broker = await startBroker({ config, logger: createLogger('debug', new LogCapture()) });
    brokers.push(broker);
    return broker;
  }

  it('serves as expectedId even when another SVID comes first', async () => {
    const socket = await socketOffering('two', [demoSvid, brokerSvid]);
    const broker = await start(configFor(socket, { expectedId: BROKER_ID }));
    assert.equal(broker.spiffeId(), BROKER_ID);
    // The demo client checks that the server presents BROKER_ID: the handshake proves which SVID it serves.
    const client = await h.clientsAt(`127.0.0.1:${broker.grpcPort}`).client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'own svid' });
    assert.equal(task.agent, DEMO_AGENT);
  });

  it('selects by entry hint among SVIDs of one SPIFFE ID', async () => {
    const other = { ...(await h.ca.issueX509Svid(BROKER_ID, { ttlSeconds: 600 })), hint: 'old' };
    const wanted = { ...brokerSvid, hint: 'svid-broker' };
    const socket = await socketOffering('hints', [other, wanted]);
    const broker = await start(configFor(socket, { expectedId: BROKER_ID, hint: 'svid-broker' }));
    assert.equal(broker.spiffeId(), BROKER_ID);
    const client = await h.clientsAt(`127.0.0.1:${broker.grpcPort}`).client('demo');
    await client.beginTask({ environment: 'dev', intent: 'hint' });
  });

  it('refuses to start when the expected identity is not offered', async () => {
    const socket = await socketOffering('demo-only', [demoSvid]);
    await assert.rejects(start(configFor(socket, { expectedId: BROKER_ID })), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.match(err.message, /spiffe:\/\/example\.org\/broker is not among the SVIDs offered/);
      assert.match(err.message, /spiffe:\/\/example\.org\/agents\/demo/);
      return true;
    });
  });

  it('refuses to guess when several SVIDs are offered and no expectedId is set', async () => {
    const socket = await socketOffering('ambiguous', [demoSvid, brokerSvid]);
    await assert.rejects(start(configFor(socket, {})), (err: unknown) => {
      assert.ok(err instanceof StartupError);
      assert.match(err.message, /2 SVIDs offered .*set workloadApi\.expectedId \(SVID_BROKER_ID\)/);
      return true;
    });
  });

  it('takes the only SVID when no expectedId is set (the dev stack)', async () => {
    const socket = await socketOffering('single', [brokerSvid]);
    const broker = await start(configFor(socket, {}));
    assert.equal(broker.spiffeId(), BROKER_ID);
  });
});
