/**
 * The broker on Redis as the deploy examples run it: TLS only (`rediss://` with a CA file), the
 * default user off, the broker logged in as the ACL user of deploy/redis/users.acl.in with its
 * password read from a file. A whole broker runs its use cases as that user and Redis logs no ACL
 * refusal, so the ACL in the README names every command the broker needs.
 */
import { strict as assert } from 'node:assert';
import { loadConfig } from '../../src/config/load-config.js';
import { createRedisConnection, type RedisClient } from '../../src/redis/connect.js';
import { DEMO_AGENT, startHarness, type Harness } from '../support/broker-harness.js';
import { startTlsRedis, type TlsRedis } from '../support/redis-tls-server.js';

describe('integration: Redis over TLS with the shipped ACL user', () => {
  let redis: TlsRedis;
  const clients: RedisClient[] = [];
  before(async () => {
    redis = await startTlsRedis();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });
  after(async () => redis?.stop());

  const connect = (cfg: Parameters<typeof createRedisConnection>[0]): RedisClient => {
    const client = createRedisConnection(cfg, { commandTimeoutMs: 1500 });
    clients.push(client);
    return client;
  };

  it('connects with rediss://, the CA file, the ACL user and the password file', async () => {
    const client = connect({
      url: redis.url,
      username: redis.username,
      passwordFile: redis.passwordFile,
      caFile: redis.caFile,
    });
    assert.equal(await client.ping(), 'PONG');
    // Least privilege: keys outside the hash tag and commands outside the list are refused.
    await assert.rejects(client.set('other:key', 'x'), /NOPERM/);
    await assert.rejects(client.call('KEYS', '*'), /NOPERM/);
    await assert.rejects(client.call('FLUSHALL'), /NOPERM/);
  });

  it('refuses a server certificate the CA file does not vouch for', async () => {
    const errors: Error[] = [];
    const client = createRedisConnection(
      { url: redis.url, username: redis.username, passwordFile: redis.passwordFile },
      { onError: (e) => errors.push(e) },
    );
    clients.push(client);
    await assert.rejects(client.ping());
    assert.match(errors.map((e) => e.message).join(' '), /unable to get|self.signed|certificate/i);
  });

  it('a wrong password fails without the password in the error', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const file = join(mkdtempSync(join(tmpdir(), 'svb-pw-')), 'pw');
    writeFileSync(file, 'not-the-password-4711\n');
    const errors: Error[] = [];
    const client = createRedisConnection(
      { url: redis.url, username: redis.username, passwordFile: file, caFile: redis.caFile },
      { onError: (e) => errors.push(e) },
    );
    clients.push(client);
    const err = await client.ping().then(
      () => assert.fail('authenticated with a wrong password'),
      (e: Error) => e,
    );
    assert.match(err.message + errors.map((e) => e.message).join(' '), /WRONGPASS|invalid username-password/);
    for (const e of [err, ...errors]) assert.doesNotMatch(e.message, /not-the-password-4711/);
  });

  it('the default user is off', async () => {
    const client = connect({ url: redis.url, caFile: redis.caFile });
    await assert.rejects(client.ping(), /NOAUTH|WRONGPASS|NOPERM|Authentication required/);
  });

  it('REDIS_USERNAME, REDIS_PASSWORD_FILE and REDIS_CA_FILE configure the same login', () => {
    const config = loadConfig({
      env: {
        REDIS_URL: redis.url,
        REDIS_USERNAME: redis.username,
        REDIS_PASSWORD_FILE: redis.passwordFile,
        REDIS_CA_FILE: redis.caFile,
      },
    });
    assert.equal(config.redis.username, redis.username);
    assert.equal(config.redis.passwordFile, redis.passwordFile);
    assert.equal(config.redis.caFile, redis.caFile);
    // The password itself never enters the configuration.
    assert.doesNotMatch(JSON.stringify(config), new RegExp(redis.password));
  });

  describe('a whole broker as the ACL user', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: {
          redis: {
            url: redis.url,
            prefix: 'svb',
            username: redis.username,
            passwordFile: redis.passwordFile,
            caFile: redis.caFile,
          },
        },
      });
    });
    after(async () => h?.close());

    it('issues, ends, quarantines and releases with no ACL refusal', async () => {
      const admin = redis.admin();
      await admin.connect();
      try {
        await admin.call('ACL', 'LOG', 'RESET');
        const demo = await h.client('demo');
        const task = await demo.beginTask({ environment: 'dev', intent: 'acl' });
        const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
        assert.equal(issued.credential?.kind, 'jwt');
        const revoked = await h.httpJson('/v1/revoked');
        assert.equal(revoked.status, 200);
        const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
        assert.equal(ended.revoked.length, 1);

        const security = await h.adminClient('security');
        await security.quarantine({
          agent: DEMO_AGENT,
          reason: 'acl test',
          ttl_seconds: 0,
          revoke_active: true,
        });
        await security.listQuarantines();
        await security.releaseQuarantine({ agent: DEMO_AGENT, reason: 'acl test done' });
        assert.equal((await h.httpJson('/readyz')).status, 200);

        const log = (await admin.call('ACL', 'LOG')) as unknown[];
        assert.deepEqual(log, [], `ACL refusals: ${JSON.stringify(log)}`);
      } finally {
        admin.disconnect();
      }
    });
  });
});
