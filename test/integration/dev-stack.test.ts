import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { BrokerClient } from '../../src/client/broker-client.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { DEV_TRUST_DOMAIN, DEV_WORKLOADS, startDevStack, type DevStack } from '../../src/dev/dev-stack.js';
import { X509Source } from '../../src/identity/workload-api.js';
import { createLogger, startBroker, type RunningBroker } from '../../src/main.js';
import { LogCapture, readAudit } from '../support/broker-harness.js';

const BROKER_ID = DEV_WORKLOADS.broker.spiffeId;
const DEMO_AGENT = DEV_WORKLOADS.agent.spiffeId;
const NOT_DURABLE = 'LEASE STORE IS IN-PROCESS MEMORY';

interface Running {
  dir: string;
  stack: DevStack;
  broker: RunningBroker;
  logs: LogCapture;
  close(): Promise<void>;
}

async function startStack(store: 'memory' | 'redis'): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'svb-dev-'));
  const logs = new LogCapture();
  const logger = createLogger('info', logs);
  let stack: DevStack | undefined;
  try {
    stack = await startDevStack({ dir, logger, store, listen: '127.0.0.1:0', httpListen: '127.0.0.1:0' });
    const broker = await startBroker({ config: stack.config, logger });
    const s = stack;
    return {
      dir,
      stack,
      broker,
      logs,
      async close() {
        await broker.close();
        await s.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Begins a dev task as the demo agent (agent.sock) and returns the verified token/demo credential. */
async function demoCredential(r: Running): Promise<{ leaseId: string; sub: string; aud: unknown }> {
  const source = await X509Source.create({ endpoint: r.stack.endpoints.agent, timeoutMs: 5000 });
  const serverBundle = source.getX509BundleForTrustDomain(DEV_TRUST_DOMAIN);
  assert.ok(serverBundle, 'agent holds the dev bundle');
  const client = new BrokerClient({
    address: `127.0.0.1:${r.broker.grpcPort}`,
    svid: source.getX509Svid(),
    serverBundle,
    brokerId: BROKER_ID,
  });
  try {
    const task = await client.beginTask({ environment: 'dev', intent: 'dev stack test' });
    assert.equal(task.agent, DEMO_AGENT);
    const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    assert.deepEqual(issued.policy_ids, ['demo-agent-token-demo-dev']);
    const res = await fetch(`http://127.0.0.1:${r.broker.httpPort}/.well-known/jwks.json`);
    const jwks = (await res.json()) as JSONWebKeySet;
    const { claims } = await verifyAccessToken(issued.credential?.token ?? '', {
      jwks,
      issuer: BROKER_ID,
      audience: 'demo-api',
    });
    assert.equal(claims.jti, issued.lease_id);
    assert.equal((await r.broker.store.getLease(issued.lease_id))?.state, 'active');
    return { leaseId: issued.lease_id, sub: claims.sub, aud: claims.aud };
  } finally {
    client.close();
    source.close();
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

describe('integration: dev stack', function () {
  this.timeout(30_000);

  it('with the in-process store: warns loudly, serves the demo agent a token/demo credential in dev', async () => {
    const r = await startStack('memory');
    try {
      assert.equal(r.stack.redis, undefined);
      assert.equal(r.stack.config.redis.store, 'memory');
      for (const w of Object.values(DEV_WORKLOADS)) {
        const path = join(r.dir, w.socket);
        assert.ok(existsSync(path) && statSync(path).isSocket(), `${w.socket} is a socket`);
      }
      assert.deepEqual(Object.keys(r.stack.endpoints).sort(), ['agent', 'broker', 'security']);
      assert.equal(r.stack.endpoints.agent, `unix://${join(r.dir, 'agent.sock')}`);

      assert.equal(r.broker.store.durable, false);
      const warning = r.logs.lines
        .map((l) => JSON.parse(l) as { level: number; msg: string })
        .find((l) => l.msg.includes(NOT_DURABLE));
      assert.ok(warning, 'not-durable warning logged');
      assert.equal(warning.level, 40, 'logged at warn');
      assert.match(warning.msg, /NOT durable/);
      assert.equal(r.broker.spiffeId(), BROKER_ID);

      const cred = await demoCredential(r);
      assert.equal(cred.sub, DEMO_AGENT);
      assert.equal(cred.aud, 'demo-api');
      const audit = await readAudit(join(r.dir, 'audit.jsonl'));
      assert.ok(audit.some((a) => a.type === 'credential.issued' && a.lease === cred.leaseId));
    } finally {
      await r.close();
    }
  });

  it('with store redis: starts a private redis-server and stops it on close()', async () => {
    const r = await startStack('redis');
    const redis = r.stack.redis;
    let closed = false;
    try {
      assert.ok(redis, 'a private redis-server');
      assert.equal(r.stack.config.redis.store, 'redis');
      assert.equal(r.stack.config.redis.url, redis.url);
      assert.ok(redis.dir.startsWith(r.dir), 'redis data lives in the stack dir');
      assert.equal(await portOpen(redis.port), true);
      assert.equal(r.broker.store.durable, true);
      assert.ok(!r.logs.text().includes(NOT_DURABLE), 'no not-durable warning with Redis');
      const ready = await fetch(`http://127.0.0.1:${r.broker.httpPort}/readyz`);
      assert.equal(ready.status, 200);

      const cred = await demoCredential(r);
      assert.equal(cred.sub, DEMO_AGENT);

      await r.close();
      closed = true;
      assert.equal(await portOpen(redis.port), false, 'redis-server still listening after close()');
      assert.ok(!existsSync(r.dir));
    } finally {
      if (!closed) await r.close();
    }
  });
});
