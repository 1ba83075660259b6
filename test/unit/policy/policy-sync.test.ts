import 'reflect-metadata';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { EntrySeal, RefusedEntry } from '../../../src/identity/svid-seal.js';
import type { PolicyProblem } from '../../../src/policy/policy-load-error.js';
import { PolicyManager } from '../../../src/policy/policy-manager.js';
import { PolicySync } from '../../../src/policy/policy-sync.js';
import { createRedisClient } from '../../../src/redis/connect.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';
import { AGENT_ID, sealFixture, type SealFixture } from '../../support/seal-fixture.js';
import {
  ALLOW_DEV,
  ALLOW_PROD,
  DEMO_AGENT,
  beginTaskRequest,
  removePolicyDirs,
  selfContainedPolicyDir,
} from './policy-fixtures.js';

const ALLOW_ALL = '@id("all") permit (principal, action, resource);\n';

/** One replica: its directory, policy manager, sync, and what the sync reported. */
interface Replica {
  dir: string;
  manager: PolicyManager;
  sync: PolicySync;
  synced: Array<{ digest: string; generation: number }>;
  failed: Array<{ digest: string; problems: PolicyProblem[] }>;
  refused: RefusedEntry[];
  differs: Array<{ directory: string; digest: string; generation: number }>;
  /** Applies the record the feed announced (what the feed reader does with a `kind=policy` entry). */
  announced(generation?: number): Promise<void>;
}

