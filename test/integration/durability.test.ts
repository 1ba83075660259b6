/**
 * redis.durability against a real redis-server (Debian's 7.0: no WAITAOF): `fsync` starts only on a
 * server that fsyncs every write before answering, `replica` refuses credentials no replica
 * confirmed, `none` starts with a warning.
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { eventually, grpcError, readAudit, startHarness } from '../support/broker-harness.js';
import { randomPrefix, startRedisServer, type RunningRedis } from '../support/redis-server.js';

type Audit = Array<Record<string, unknown>>;
const ofType = (records: Audit, type: string): Audit => records.filter((r) => r.type === type);

const redisConfig = (redis: RunningRedis, extra: Record<string, unknown>): Record<string, unknown> => ({
  redis: { url: redis.url, prefix: randomPrefix(), store: 'redis', ...extra },
});

describe('integration: redis.durability', function () {
  this.timeout(60_000);
  const servers: RunningRedis[] = [];
  const server = async (appendfsync: 'always' | 'everysec'): Promise<RunningRedis> => {
    const redis = await startRedisServer({ appendfsync });
    servers.push(redis);
    return redis;
  };
  after(async () => {
    for (const redis of servers.splice(0)) await redis.stop();
  });

  describe('fsync (the default) on Redis 7.0', () => {
    it('refuses to start on a server with appendfsync everysec, and says why', async () => {
      const redis = await server('everysec');
      await assert.rejects(startHarness({ redisUrl: redis.url }), (err: Error) => {
        assert.equal(err.name, 'StartupError');
        assert.match(err.message, /appendfsync everysec/);
        assert.match(err.message, /appendfsync always/);
        assert.match(err.message, /redis\.durability replica or none/);
        return true;
      });
      // An operator's assertion does not outweigh what the server says.
      await assert.rejects(
        startHarness({ config: redisConfig(redis, { assumeAppendfsyncAlways: true }) }),
        /appendfsync everysec/,
      );
    });

    it('starts on a server with appendfsync always and issues', async () => {
      const redis = await server('always');
      const h = await startHarness({ redisUrl: redis.url });
      try {
        const demo = await h.client('demo');
        const task = await demo.beginTask({ environment: 'dev', intent: 'durable' });
        const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
        assert.ok(issued.credential?.token);
        assert.match(
          h.logs.text(),
          /redis\.durability fsync: Redis 7\.\d+\.\d+ runs appendonly yes with appendfsync always/,
        );
      } finally {
        await h.close();
      }
    });

    it('where CONFIG is not allowed, refuses unless the operator asserts appendfsync always', async () => {
      const redis = await server('always');
      const admin = new Redis(redis.url);
      try {
        await admin.call('ACL', 'SETUSER', 'default', '-config');
        await assert.rejects(startHarness({ redisUrl: redis.url }), /CONFIG GET is refused/);
        const h = await startHarness({ config: redisConfig(redis, { assumeAppendfsyncAlways: true }) });
        await h.close();
      } finally {
        admin.disconnect();
      }
    });
  });

  it('replica: issues once a replica confirmed the lease write', async () => {
    const master = await server('everysec');
    const replica = await server('everysec');
    const [toMaster, toReplica] = [new Redis(master.url), new Redis(replica.url)];
    try {
      await toReplica.call('REPLICAOF', '127.0.0.1', String(master.port));
      await eventually(async () => /slave0:.*state=online/.test(await toMaster.info('replication')), 10_000);
      const h = await startHarness({ config: redisConfig(master, { durability: 'replica', replicas: 1 }) });
      try {
        const demo = await h.client('demo');
        const task = await demo.beginTask({ environment: 'dev', intent: 'replicated' });
        const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
        assert.ok(issued.credential?.token);
        // What WAIT waited for is on the replica.
        const keys = await toReplica.keys(`*lease:${issued.lease_id}`);
        assert.equal(keys.length, 1);
      } finally {
        await h.close();
      }
    } finally {
      toMaster.disconnect();
      toReplica.disconnect();
    }
  });

  it('replica: with no replica to confirm it, a lease write fails closed: UNAVAILABLE, no credential', async () => {
    const redis = await server('everysec');
    const h = await startHarness({
      config: redisConfig(redis, { durability: 'replica', replicas: 1, durabilityTimeoutMs: 50 }),
    });
    try {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'no replica' });
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.UNAVAILABLE);
      assert.equal(err.metadata['x-svid-broker-reason'], 'lease_store_unavailable');
      const audit = await readAudit(h.auditFile);
      assert.equal(ofType(audit, 'credential.issued').length, 0);
      assert.equal(ofType(audit, 'credential.failed').at(-1)?.stage, 'lease_store');
    } finally {
      await h.close();
    }
  });

  it('none: starts on any server, with a warning that says what can be lost', async () => {
    const redis = await server('everysec');
    const h = await startHarness({ config: redisConfig(redis, { durability: 'none' }) });
    try {
      const warning = h.logs.lines.find((line) => line.includes('redis.durability is none'));
      assert.ok(warning, 'a startup warning');
      assert.equal((JSON.parse(warning) as { level: number }).level, 40);
      assert.match(warning, /can lose leases of credentials already handed out/);
    } finally {
      await h.close();
    }
  });
});
