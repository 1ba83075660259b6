/**
 * What replicas share through Redis cannot be rolled back or replaced: a replica started with an
 * older policy directory adopts the newer shared set instead of publishing its own, and entries
 * written into Redis by anyone but an allowed broker (a forged JWKS key, an unsigned policy set,
 * one sealed by an agent's SVID) are ignored, audited and counted.
 */
import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import type { JSONWebKeySet } from 'jose';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { SvidSeal } from '../../src/identity/svid-seal.js';
import { createRedisClient } from '../../src/redis/connect.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  OTHER_AGENT,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { sharedRedis } from '../support/redis-server.js';
import { plantedKey } from '../support/seal-fixture.js';

const FREEZE_DEV =
  '@id("freeze-dev")\n@reason("change freeze")\nforbid (principal, action == Action::"BeginTask", resource == Environment::"dev");\n';
const PERMIT_ALL = '@id("attacker-permits-all")\npermit (principal, action, resource);\n';

describe('integration: shared state cannot be rolled back or forged', function () {
  this.timeout(30_000);
  let h: Harness;
  let redis: Redis;

  before(async () => {
    h = await startHarness();
    redis = createRedisClient((await sharedRedis()).url);
  });
  after(async () => {
    redis?.disconnect();
    await h?.close();
  });

  const refusals = async (file: string, kind: string): Promise<Array<Record<string, unknown>>> =>
    (await readAudit(file)).filter((r) => r.type === 'replica.entry_refused' && r.kind === kind);
  const metric = async (kind: string, reason: string): Promise<number> => {
    const text = (await h.httpJson('/metrics')).body as string;
    const line = text
      .split('\n')
      .find((l) =>
        l.startsWith(`svid_broker_replica_entries_refused_total{kind="${kind}",reason="${reason}"}`),
      );
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  it('a replica starting with an older policy directory does not roll back the others', async () => {
    writeFileSync(join(h.dir, 'policies', 'zz-freeze.cedar'), FREEZE_DEV);
    const reloaded = h.broker.reloadPolicy();
    assert.ok(reloaded.ok);
    // Published in the background: generation 1 was this replica's startup set, 2 is the reload.
    await eventually(() => h.broker.policyGeneration() === 2, 2000);
    const generation = h.broker.policyGeneration();

    // The replica's directory is the shipped set, without the freeze: older than the shared one.
    const old = await h.replica();
    assert.equal(old.broker.policyDigest(), reloaded.digest);
    assert.equal(old.broker.policyGeneration(), generation);
    // Anything the new replica announced would reach A before this quarantine does (stream order).
    const admin = await old.adminClient('security');
    await admin.quarantine({ agent: OTHER_AGENT, reason: 'feed marker' });
    await eventually(() => h.broker.quarantines.list().some((q) => q.pattern === OTHER_AGENT), 2000);
    await admin.releaseQuarantine({ agent: OTHER_AGENT, reason: 'done' });
    assert.equal(h.broker.policyDigest(), reloaded.digest, 'A kept the newer set');
    assert.equal(h.broker.policyGeneration(), generation);

    const demo = await old.client('demo');
    const frozen = await grpcError(demo.beginTask({ environment: 'dev', intent: 'still frozen' }));
    assert.equal(frozen.code, status.PERMISSION_DENIED);
    const differs = (await readAudit(old.auditFile)).find((r) => r.type === 'policy.directory_differs');
    assert.equal(differs?.digest, reloaded.digest);
    assert.equal(differs?.generation, generation);
    assert.notEqual(differs?.directory_digest, reloaded.digest);
    await old.close();
  });

  it('a JWKS entry written straight into Redis is not served, and a token signed by its key is refused', async () => {
    const { kid, jwk, entry, token } = await plantedKey();
    await redis.hset(`{${h.redisPrefix}}:jwks`, kid, entry);

    const served = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
    assert.ok(!served.keys.some((k) => k.kid === kid), 'the planted key is not served');
    const verify = (jwks: JSONWebKeySet) =>
      verifyAccessToken(token, { jwks, issuer: BROKER_ID, audience: 'demo-api' });
    assert.equal((await verify({ keys: [...served.keys, jwk] })).kid, kid, 'the token is otherwise valid');
    await assert.rejects(verify(served));

    await h.httpJson('/.well-known/jwks.json'); // a second fetch reports nothing new
    const refused = await eventually(async () => {
      const records = await refusals(h.auditFile, 'jwks');
      return records.length > 0 ? records : undefined;
    });
    assert.equal(refused.length, 1);
    assert.equal(refused[0]?.reason, 'unsigned');
    assert.equal(refused[0]?.key, `{${h.redisPrefix}}:jwks/${kid}`);
    // Counted once the audit record is written (the counter follows the trail).
    await eventually(async () => ((await metric('jwks', 'unsigned')) === 1 ? true : undefined));
  });

  it('a policy set written into Redis unsigned, or sealed by an agent, is not adopted', async () => {
    const digest = h.broker.policyDigest();
    const generation = h.broker.policyGeneration();
    const record = JSON.stringify({
      generation: generation + 100,
      digest: 'f'.repeat(64),
      schema: { name: 'schema.cedarschema', text: '' },
      files: [{ name: 'all.cedar', text: PERMIT_ALL }],
    });
    const announce = (): Promise<string | null> =>
      redis.xadd(`{${h.redisPrefix}}:feed`, '*', 'kind', 'policy', 'generation', String(generation + 100));

    await redis.set(`{${h.redisPrefix}}:policy:record`, record);
    await announce();
    await eventually(async () => ((await refusals(h.auditFile, 'policy')).length === 1 ? true : undefined));

    // Sealed with a real SVID of the trust domain, but the demo agent's, not a broker's.
    const agentSvid = h.identities.demo?.current().svids[0];
    assert.ok(agentSvid);
    const agentSeal = new SvidSeal({
      svid: { getX509Svid: () => agentSvid },
      bundles: { getX509BundleForTrustDomain: () => h.ca.x509Bundle() },
      allowedIds: () => [DEMO_AGENT],
    });
    await redis.set(`{${h.redisPrefix}}:policy:record`, await agentSeal.seal(record));
    await announce();
    const refused = await eventually(async () => {
      const records = await refusals(h.auditFile, 'policy');
      return records.length === 2 ? records : undefined;
    });
    assert.deepEqual(
      refused.map((r) => [r.reason, r.signer]),
      [
        ['unsigned', undefined],
        ['signer_not_allowed', DEMO_AGENT],
      ],
    );
    assert.equal(h.broker.policyDigest(), digest);
    assert.equal(h.broker.policyGeneration(), generation);
    await eventually(async () => ((await metric('policy', 'signer_not_allowed')) === 1 ? true : undefined));
    assert.equal(await metric('policy', 'unsigned'), 1);
    const demo = await h.client('demo');
    const denied = await grpcError(demo.beginTask({ environment: 'dev', intent: 'still frozen' }));
    assert.equal(denied.code, status.PERMISSION_DENIED);
  });

  it("the broker's SVID key, which seals every entry, appears in no log line, audit record or entry", async () => {
    const key = h.identities.broker?.current().svids[0]?.privateKey;
    assert.ok(key);
    const forms = [Buffer.from(key).toString('base64'), Buffer.from(key).toString('base64url')];
    const stored = [
      ...Object.values(await redis.hgetall(`{${h.redisPrefix}}:jwks`)),
      (await redis.get(`{${h.redisPrefix}}:policy:record`)) ?? '',
    ].join('\n');
    const audit = JSON.stringify(await readAudit(h.auditFile));
    for (const form of forms) {
      for (const [where, text] of Object.entries({ logs: h.logs.text(), audit, stored })) {
        assert.ok(!text.includes(form.slice(40, 100)), `the key is in the ${where}`);
      }
    }
  });
});
