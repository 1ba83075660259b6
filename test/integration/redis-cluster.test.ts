/**
 * Every Redis store on a real 3-master Redis Cluster, through createRedisConnection({cluster}):
 * the lease, approval, break-glass and budget store contracts, the revocation queue's scripts,
 * where a store's keys land (one slot, so one master), a second prefix on another master, a
 * broker wired from config.redis.cluster, and failing fast while one or every master is down,
 * then recovering on the same client without running what was refused.
 */
import { strict as assert } from 'node:assert';
import { Redis } from 'ioredis';
import { RedisApprovalStore } from '../../src/approvals/redis-approval-store.js';
import { RedisBreakGlassStore } from '../../src/approvals/redis-break-glass-store.js';
import type { ApprovalStore, BreakGlassStore } from '../../src/approvals/types.js';
import { RedisBudgetStore } from '../../src/budgets/redis-budget-store.js';
import type { BudgetStore } from '../../src/budgets/types.js';
import { isBrokerError } from '../../src/errors.js';
import { RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import { RedisRevocationQueue } from '../../src/leases/redis-revocation-queue.js';
import type { RevocationJob } from '../../src/leases/revocation-queue.js';
import type { Task } from '../../src/leases/types.js';
import { createRedisConnection, type RedisClient, type RedisNodeAddress } from '../../src/redis/connect.js';
import { freePort } from '../../src/dev/redis-process.js';
import type { MakeHarness as MakeLeaseHarness } from '../support/lease-store-harness.js';
import { makeLease, makeTask, scanKeys } from '../support/lease-store-harness.js';
import { sharedRedisCluster, startRedisCluster, type RunningRedisCluster } from '../support/redis-cluster.js';
import { DEMO_AGENT, eventually as until, startHarness } from '../support/broker-harness.js';
import { randomPrefix } from '../support/redis-server.js';
import {
  makeGrant,
  makeRequest,
  type Harness,
  type StoreOptions,
} from '../unit/approvals/approval-harness.js';
import { describeApprovalStoreContract } from '../unit/approvals/approval-store.contract.test.js';
import { describeBreakGlassStoreContract } from '../unit/approvals/break-glass-store.contract.test.js';
import { describeBudgetStoreContract } from '../unit/budgets/budget-store.contract.test.js';
import { describeLeaseStoreContract } from '../unit/leases/lease-store.contract.test.js';

async function clusterNodes(): Promise<RedisNodeAddress[]> {
  return (await sharedRedisCluster()).nodes;
}

/** Stores on the shared cluster under a fresh prefix, each on its own connection; close() quits them. */
function clusterHarness<S>(
  make: (redis: RedisClient, prefix: string, opts: StoreOptions) => S,
): (opts?: StoreOptions) => Promise<Harness<S>> {
  return async (opts = {}) => {
    const nodes = await clusterNodes();
    const prefix = randomPrefix();
    const clients: RedisClient[] = [];
    const open = async (): Promise<S> => {
      const redis = createRedisConnection({ cluster: nodes });
      clients.push(redis);
      await redis.ping();
      return make(redis, prefix, opts);
    };
    const store = await open();
    return {
      store,
      replica: open,
      close: async () => void (await Promise.all(clients.map((c) => c.quit()))),
    };
  };
}

const clusterLeases: MakeLeaseHarness = async (opts = {}) => {
  const nodes = await clusterNodes();
  const prefix = randomPrefix();
  const stores: RedisLeaseStore[] = [];
  const open = async (): Promise<RedisLeaseStore> => {
    const store = new RedisLeaseStore(createRedisConnection({ cluster: nodes }), { prefix, ...opts });
    stores.push(store);
    await store.ping();
    return store;
  };
  const store = await open();
  return { store, replica: open, close: async () => void (await Promise.all(stores.map((s) => s.close()))) };
};

const clusterApprovals = clusterHarness<ApprovalStore>(
  (redis, prefix, opts) => new RedisApprovalStore(redis, { prefix, ...opts }),
);
const clusterBreakGlass = clusterHarness<BreakGlassStore>(
  (redis, prefix, opts) => new RedisBreakGlassStore(redis, { prefix, ...opts }),
);
const clusterBudgets = clusterHarness<BudgetStore>(
  (redis, prefix) => new RedisBudgetStore(redis, { prefix }),
);

/** A plain client on one node, to look at what it holds behind the cluster client's back. */
async function nodeClient(node: RedisNodeAddress): Promise<Redis> {
  const redis = new Redis({ ...node, lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  return redis;
}

/** `host:port` of the master serving `key`'s slot, from CLUSTER SLOTS as any node sees it. */
async function ownerOf(raw: Redis, key: string): Promise<string> {
  const slot = Number(await raw.call('CLUSTER', 'KEYSLOT', key));
  const ranges = (await raw.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
  const range = ranges.find(([start, end]) => start <= slot && slot <= end);
  assert.ok(range, `no master serves slot ${slot}`);
  return `${range[2][0]}:${range[2][1]}`;
}

/** A fresh prefix whose hash tag lands on a master `predicate` accepts (`host:port`). */
async function prefixServedBy(raw: Redis, predicate: (owner: string) => boolean): Promise<string> {
  for (;;) {
    const prefix = randomPrefix();
    if (predicate(await ownerOf(raw, `{${prefix}}`))) return prefix;
  }
}

function revocationJob(leaseId: string): RevocationJob {
  return {
    leaseId,
    backend: 'vault',
    backendRef: `ref-${leaseId}`,
    expiresAt: Date.now() + 600_000,
    reason: 'task_ended',
    attempts: 1,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `op` while it fails with UNAVAILABLE, for up to 10 s. */
async function eventually(op: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await op();
      return;
    } catch (err) {
      assert.ok(isBrokerError(err) && err.code === 'UNAVAILABLE', String(err));
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

async function rejectsUnavailable(call: Promise<unknown>, reason: string): Promise<number> {
  const started = Date.now();
  await assert.rejects(call, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.reason, reason);
    return true;
  });
  return Date.now() - started;
}

describe('Redis Cluster (3 masters, createRedisConnection({cluster}))', () => {
  // Started beside the shared cluster, so the outage tests below do not wait for it in turn.
  let ownCluster: Promise<RunningRedisCluster>;

  before(async function () {
    this.timeout(60_000);
    ownCluster = startRedisCluster({ masters: 3 });
    ownCluster.catch(() => undefined);
    await sharedRedisCluster();
  });
  after(async () => {
    const running = await ownCluster.catch(() => undefined);
    await running?.stop();
  });

  describeLeaseStoreContract('RedisLeaseStore on Redis Cluster', clusterLeases);
  describeApprovalStoreContract('RedisApprovalStore on Redis Cluster', clusterApprovals);
  describeBreakGlassStoreContract('RedisBreakGlassStore on Redis Cluster', clusterBreakGlass);
  describeBudgetStoreContract('RedisBudgetStore on Redis Cluster', clusterBudgets);

  describe('RedisRevocationQueue on Redis Cluster', () => {
    let client: RedisClient;
    let queue: RedisRevocationQueue;

    beforeEach(async () => {
      client = createRedisConnection({ cluster: await clusterNodes() });
      queue = new RedisRevocationQueue(client, { prefix: randomPrefix(), visibilityTimeoutMs: 1000 });
    });
    afterEach(async () => {
      await client.quit();
    });

    it('enqueues once, claims due jobs, retries, gives back a stale claim and completes', async () => {
      const now = Date.now();
      assert.equal(await queue.enqueue(revocationJob('a'), now), true);
      assert.equal(await queue.enqueue(revocationJob('a'), now), false, 'one job per lease');
      assert.equal(await queue.enqueue(revocationJob('b'), now + 10_000), true);
      assert.equal(await queue.pending(), 2);

      // claim-revocations builds the job keys in Lua from the ids it reads: same slot as the queue.
      const [first] = await queue.claimDue(now, 10);
      assert.equal(first?.leaseId, 'a');
      assert.equal(first.backendRef, 'ref-a');
      assert.equal((await queue.get('a'))?.claim, first.claim);
      assert.equal(await queue.retry('a', now + 50, 2, 'vault_unavailable: down', first.claim), true);
      assert.deepEqual(await queue.claimDue(now + 49, 10), []);

      const [second] = await queue.claimDue(now + 50, 10);
      assert.equal(second?.attempts, 2);
      assert.equal(second.lastError, 'vault_unavailable: down');
      // The worker holding it died: after the visibility timeout another claim takes over.
      const [third] = await queue.claimDue(now + 50 + 1000, 10);
      assert.equal(third?.leaseId, 'a');
      assert.equal(await queue.complete('a', second.claim), false, 'a stale claim cannot finish it');
      assert.equal(await queue.complete('a', third.claim), true);
      assert.equal(await queue.get('a'), undefined);

      const [later] = await queue.claimDue(now + 10_000, 10);
      assert.equal(later?.leaseId, 'b');
      assert.equal(await queue.complete('b', later.claim), true);
      assert.equal(await queue.pending(), 0);
    });

    it("reads, retries and claims a bulk revocation's job, built from the lease in the prefix's slot", async () => {
      const now = Date.now();
      const prefix = randomPrefix();
      const leases = new RedisLeaseStore(client, { prefix });
      const task = makeTask(now);
      await leases.createTask(task);
      const lease = makeLease(task, now);
      assert.equal(await leases.putLease(lease, now), 'ok');
      const run = leases.revokeSelected(
        { leaseId: lease.id },
        { reason: 'incident', at: now, runAt: now, pageSize: 10 },
      );
      for await (const _page of run);
      // get-revocation and retry-revocation take the lease key as KEYS[3]; claim-revocations
      // builds it in Lua: all in the slot of the prefix's hash tag.
      const q = new RedisRevocationQueue(client, { prefix, visibilityTimeoutMs: 1000 });
      assert.equal((await q.get(lease.id))?.reason, 'incident');
      assert.equal(await q.retry(lease.id, now + 50, 1, 'vault_unavailable: down'), true);
      const [claimed] = await q.claimDue(now + 50, 10);
      assert.equal(claimed?.backendRef, lease.backendRef);
      assert.equal(claimed.attempts, 1);
      assert.equal(await q.complete(lease.id, claimed.claim), true);
      assert.equal(await q.pending(), 0);
    });
  });

  describe('key placement', () => {
    let client: RedisClient;
    let raws: Redis[];

    beforeEach(async () => {
      const nodes = await clusterNodes();
      client = createRedisConnection({ cluster: nodes });
      raws = await Promise.all(nodes.map(nodeClient));
    });
    afterEach(async () => {
      await Promise.all([client.quit(), ...raws.map((r) => r.quit())]);
    });

    it("puts every key of a prefix, from every store, in the prefix's one slot on one master", async () => {
      const prefix = randomPrefix();
      const now = Date.now();
      const leases = new RedisLeaseStore(client, { prefix });
      const task = makeTask(now);
      const ending = makeTask(now);
      await leases.createTask(task);
      await leases.createTask(ending);
      const lease = makeLease(task, now);
      const expired = makeLease(task, now, { expiresAt: now + 1 });
      assert.equal(await leases.putLease(lease, now), 'ok');
      assert.equal(await leases.putLease(expired, now), 'ok');
      await leases.markLeaseEnded(lease.id, 'revoking', 'incident', now);
      assert.equal((await leases.claimExpiredLeases(now + 1, 10)).length, 1);
      await leases.endTask(ending.id, 'ended', 'done', now);
      await new RedisRevocationQueue(client, { prefix }).enqueue(revocationJob(lease.id), now);
      await new RedisApprovalStore(client, { prefix }).create(makeRequest(now));
      await new RedisBreakGlassStore(client, { prefix }).grant(makeGrant(now));
      const budgets = new RedisBudgetStore(client, { prefix });
      const scopes = [{ scope: `agent:${task.agent}`, limits: { credentialsPerMinute: 5, activeLeases: 5 } }];
      assert.deepEqual(await budgets.reserveCredential(scopes, lease.id, lease.expiresAt, now), { ok: true });

      const perNode = await Promise.all(raws.map((raw) => scanKeys(raw, `*${prefix}*`)));
      const holders = perNode.filter((keys) => keys.length > 0);
      assert.equal(holders.length, 1, `keys spread over ${holders.length} masters`);
      const keys = holders[0] ?? [];
      const kinds = new Set(keys.map((k) => k.slice(prefix.length + 3).split(':')[0]));
      for (const kind of ['task', 'lease', 'active-tasks', 'revoked', 'idx', 'revoke']) {
        assert.ok(kinds.has(kind), `no ${kind} key among ${[...kinds].join(', ')}`);
      }
      for (const kind of ['approval', 'approvals', 'breakglass', 'budget']) {
        assert.ok(kinds.has(kind), `no ${kind} key among ${[...kinds].join(', ')}`);
      }
      const raw = raws[0] as Redis;
      const slot = Number(await raw.call('CLUSTER', 'KEYSLOT', `{${prefix}}`));
      for (const key of keys) {
        assert.ok(key.startsWith(`{${prefix}}:`), `key ${key} outside the hash tag`);
        assert.equal(Number(await raw.call('CLUSTER', 'KEYSLOT', key)), slot, `key ${key} in another slot`);
      }
      const holder = raws[perNode.indexOf(keys)] as Redis;
      assert.equal(await ownerOf(raw, `{${prefix}}`), `${holder.options.host}:${holder.options.port}`);
      // ping() reads on the master of the store's slot.
      await leases.ping();
    });

    it('serves a second prefix that hashes to another master from the same connection', async () => {
      const raw = raws[0] as Redis;
      const first = randomPrefix();
      const firstOwner = await ownerOf(raw, `{${first}}`);
      const second = await prefixServedBy(raw, (owner) => owner !== firstOwner);
      const secondOwner = await ownerOf(raw, `{${second}}`);
      const a = new RedisLeaseStore(client, { prefix: first });
      const b = new RedisLeaseStore(client, { prefix: second });
      const queueB = new RedisRevocationQueue(client, { prefix: second });
      const now = Date.now();
      const taskA = makeTask(now);
      const taskB = makeTask(now);
      await Promise.all([a.createTask(taskA), b.createTask(taskB)]);
      const leaseA = makeLease(taskA, now);
      const leaseB = makeLease(taskB, now);
      assert.deepEqual(await Promise.all([a.putLease(leaseA, now), b.putLease(leaseB, now)]), ['ok', 'ok']);
      assert.deepEqual(
        (await a.listLeases({ taskId: taskA.id })).map((l) => l.id),
        [leaseA.id],
      );
      assert.deepEqual(
        (await b.listLeases({ taskId: taskB.id })).map((l) => l.id),
        [leaseB.id],
      );
      assert.equal(await b.getLease(leaseA.id), undefined, 'prefixes do not see each other');
      await queueB.enqueue(revocationJob(leaseB.id), now);
      assert.equal((await queueB.claimDue(now, 10))[0]?.leaseId, leaseB.id);

      const nodes = raws.map((r) => `${r.options.host}:${r.options.port}`);
      const keysA = await scanKeys(raws[nodes.indexOf(firstOwner)] as Redis, `{${first}}:*`);
      const keysB = await scanKeys(raws[nodes.indexOf(secondOwner)] as Redis, `{${second}}:*`);
      assert.ok(keysA.length > 0 && keysB.length > 0, 'each prefix lives on its own master');
      assert.deepEqual(await scanKeys(raws[nodes.indexOf(firstOwner)] as Redis, `{${second}}:*`), []);
    });
  });

  it('runs a broker wired from config.redis.cluster: begin, issue, end, all on one master', async () => {
    const nodes = await clusterNodes();
    const prefix = randomPrefix();
    const h = await startHarness({ config: { redis: { cluster: nodes, prefix, store: 'redis' } } });
    const raws = await Promise.all(nodes.map(nodeClient));
    try {
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'cluster' });
      const issued = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.equal(issued.credential?.kind, 'jwt');
      const ended = await demo.endTask({ task_id: task.task_id, reason: 'done' });
      assert.deepEqual(ended.revoked, [{ lease_id: issued.lease_id, role: 'token/demo', state: 'revoked' }]);
      assert.equal((await h.broker.store.getLease(issued.lease_id))?.state, 'revoked');
      const holders = (await Promise.all(raws.map((raw) => scanKeys(raw, `{${prefix}}:*`)))).filter(
        (keys) => keys.length > 0,
      );
      assert.equal(holders.length, 1, 'the broker keeps its keys on one master');
      assert.ok(holders[0]?.includes(`{${prefix}}:lease:${issued.lease_id}`));
    } finally {
      await Promise.all([h.close(), ...raws.map((r) => r.quit())]);
    }
  });

  it('runs the incident paths on the cluster: quarantine across two replicas, bulk revoke, in-flight refusal', async () => {
    const nodes = await clusterNodes();
    const prefix = randomPrefix();
    const h = await startHarness({ config: { redis: { cluster: nodes, prefix, store: 'redis' } } });
    try {
      const b = await h.replica();
      const demo = await h.client('demo');
      const task = await demo.beginTask({ environment: 'dev', intent: 'cluster incident' });
      const leases: string[] = [];
      for (let i = 0; i < 3; i++) {
        leases.push((await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' })).lease_id);
      }
      // Quarantine with revoke on replica B; replica A refuses the agent, the ledger shows revoked.
      const adminOnB = await b.adminClient('security');
      const res = await adminOnB.quarantine({
        agent: DEMO_AGENT,
        reason: 'cluster drill',
        revoke_active: true,
      });
      assert.equal(res.revocation?.revoked, 3);
      for (const id of leases) assert.equal((await h.broker.store.getLease(id))?.state, 'revoked');
      await until(async () => {
        const err = await demo.beginTask({ environment: 'dev', intent: 'x' }).then(
          () => undefined,
          (e: { details?: string }) => e,
        );
        return err !== undefined && /quarantined/.test(err.details ?? '');
      }, 2000);
      // The lease write refuses a quarantined agent on the cluster too.
      const now = Date.now();
      const t = makeTask(now, { agent: DEMO_AGENT });
      await h.broker.store.createTask(t);
      assert.equal(await h.broker.store.putLease(makeLease(t, now), now), 'agent_quarantined');
      await adminOnB.releaseQuarantine({ agent: DEMO_AGENT, reason: 'done' });
      await until(() => demo.beginTask({ environment: 'dev', intent: 'back' }), 2000);
    } finally {
      await h.close();
    }
  });

  describe('failing fast', () => {
    it('rejects at once at startup when no cluster node answers', async () => {
      const errors: Error[] = [];
      const client = createRedisConnection(
        { cluster: [{ host: '127.0.0.1', port: await freePort() }] },
        { onError: (err) => errors.push(err) },
      );
      const store = new RedisLeaseStore(client);
      const tookMs = await rejectsUnavailable(store.ping(), 'lease_store_unavailable');
      assert.ok(tookMs < 2000, `took ${tookMs} ms`);
      assert.ok(errors.length > 0, 'the connection problem is reported');
      await store.close();
    });

    it('rejects at once while masters are down, keeps serving the rest, replays nothing and recovers', async () => {
      const cluster = await ownCluster;
      const client = createRedisConnection({ cluster: cluster.nodes }, { commandTimeoutMs: 1000 });
      const raw = await nodeClient(cluster.nodes[1] as RedisNodeAddress);
      const [victim, ...rest] = cluster.processes;
      assert.ok(victim);
      const victimAddress = `127.0.0.1:${victim.port}`;
      const downPrefix = await prefixServedBy(raw, (owner) => owner === victimAddress);
      const upPrefix = await prefixServedBy(raw, (owner) => owner !== victimAddress);
      await raw.quit();
      const down = new RedisLeaseStore(client, { prefix: downPrefix });
      const up = new RedisLeaseStore(client, { prefix: upPrefix });
      const fast = async (store: RedisLeaseStore, task: Task): Promise<void> => {
        const tookMs = await rejectsUnavailable(store.createTask(task), 'lease_store_unavailable');
        assert.ok(tookMs < 500, `took ${tookMs} ms`);
      };
      try {
        const now = Date.now();
        const kept = makeTask(now);
        await down.createTask(kept);
        await up.ping();

        // One master down: its slots fail at once (its node connection is gone), the rest serve.
        victim.kill();
        const refused = [makeTask(now), makeTask(now), makeTask(now)];
        for (const task of refused) await fast(down, task);
        await rejectsUnavailable(down.ping(), 'lease_store_unavailable');
        const served = makeTask(now);
        await up.createTask(served);
        assert.equal((await up.getTask(served.id))?.id, served.id);

        // Every master down: still refused at once, again and again, never queued for later.
        for (const node of rest) node.kill();
        const refusedToo = [makeTask(now), makeTask(now), makeTask(now)];
        for (const task of refusedToo) {
          await fast(up, task);
          await fast(down, task);
          await sleep(100);
        }

        // Back on their ports with their data: the same client reconnects (each master refuses
        // writes for about two seconds after starting, rejected at once meanwhile).
        await Promise.all(cluster.processes.map((node) => node.restart()));
        await eventually(() => up.createTask(makeTask(Date.now())));
        await eventually(() => down.createTask(makeTask(Date.now())));
        assert.equal((await down.getTask(kept.id))?.id, kept.id, 'data written before the outage');
        assert.equal((await up.getTask(served.id))?.id, served.id);
        for (const task of [...refused, ...refusedToo]) {
          assert.equal(await down.getTask(task.id), undefined, 'a refused write never runs later');
          assert.equal(await up.getTask(task.id), undefined, 'a refused write never runs later');
        }
      } finally {
        await down.close();
      }
    });
  });
});
