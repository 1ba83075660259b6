import 'reflect-metadata';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { SharedJwks } from '../../../src/credentials/token/shared-jwks.js';
import { SigningKeyRing } from '../../../src/credentials/token/signing-keys.js';
import { verifyAccessToken } from '../../../src/credentials/token/verify-access-token.js';
import type { EntrySeal, RefusedEntry } from '../../../src/identity/svid-seal.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';
import {
  AGENT_ID,
  BROKER_ID,
  plantedKey,
  sealFixture,
  type SealFixture,
} from '../../support/seal-fixture.js';

const REFRESH_MS = 60_000;

describe('SharedJwks: signed entries', () => {
  let redis: Redis;
  let f: SealFixture;
  let prefix: string;
  let refused: RefusedEntry[];

  /** A replica's shared JWKS; `ownKid` is the kid its ring signs with. */
  const replica = async (seal: EntrySeal): Promise<SharedJwks & { ownKid: string }> => {
    const ring = await SigningKeyRing.create({ overlapSeconds: 600, now: () => f.clock });
    const jwks = new SharedJwks(redis, ring, {
      prefix,
      refreshMs: REFRESH_MS,
      seal,
      onRefused: (entry) => refused.push(entry),
      logger: pino({ level: 'silent' }),
      now: () => f.clock,
    });
    return Object.assign(jwks, { ownKid: ring.current().kid });
  };
  const kids = async (jwks: SharedJwks): Promise<string[]> =>
    (await jwks.jwks()).keys.map((k) => k.kid).sort();

  before(async () => {
    redis = createRedisClient((await sharedRedis()).url);
    f = await sealFixture();
  });
  after(() => redis.disconnect());
  beforeEach(() => {
    prefix = randomPrefix();
    refused = [];
    f.clock = Date.now();
    f.allowedIds = [BROKER_ID];
  });

  it("serves every replica's sealed keys from every replica", async () => {
    const a = await replica(await f.sealFor());
    const b = await replica(await f.sealFor());
    await a.publish();
    await b.publish();
    assert.deepEqual(await kids(a), await kids(b));
    assert.equal((await kids(a)).length, 2);
    assert.deepEqual(refused, []);
  });

  it('does not serve a key written straight into Redis, refuses tokens it signed, and reports it once', async () => {
    const a = await replica(await f.sealFor());
    await a.publish();
    const forged = await plantedKey();
    const kid = forged.kid;
    await redis.hset(`{${prefix}}:jwks`, kid, forged.entry);

    const served = await a.jwks();
    assert.ok(!served.keys.some((k) => k.kid === kid));
    const verify = (jwks: { keys: object[] }) =>
      verifyAccessToken(forged.token, { jwks: jwks as never, issuer: BROKER_ID, audience: 'demo-api' });
    // The token itself is well formed: a JWKS holding the planted key would accept it.
    assert.equal((await verify({ keys: [...served.keys, forged.jwk] })).kid, kid);
    await assert.rejects(verify(served));

    await a.jwks();
    await a.publish();
    assert.deepEqual(
      refused.map((r) => [r.kind, r.reason, r.key]),
      [['jwks', 'unsigned', `{${prefix}}:jwks/${kid}`]],
    );
  });

  it('refuses an entry sealed by an SVID outside replicas.allowedIds, or moved under another kid', async () => {
    const a = await replica(await f.sealFor());
    const agent = await replica(await f.sealFor(AGENT_ID));
    await agent.publish();
    await a.publish();
    assert.equal((await kids(a)).length, 1);
    assert.deepEqual(
      refused.map((r) => [r.reason, r.signer]),
      [['signer_not_allowed', AGENT_ID]],
    );

    const b = await replica(await f.sealFor());
    await b.publish();
    const entryOfB = await redis.hget(`{${prefix}}:jwks`, b.ownKid);
    assert.ok(entryOfB);
    await redis.hset(`{${prefix}}:jwks`, 'moved-kid', entryOfB);
    await a.jwks();
    assert.ok(refused.some((r) => r.key.endsWith('/moved-kid') && r.reason === 'malformed'));
  });

  it("keeps serving a dead replica's key after its SVID expired: a live replica re-sealed it in time", async () => {
    const a = await replica(await f.sealFor(BROKER_ID, 3600));
    const dead = await replica(await f.sealFor(BROKER_ID, 90)); // expires before its key's `until`
    await dead.publish();
    await a.publish(); // re-seals the entry whose signature lapses within two refresh periods
    f.clock += 120_000; // the dead replica's SVID has expired
    const served = await kids(a);
    assert.deepEqual(served, [a.ownKid, dead.ownKid].sort());
    assert.deepEqual(refused, []);
  });

  it("drops a dead replica's key once its SVID expired when no live replica re-sealed it", async () => {
    const a = await replica(await f.sealFor(BROKER_ID, 3600));
    const dead = await replica(await f.sealFor(BROKER_ID, 90));
    await dead.publish();
    f.clock += 120_000;
    assert.equal((await kids(a)).length, 1);
    assert.deepEqual(
      refused.map((r) => r.reason),
      ['untrusted_signer'],
    );
  });
});
