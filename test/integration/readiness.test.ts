/**
 * Health that tells the truth: during each fault that makes the broker refuse work (Redis down, the
 * audit sink failed, the invalidation feed stale, no valid SVID) `/readyz` answers 503 naming it,
 * `grpc.health.v1` answers NOT_SERVING and `svid_broker_dependency_up` reads 0; `/healthz` stays
 * 200 (liveness); after the fault all three say serving again.
 */
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { credentials, makeClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { Redis } from 'ioredis';
import { FileChainSink } from '../../src/audit/file-chain-sink.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { BROKER_SERVICE } from '../../src/server/grpc-server.js';
import { eventually, startHarness, type Harness } from '../support/broker-harness.js';
import { startRedisServer, type RunningRedis } from '../support/redis-server.js';
import { createFsSpy } from '../unit/audit/fs-spy.js';

type Readyz = {
  status: string;
  reason?: string;
  dependencies: Record<string, { ok: boolean; reason?: string }>;
};

const HealthClient = makeClientConstructor(healthService, 'grpc.health.v1.Health');
type CheckFn = (
  req: { service: string },
  cb: (err: ServiceError | null, res?: { status: string }) => void,
) => void;

/** grpc.health.v1 Check over server-authenticated TLS (health needs no client certificate). */
function healthOf(h: Harness): { check(service?: string): Promise<string>; close(): void } {
  const roots = Buffer.from(
    h.ca
      .authorities()
      .map((d) => derToPem(d))
      .join(''),
  );
  const client = new HealthClient(
    h.address,
    credentials.createSsl(roots, null, null, { checkServerIdentity: () => undefined }),
    { 'grpc.ssl_target_name_override': 'svid-broker' },
  ) as unknown as Client & { Check: CheckFn };
  return {
    check: (service = '') =>
      new Promise((resolve, reject) =>
        client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'))),
      ),
    close: () => client.close(),
  };
}

async function readyz(h: Harness): Promise<{ status: number; body: Readyz }> {
  const { status, body } = await h.httpJson('/readyz');
  return { status, body: body as Readyz };
}

async function dependencyUp(h: Harness, dependency: string): Promise<number | undefined> {
  const text = String((await h.httpJson('/metrics')).body);
  const line = new RegExp(`^svid_broker_dependency_up\\{dependency="${dependency}"\\} (\\d)$`, 'm').exec(
    text,
  );
  return line ? Number(line[1]) : undefined;
}

/** Waits for the fault to show everywhere, then checks `/readyz` names it and liveness holds. */
async function expectNotServing(h: Harness, dependency: string, reason: RegExp): Promise<Readyz> {
  const health = healthOf(h);
  try {
    const { body } = await eventually(async () => {
      const r = await readyz(h);
      return r.status === 503 && r.body.dependencies[dependency]?.ok === false ? r : undefined;
    }, 10_000);
    assert.equal(body.status, 'not ready');
    assert.match(body.dependencies[dependency]?.reason ?? '', reason);
    assert.match(body.reason ?? '', new RegExp(`${dependency}: `));
    await eventually(async () => (await health.check()) === 'NOT_SERVING');
    assert.equal(await health.check(BROKER_SERVICE), 'NOT_SERVING');
    assert.equal(await dependencyUp(h, dependency), 0);
    assert.equal((await h.httpJson('/healthz')).status, 200, 'liveness is not readiness');
    return body;
  } finally {
    health.close();
  }
}

async function expectServing(h: Harness): Promise<void> {
  const health = healthOf(h);
  try {
    const { body } = await eventually(async () => {
      const r = await readyz(h);
      return r.status === 200 ? r : undefined;
    }, 15_000);
    assert.equal(body.status, 'ready');
    assert.deepEqual(Object.keys(body.dependencies).sort(), ['audit', 'feed', 'redis', 'svid']);
    await eventually(async () => (await health.check()) === 'SERVING');
    assert.equal(await health.check(BROKER_SERVICE), 'SERVING');
    for (const dependency of ['audit', 'feed', 'redis', 'svid'])
      assert.equal(await dependencyUp(h, dependency), 1);
  } finally {
    health.close();
  }
}

describe('integration: readiness (/readyz, grpc.health.v1, dependency gauge)', function () {
  this.timeout(60_000);

  describe('Redis down, and the feed that lives on it', () => {
    let redis: RunningRedis;
    let h: Harness;
    before(async () => {
      redis = await startRedisServer();
      h = await startHarness({ redisUrl: redis.url, config: { feed: { blockMs: 100, staleAfterMs: 1000 } } });
    });
    after(async () => {
      await h?.close();
      await redis?.stop();
    });

    it('is NOT_SERVING while Redis is down and SERVING once it is back', async () => {
      await expectServing(h);
      redis.kill();
      await expectNotServing(h, 'redis', /./);
      await redis.restart();
      await expectServing(h);
    });

    it('is NOT_SERVING while only the invalidation feed is stale (its reads refused)', async () => {
      const admin = new Redis(redis.url);
      try {
        await admin.call('ACL', 'SETUSER', 'default', '-xread');
        const body = await expectNotServing(h, 'feed', /invalidation feed stale/);
        assert.equal(body.dependencies.redis?.ok, true, 'Redis itself answers');
        await admin.call('ACL', 'SETUSER', 'default', '+xread');
        await expectServing(h);
      } finally {
        admin.disconnect();
      }
    });
  });

  describe('audit sink failed', () => {
    it('is NOT_SERVING while writes fail, refuses calls up front, and SERVING once the sink healed', async () => {
      const spy = createFsSpy();
      const h0 = await startHarness();
      const file = join(h0.dir, 'faulty-audit.jsonl');
      await h0.close();
      const sink = await FileChainSink.open(file, {
        fileSystem: spy.fileSystem,
        retry: { baseDelayMs: 5, maxDelayMs: 50 },
      });
      const h = await startHarness({ audit: sink });
      try {
        await expectServing(h);
        const demo = await h.client('demo');
        const task = await demo.beginTask({ environment: 'dev', intent: 'before' });
        spy.faults.write = 'ENOSPC';
        await assert.rejects(demo.beginTask({ environment: 'dev', intent: 'fills the disk' }));
        await expectNotServing(h, 'audit', /ENOSPC/);
        // Refused before policy or the backend: nothing is minted while nothing can be recorded.
        const leasesBefore = await h.broker.store.listLeases({ taskId: task.task_id });
        await assert.rejects(
          demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
          /audit trail/,
        );
        const leasesAfter = await h.broker.store.listLeases({ taskId: task.task_id });
        assert.equal(leasesAfter.length, leasesBefore.length);
        delete spy.faults.write;
        await expectServing(h);
        assert.ok(await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      } finally {
        await h.close();
        await sink.close();
      }
    });
  });

  describe('no valid SVID', () => {
    it('is NOT_SERVING while the broker SVID is past its notAfter, SERVING when it is valid', async () => {
      let shift = 0;
      const h = await startHarness({ now: () => Date.now() + shift });
      try {
        await expectServing(h);
        shift = 30 * 86_400_000;
        await expectNotServing(h, 'svid', /X\.509-SVID expired/);
        shift = 0;
        await expectServing(h);
      } finally {
        await h.close();
      }
    });
  });
});
