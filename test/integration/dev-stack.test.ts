import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { BrokerClient } from '../../src/client/broker-client.js';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { DEV_TRUST_DOMAIN, DEV_WORKLOADS, startDevStack, type DevStack } from '../../src/dev/dev-stack.js';
import { X509Source } from '../../src/identity/workload-api.js';
import { createLogger, startBroker, type RunningBroker } from '../../src/main.js';
import { packageRoot } from '../../src/package-root.js';
import { LogCapture, eventually, readAudit } from '../support/broker-harness.js';
import { runCli } from '../support/run-cli.js';

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

describe('integration: dev stack lock, process title and its own Redis', function () {
  this.timeout(180_000);

  it('a second dev stack in the same directory refuses to start and leaves the first one alone', async () => {
    const r = await startStack('memory');
    try {
      await assert.rejects(
        startDevStack({ dir: r.dir, logger: createLogger('silent'), store: 'memory' }),
        new RegExp(`a dev stack is already running here \\(${r.dir}\\), pid ${process.pid}`),
      );
      // The running stack's sockets, and its lock, are still there, and it still serves.
      for (const w of Object.values(DEV_WORKLOADS)) assert.ok(statSync(join(r.dir, w.socket)).isSocket());
      assert.equal(readFileSync(join(r.dir, 'dev.pid'), 'utf8').trim(), String(process.pid));
      await demoCredential(r);
      // From the CLI too, as a person would start it: exit 1, one line naming the pid.
      const cli = await runCli([
        'dev',
        '--dir',
        r.dir,
        '--listen',
        '127.0.0.1:0',
        '--http-listen',
        '127.0.0.1:0',
      ]);
      assert.equal(cli.code, 1, cli.stdout + cli.stderr);
      assert.match(
        cli.stderr,
        new RegExp(`svid-broker: a dev stack is already running here .*pid ${process.pid}`),
      );
      for (const w of Object.values(DEV_WORKLOADS)) assert.ok(statSync(join(r.dir, w.socket)).isSocket());

      // Another directory, but the running broker's port: it fails to bind, says so, and removes
      // only what it made (its sockets and lock), never the running stack's.
      const other = mkdtempSync(join(tmpdir(), 'svb-dev-'));
      try {
        const taken = `127.0.0.1:${r.broker.grpcPort}`;
        const bind = await runCli(['dev', '--dir', other, '--listen', taken, '--http-listen', '127.0.0.1:0']);
        assert.equal(bind.code, 1, bind.stdout + bind.stderr);
        assert.match(
          bind.stderr,
          new RegExp(`svid-broker: cannot listen on ${taken}: the address is in use`),
        );
        for (const w of Object.values(DEV_WORKLOADS)) assert.equal(existsSync(join(other, w.socket)), false);
        assert.equal(existsSync(join(other, 'dev.pid')), false);
        for (const w of Object.values(DEV_WORKLOADS)) assert.ok(statSync(join(r.dir, w.socket)).isSocket());
      } finally {
        rmSync(other, { recursive: true, force: true });
      }
    } finally {
      await r.close();
    }
  });

  it('a lock left by a process that is gone is taken over; close() removes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svb-dev-'));
    try {
      const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
      writeFileSync(join(dir, 'dev.pid'), `${gone.stdout.toString()}\n`);
      const stack = await startDevStack({ dir, logger: createLogger('silent'), store: 'memory' });
      assert.equal(readFileSync(join(dir, 'dev.pid'), 'utf8').trim(), String(process.pid));
      await stack.close();
      assert.equal(existsSync(join(dir, 'dev.pid')), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the death of its own redis-server in the log', async () => {
    const r = await startStack('redis');
    try {
      const redis = r.stack.redis;
      assert.ok(redis);
      redis.kill();
      const line = await eventually(
        () => r.logs.lines.find((l) => l.includes('its own redis-server')),
        15_000,
      );
      assert.match(
        line,
        new RegExp(`dev stack: its own redis-server \\(pid \\d+, port ${redis.port}\\) exited on SIGKILL`),
      );
      assert.match(line, /fails closed/);
      await redis.restart();
    } finally {
      await r.close();
    }
  });

  it('`svid-broker dev` is svid-broker to pidof, and SIGHUP from there reloads the policy set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svb-dev-'));
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'dev',
        '--dir',
        dir,
        '--listen',
        '127.0.0.1:0',
        '--http-listen',
        '127.0.0.1:0',
      ],
      { cwd: packageRoot(), env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await eventually(() => out.includes('dev stack is up') || undefined, 45_000);
      const pids = spawnSync('pidof', ['svid-broker']).stdout.toString().trim().split(/\s+/);
      assert.ok(
        pids.includes(String(child.pid)),
        `pidof svid-broker: ${pids.join(' ')} (child ${child.pid})`,
      );
      spawnSync('sh', ['-c', `kill -HUP ${child.pid}`]);
      await eventually(() => out.includes('SIGHUP: policy set') || undefined, 15_000);
    } finally {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