describe('PolicySync: generations and sealed policy sets', () => {
  let redis: Redis;
  let f: SealFixture;
  let prefix: string;
  const managers: PolicyManager[] = [];

  const replica = async (policies: string, seal?: EntrySeal, pinDigest?: string): Promise<Replica> => {
    const dir = selfContainedPolicyDir(policies);
    const manager = PolicyManager.load({ policyDir: dir, ...(pinDigest ? { pinDigest } : {}) });
    managers.push(manager);
    const r: Omit<Replica, 'sync' | 'announced'> = {
      dir,
      manager,
      synced: [],
      failed: [],
      refused: [],
      differs: [],
    };
    const sync = new PolicySync({
      redis,
      prefix,
      feedMaxLen: 1000,
      manager,
      seal: seal ?? (await f.sealFor()),
      replica: 'test',
      logger: pino({ level: 'silent' }),
      now: () => f.clock,
      onSynced: (digest, _previous, _from, generation) => r.synced.push({ digest, generation }),
      onSyncFailed: (digest, problems) => r.failed.push({ digest, problems }),
      onRefused: (entry) => r.refused.push(entry),
      onDirectoryDiffers: (directory, stored) => r.differs.push({ directory, ...stored }),
    });
    return {
      ...r,
      sync,
      announced: (generation = 1_000_000) =>
        sync.onEntry({ id: '1-0', kind: 'policy', fields: { generation: String(generation), from: 'x' } }),
    };
  };
  const allows = (r: Replica, env: string): boolean =>
    r.manager.current.authorize(beginTaskRequest(DEMO_AGENT, env)).decision === 'allow';
  const recordKey = (): string => `{${prefix}}:policy:record`;
  /** Generation, digest and signer of the record in Redis, as a replica that opens it sees them. */
  const stored = async (): Promise<{ generation: number; digest: string; expiresAt: number }> => {
    const opened = await (await f.sealFor()).open((await redis.get(recordKey())) ?? '');
    const record = JSON.parse(opened.payload) as { generation: number; digest: string };
    return { generation: record.generation, digest: record.digest, expiresAt: opened.expiresAt };
  };
  /** A record as a publisher writes it, sealed by `seal`. */
  const sealedRecord = async (
    seal: EntrySeal,
    generation: number,
    digest: string,
    sources: PolicyManager['current']['sources'],
  ): Promise<string> =>
    seal.seal(JSON.stringify({ generation, digest, schema: sources.schema, files: sources.files }));

  before(async () => {
    redis = createRedisClient((await sharedRedis()).url);
    f = await sealFixture();
  });
  after(() => {
    redis.disconnect();
    removePolicyDirs();
  });
  beforeEach(() => {
    prefix = randomPrefix();
    f.clock = Date.now();
  });
  afterEach(() => {
    for (const m of managers.splice(0)) m.close();
  });

  it('a replica starting with an older directory adopts the newer shared set and does not roll back the others', async () => {
    const a = await replica(ALLOW_DEV);
    await a.sync.initialize();
    assert.equal(a.sync.generation, 1);
    writeFileSync(path.join(a.dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD);
    assert.equal(a.manager.reload().changed, true);
    await a.sync.publish(a.manager.current.digest);
    assert.equal(a.sync.generation, 2);

    const old = await replica(ALLOW_DEV); // the directory A had before its change
    await old.sync.initialize();
    assert.equal(old.sync.generation, 2);
    assert.equal(allows(old, 'prod'), true, 'the old replica serves the shared set');
    assert.deepEqual(old.differs, [
      { directory: old.manager.directoryDigest, digest: a.manager.current.digest, generation: 2 },
    ]);
    // Nothing was published: A (and Redis) still hold generation 2, and a SIGHUP changes nothing.
    assert.equal(old.manager.reload().changed, false);
    await a.announced();
    assert.equal(allows(a, 'prod'), true);
    assert.deepEqual(await stored().then((r) => [r.generation, r.digest]), [2, a.manager.current.digest]);
  });

  it('two replicas publishing at once get distinct generations, and both end on the higher one', async () => {
    const a = await replica(ALLOW_DEV);
    const b = await replica(ALLOW_DEV);
    await a.sync.initialize();
    await b.sync.initialize();
    writeFileSync(path.join(a.dir, 'main.cedar'), ALLOW_PROD);
    writeFileSync(path.join(b.dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD);
    a.manager.reload();
    b.manager.reload();
    await Promise.all([a.sync.publish(a.manager.current.digest), b.sync.publish(b.manager.current.digest)]);
    assert.deepEqual([a.sync.generation, b.sync.generation].sort(), [2, 3]);
    await a.announced();
    await b.announced();
    assert.equal(a.manager.current.digest, b.manager.current.digest);
    assert.deepEqual(await stored().then((r) => [r.generation, r.digest]), [3, a.manager.current.digest]);
  });

  it('a reload superseded by a newer shared set before it was published publishes nothing', async () => {
    const a = await replica(ALLOW_DEV);
    const b = await replica(ALLOW_DEV);
    await a.sync.initialize();
    await b.sync.initialize();
    writeFileSync(path.join(a.dir, 'main.cedar'), ALLOW_PROD);
    a.manager.reload();
    const reloadedOnA = a.manager.current.digest;
    writeFileSync(path.join(b.dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD);
    b.manager.reload();
    await b.sync.publish(b.manager.current.digest);
    await a.announced(); // B's generation 2 reaches A before A's publish runs
    await a.sync.publish(reloadedOnA);
    assert.equal(a.manager.current.digest, b.manager.current.digest);
    assert.deepEqual(await stored().then((r) => [r.generation, r.digest]), [2, b.manager.current.digest]);
  });

  it('does not adopt an unsigned set, or one sealed by an ID not in replicas.allowedIds, and reports each once', async () => {
    const a = await replica(ALLOW_DEV);
    await a.sync.initialize();
    const open = await replica(ALLOW_ALL);
    const { digest, sources } = open.manager.current;
    await redis.set(
      recordKey(),
      JSON.stringify({ generation: 99, digest, schema: sources.schema, files: sources.files }),
    );
    await a.announced();
    await a.announced();
    await a.sync.onResync();
    assert.equal(allows(a, 'prod'), false);
    assert.equal(a.sync.generation, 1);

    await redis.set(recordKey(), await sealedRecord(await f.sealFor(AGENT_ID), 99, digest, sources));
    await a.announced();
    assert.equal(allows(a, 'prod'), false);
    assert.deepEqual(
      a.refused.map((r) => [r.kind, r.reason, r.signer]),
      [
        ['policy', 'unsigned', undefined],
        ['policy', 'signer_not_allowed', AGENT_ID],
      ],
    );
    // The replica that holds the real set writes it back.
    await a.sync.refresh();
    assert.deepEqual(await stored().then((r) => [r.generation, r.digest]), [1, a.manager.current.digest]);
  });

  it('refuses a sealed set whose texts do not hash to its announced digest', async () => {
    const a = await replica(ALLOW_DEV);
    await a.sync.initialize();
    const prod = await replica(ALLOW_PROD);
    const all = await replica(ALLOW_ALL);
    await redis.set(
      recordKey(),
      await sealedRecord(await f.sealFor(), 2, prod.manager.current.digest, all.manager.current.sources),
    );
    await a.announced();
    assert.equal(allows(a, 'prod'), false);
    assert.equal(a.sync.generation, 1);
    assert.equal(a.failed.length, 1);
    assert.match(a.failed[0]?.problems[0]?.message ?? '', /not to the announced digest/);
  });

  it('a pinned replica refuses a newer set with another digest', async () => {
    const dev = await replica(ALLOW_DEV);
    const pinned = await replica(ALLOW_DEV, undefined, dev.manager.current.digest);
    await pinned.sync.initialize();
    const other = await replica(ALLOW_PROD);
    await redis.set(
      recordKey(),
      await sealedRecord(await f.sealFor(), 5, other.manager.current.digest, other.manager.current.sources),
    );
    await pinned.announced();
    assert.equal(pinned.manager.current.digest, dev.manager.current.digest);
    assert.match(pinned.failed[0]?.problems[0]?.message ?? '', /is not policy.pinDigest/);
  });

  it('refuses a replayed older record, and the replica holding the newer one writes it back', async () => {
    const a = await replica(ALLOW_DEV);
    await a.sync.initialize();
    const first = (await redis.get(recordKey())) ?? '';
    writeFileSync(path.join(a.dir, 'main.cedar'), ALLOW_DEV + ALLOW_PROD);
    a.manager.reload();
    await a.sync.publish(a.manager.current.digest);
    const second = await redis.get(recordKey());
    await a.sync.refresh(); // sound, current, not about to expire: left alone
    assert.equal(await redis.get(recordKey()), second);
    await redis.set(recordKey(), first); // an attacker replays generation 1
    await a.sync.onResync();
    assert.equal(allows(a, 'prod'), true);
    assert.deepEqual(
      a.refused.map((r) => r.reason),
      ['stale_generation'],
    );
    await a.sync.refresh();
    assert.equal((await stored()).generation, 2);
  });

  it('re-seals the stored record before the SVID that sealed it expires', async () => {
    const a = await replica(ALLOW_DEV, await f.sealFor(undefined, 90));
    await a.sync.initialize();
    const b = await replica(ALLOW_DEV, await f.sealFor(undefined, 3600));
    await b.sync.initialize();
    const before = await stored();
    await b.sync.refresh();
    const after = await stored();
    assert.equal(after.generation, before.generation);
    assert.ok(after.expiresAt > before.expiresAt + 3000_000, 'now sealed by the longer-lived SVID');
    f.clock += 120_000; // A's SVID has expired; the record still opens
    assert.equal((await stored()).generation, 1);
  });

  it('a replica starting after the sealing SVID expired (every replica down) publishes its set, and the next adopts it', async () => {
    const a = await replica(ALLOW_DEV, await f.sealFor(undefined, 90));
    await a.sync.initialize();
    a.sync.stop();
    f.clock += 120_000; // every replica was down past A's SVID: the record no longer opens
    const b = await replica(ALLOW_PROD);
    await b.sync.initialize();
    assert.deepEqual(
      b.refused.map((r) => r.reason),
      ['untrusted_signer'],
    );
    assert.deepEqual(await stored().then((r) => [r.generation, r.digest]), [1, b.manager.current.digest]);
    const c = await replica(ALLOW_DEV);
    await c.sync.initialize();
    assert.equal(allows(c, 'prod'), true);
    assert.equal(c.sync.generation, 1);
  });
});
