/**
 * The selection half of the LeaseStore contract (scanLeases, revokeSelected, completeRevocations,
 * activeLeaseCounts) and put-lease's quarantine check, run against both stores wired as main.ts
 * wires them: the Redis store next to a RedisRevocationQueue and a RedisQuarantineStore under the
 * same prefix (a real redis-server, fresh prefix per test), the in-process store with a
 * MemoryRevocationQueue (`revocations`) and MemoryQuarantineStore.matchSync (`quarantined`).
 * A property test then holds the Lua selection (select-leases-4.lua) to leaseMatches.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { isBrokerError } from '../../../src/errors.js';
import { leaseMatches } from '../../../src/leases/lease-records.js';
import { MemoryLeaseStore } from '../../../src/leases/memory-lease-store.js';
import { MemoryRevocationQueue } from '../../../src/leases/memory-revocation-queue.js';
import { createRedisClient, RedisLeaseStore } from '../../../src/leases/redis-lease-store.js';
import type {
  Lease,
  LeaseEndState,
  LeaseSelector,
  LeaseState,
  LeaseStore,
  RevocationPage,
  Task,
} from '../../../src/leases/types.js';
import type { Quarantine } from '../../../src/quarantine/types.js';
import { makeLease, makeTask, wallNow } from '../../support/lease-store-harness.js';
import {
  memorySelection,
  redisSelection,
  type MakeSelectionHarness,
  type SelectionHarness,
} from '../../support/selection-harness.js';
import { randomPrefix, sharedRedis } from '../../support/redis-server.js';

const TD = 'example.org';
const A = `spiffe://${TD}/agents/a`;
const A_SUB = `spiffe://${TD}/agents/a/sub`;
const A_DEEP = `spiffe://${TD}/agents/a/sub/deep`;
const B = `spiffe://${TD}/agents/b`;
/** Shares the text `spiffe://example.org/agents` with the others, but not the `/` after it. */
const AGENTSX = `spiffe://${TD}/agentsx`;
const OTHER_TD = 'spiffe://other.org/agents/a';
/** A trust domain that starts with `example.org`: must not count as example.org. */
const LOOKALIKE_TD = 'spiffe://example.org.evil/agents/a';
const AGENTS = [A, A_SUB, A_DEEP, B, AGENTSX, OTHER_TD, LOOKALIKE_TD];

const ids = (records: readonly { id: string }[]): string[] => records.map((r) => r.id);
const sortedIds = (records: readonly { id: string }[]): string[] => ids(records).sort();

function byExpiry(a: Lease, b: Lease): number {
  return a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

async function rejectsWith(promise: Promise<unknown>, code: string, reason?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (reason !== undefined) assert.equal(err.reason, reason);
    return true;
  });
}

/** Every page of a scan, with the entries each looked at. */
async function scanAll(
  store: LeaseStore,
  selector: LeaseSelector,
  pageSize: number,
): Promise<{ leases: Lease[]; pages: number }> {
  const leases: Lease[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await store.scanLeases(selector, cursor, pageSize);
    assert.ok(page.leases.length <= pageSize, 'a page holds at most pageSize leases');
    leases.push(...page.leases);
    cursor = page.cursor;
    pages++;
    assert.ok(pages < 1000, 'the scan ends');
  } while (cursor !== undefined);
  return { leases, pages };
}

async function drain(pages: AsyncGenerator<RevocationPage>): Promise<RevocationPage[]> {
  const all: RevocationPage[] = [];
  for await (const page of pages) all.push(page);
  return all;
}

/** The run's invariants: one total for the whole run, and its pages look at exactly that many entries. */
function assertRunCovered(pages: readonly RevocationPage[]): void {
  assert.ok(pages.length > 0, 'a run yields at least one page');
  const total = pages[0]?.total;
  for (const p of pages) assert.equal(p.total, total);
  assert.equal(
    pages.reduce((n, p) => n + p.scanned, 0),
    total,
  );
}

const movedBy = (pages: readonly RevocationPage[]): Lease[] => pages.flatMap((p) => p.leases);

function quarantine(pattern: string, now: number, overrides: Partial<Quarantine> = {}): Quarantine {
  return {
    pattern,
    reason: 'incident 42',
    by: 'spiffe://example.org/security/oncall',
    trigger: 'manual',
    createdAt: now,
    expiresAt: 0,
    ...overrides,
  };
}

function describeSelectionContract(name: string, makeHarness: MakeSelectionHarness): void {
  describe(`LeaseStore selection contract: ${name}`, () => {
    /**
     * One population for every selector case (read-only there): two leases per agent, one per
     * backend, in three environments, and some ended in each way.
     */
    describe('scanLeases: every selector field', () => {
      let h: SelectionHarness;
      let all: Lease[];
      let tasks: Task[];
      const ended = new Map<string, LeaseEndState>();

      before(async () => {
        h = await makeHarness();
        const now = wallNow();
        tasks = [];
        all = [];
        for (const [i, agent] of AGENTS.entries()) {
          const task = makeTask(now, { agent, environment: ['staging', 'prod', 'dev'][i % 3] as string });
          await h.store.createTask(task);
          tasks.push(task);
          for (const [j, [backend, role]] of [
            ['token', 'token/reader'],
            ['vault', 'vault/db'],
          ].entries()) {
            // Distinct expiries, interleaved over agents, plus one tie to exercise the id tiebreak.
            const expiresAt = now + 60_000 + (j * AGENTS.length + i) * 1000 - (i === 1 && j === 0 ? 1000 : 0);
            const lease = makeLease(task, now, { id: `l-${i}-${j}`, backend, role, expiresAt });
            assert.equal(await h.store.putLease(lease, now), 'ok');
          }
        }
        const ends: [string, LeaseEndState][] = [
          ['l-0-1', 'revoked'],
          ['l-1-0', 'expired'],
          ['l-2-1', 'revoking'],
          ['l-3-0', 'revoke_failed'],
          ['l-5-1', 'revoked'],
        ];
        for (const [id, state] of ends) {
          assert.ok(await h.store.markLeaseEnded(id, state, 'seed', now + 1));
          ended.set(id, state);
        }
        for (const t of tasks) all.push(...(await h.store.listLeases({ taskId: t.id })));
        all.sort(byExpiry);
        assert.equal(all.length, AGENTS.length * 2);
      });
      after(async () => {
        await h.close();
      });

      const taskOf = (i: number): string => (tasks[i] as Task).id;
      const cases: {
        title: string;
        selector: () => LeaseSelector;
        /** Written out by hand, independently of leaseMatches. */
        expect: (l: Lease) => boolean;
      }[] = [
        { title: 'empty selector: every lease', selector: () => ({}), expect: () => true },
        { title: 'lease id', selector: () => ({ leaseId: 'l-4-1' }), expect: (l) => l.id === 'l-4-1' },
        { title: 'unknown lease id', selector: () => ({ leaseId: 'l-none' }), expect: () => false },
        {
          title: 'lease id of an ended lease',
          selector: () => ({ leaseId: 'l-0-1' }),
          expect: (l) => l.id === 'l-0-1',
        },
        {
          title: 'agent, exact (not its children)',
          selector: () => ({ agent: A }),
          expect: (l) => l.agent === A,
        },
        {
          title: 'agent pattern /*: one segment below',
          selector: () => ({ agentPattern: `spiffe://${TD}/agents/*` }),
          expect: (l) => l.agent === A || l.agent === B,
        },
        {
          title: 'agent pattern /**: any depth below',
          selector: () => ({ agentPattern: `spiffe://${TD}/agents/**` }),
          expect: (l) => [A, A_SUB, A_DEEP, B].includes(l.agent),
        },
        {
          title: 'agent pattern /* under an agent: its children only',
          selector: () => ({ agentPattern: `${A}/*` }),
          expect: (l) => l.agent === A_SUB,
        },
        {
          title: 'agent pattern /** under an agent: its descendants, not itself',
          selector: () => ({ agentPattern: `${A}/**` }),
          expect: (l) => l.agent === A_SUB || l.agent === A_DEEP,
        },
        {
          title: 'agent pattern /* at the trust domain root',
          selector: () => ({ agentPattern: `spiffe://${TD}/*` }),
          expect: (l) => l.agent === AGENTSX,
        },
        { title: 'task', selector: () => ({ taskId: taskOf(3) }), expect: (l) => l.taskId === taskOf(3) },
        {
          title: 'environment',
          selector: () => ({ environment: 'prod' }),
          expect: (l) => l.environment === 'prod',
        },
        { title: 'role', selector: () => ({ role: 'vault/db' }), expect: (l) => l.role === 'vault/db' },
        { title: 'backend', selector: () => ({ backend: 'token' }), expect: (l) => l.backend === 'token' },
        {
          title: 'trust domain (not one that merely starts with it)',
          selector: () => ({ trustDomain: TD }),
          expect: (l) => l.agent.startsWith(`spiffe://${TD}/`),
        },
        {
          title: 'other trust domain',
          selector: () => ({ trustDomain: 'other.org' }),
          expect: (l) => l.agent === OTHER_TD,
        },
        ...(['active', 'revoking', 'revoked', 'expired', 'revoke_failed'] as const).map((state) => ({
          title: `state ${state}`,
          selector: (): LeaseSelector => ({ state }),
          expect: (l: Lease): boolean => (ended.get(l.id) ?? 'active') === state,
        })),
        {
          title: 'pattern + backend + state',
          selector: () => ({ agentPattern: `spiffe://${TD}/agents/**`, backend: 'token', state: 'active' }),
          expect: (l) => [A, A_SUB, A_DEEP, B].includes(l.agent) && l.backend === 'token' && !ended.has(l.id),
        },
        {
          title: 'agent + role',
          selector: () => ({ agent: A_SUB, role: 'token/reader' }),
          expect: (l) => l.agent === A_SUB && l.role === 'token/reader',
        },
        {
          title: 'task + agent that does not hold it: nothing',
          selector: () => ({ taskId: taskOf(0), agent: B }),
          expect: () => false,
        },
        {
          title: 'environment + trust domain',
          selector: () => ({ environment: 'staging', trustDomain: TD }),
          expect: (l) => l.environment === 'staging' && l.agent.startsWith(`spiffe://${TD}/`),
        },
        {
          title: 'lease id + a field it does not match: nothing',
          selector: () => ({ leaseId: 'l-4-1', backend: 'token' }),
          expect: () => false,
        },
      ];

      for (const c of cases) {
        it(`${c.title}: the matching leases in expiresAt order, on every page size`, async () => {
          const selector = c.selector();
          const expected = all.filter(c.expect);
          // leaseMatches is the rule the memory store applies and the Lua must agree with.
          assert.deepEqual(sortedIds(all.filter((l) => leaseMatches(selector, l))), sortedIds(expected));
          const whole = await scanAll(h.store, selector, 1000);
          assert.deepEqual(ids(whole.leases), ids(expected));
          assert.deepEqual(whole.leases, expected, 'the records as stored');
          for (const pageSize of [1, 2, 3]) {
            const paged = await scanAll(h.store, selector, pageSize);
            assert.deepEqual(ids(paged.leases), ids(expected), `page size ${pageSize}`);
          }
        });
      }

      it('answers a page by position: scanned counts the entries looked at, the cursor resumes', async () => {
        const first = await h.store.scanLeases({ backend: 'vault' }, undefined, 4);
        assert.equal(first.scanned, 4);
        assert.ok(first.cursor !== undefined);
        const rest = await scanAll(h.store, { backend: 'vault' }, 1000);
        const second = await h.store.scanLeases({ backend: 'vault' }, first.cursor, 1000);
        assert.equal(second.cursor, undefined);
        assert.deepEqual(ids([...first.leases, ...second.leases]), ids(rest.leases));
      });

      it('refuses a cursor it did not hand out', async () => {
        await rejectsWith(h.store.scanLeases({}, 'not-a-cursor', 10), 'INVALID_ARGUMENT');
        await rejectsWith(h.store.scanLeases({}, '-3', 10), 'INVALID_ARGUMENT');
      });

      it('refuses a page size below 1, which would page forever', async () => {
        await rejectsWith(h.store.scanLeases({}, undefined, 0), 'INVALID_ARGUMENT');
        await rejectsWith(
          drain(h.store.revokeSelected({ agent: A }, { reason: 'x', at: 1, runAt: 1, pageSize: 0 })),
          'INVALID_ARGUMENT',
        );
        assert.equal((await h.store.getLease('l-0-0'))?.state, 'active', 'nothing revoked');
      });

      it('refuses an agent pattern that ends in neither /* nor /**', async () => {
        await rejectsWith(h.store.scanLeases({ agentPattern: A }, undefined, 10), 'INVALID_ARGUMENT');
        await rejectsWith(
          drain(h.store.revokeSelected({ agentPattern: A }, { reason: 'x', at: 1, runAt: 1, pageSize: 10 })),
          'INVALID_ARGUMENT',
        );
        assert.equal((await h.store.getLease('l-0-0'))?.state, 'active', 'nothing revoked');
      });
    });

    describe('revokeSelected', () => {
      let h: SelectionHarness;
      let store: LeaseStore;
      let now: number;

      beforeEach(async () => {
        h = await makeHarness();
        store = h.store;
        now = wallNow();
      });
      afterEach(async () => {
        await h.close();
      });

      async function activeTask(agent: string): Promise<Task> {
        const task = makeTask(now, { agent });
        await store.createTask(task);
        return task;
      }

      async function put(task: Task, overrides: Partial<Lease> = {}): Promise<Lease> {
        const lease = makeLease(task, now, overrides);
        assert.equal(await store.putLease(lease, now), 'ok');
        return lease;
      }

      const opts = (pageSize: number): { reason: string; at: number; runAt: number; pageSize: number } => ({
        reason: 'admin: incident 42',
        at: now + 100,
        runAt: now + 60_000,
        pageSize,
      });

      it('moves only the active matching leases to revoking, deny-lists them and queues one job each', async () => {
        const a = await activeTask(A);
        const b = await activeTask(B);
        const aTokens = [await put(a), await put(a), await put(a)];
        const aVault = await put(a, { backend: 'vault', role: 'vault/db' });
        const aRevoked = await put(a);
        await store.markLeaseEnded(aRevoked.id, 'revoked', 'earlier', now + 1);
        const aExpired = await put(a);
        await store.markLeaseEnded(aExpired.id, 'expired', 'expired', now + 1);
        const bTokens = [await put(b), await put(b)];

        const pages = await drain(store.revokeSelected({ agent: A, backend: 'token' }, opts(2)));
        assertRunCovered(pages);
        const moved = movedBy(pages);
        assert.deepEqual(sortedIds(moved), sortedIds(aTokens));
        for (const lease of aTokens) {
          const expected: Lease = {
            ...lease,
            state: 'revoking',
            revokeReason: 'admin: incident 42',
            revokedAt: now + 100,
          };
          assert.deepEqual(
            moved.find((m) => m.id === lease.id),
            expected,
          );
          assert.deepEqual(await store.getLease(lease.id), expected);
          assert.deepEqual(await h.queue.get(lease.id), {
            leaseId: lease.id,
            backend: 'token',
            backendRef: lease.backendRef,
            expiresAt: lease.expiresAt,
            reason: 'admin: incident 42',
            attempts: 0,
            runAt: now + 60_000,
          });
        }
        assert.equal(await h.queue.pending(), aTokens.length);
        for (const untouched of [aVault, ...bTokens]) {
          assert.equal((await store.getLease(untouched.id))?.state, 'active');
          assert.equal(await h.queue.get(untouched.id), undefined);
        }
        assert.equal(
          (await store.getLease(aRevoked.id))?.revokeReason,
          'earlier',
          'an ended lease is left alone',
        );
        assert.equal((await store.getLease(aExpired.id))?.state, 'expired');
        assert.deepEqual(
          sortedIds(await store.listRevokedUnexpired(now + 200)),
          sortedIds([...aTokens, aRevoked]),
        );
        assert.deepEqual(
          sortedIds(await store.listLeases({ state: 'active' })),
          sortedIds([aVault, ...bTokens]),
        );

        // The worker can claim what the run queued.
        const claimed = await h.queue.claimDue(now + 60_000, 10);
        assert.deepEqual(claimed.map((j) => j.leaseId).sort(), sortedIds(aTokens));

        // A second run finds nothing left to move and queues nothing more.
        const again = await drain(store.revokeSelected({ agent: A, backend: 'token' }, opts(2)));
        assert.deepEqual(movedBy(again), []);
        assert.equal(await h.queue.pending(), aTokens.length);
      });

      it('revokes exactly the selected leases across pages of many batched calls, keeping a job queued before', async () => {
        // Pages of 1,200 entries: on Redis each page updates each set in several batched calls
        // (500 members a call), and only the second page holds a lease whose job was queued before
        // the run (the queue's ZADD NX keeps its entry, and its job hash keeps its attempts).
        const a = await activeTask(A);
        const b = await activeTask(B);
        const tokens: Lease[] = [];
        const vault: Lease[] = [];
        for (let i = 0; i < 1300; i++) {
          const inVault = i % 10 === 9;
          const extra = inVault ? { backend: 'vault', role: 'vault/db' } : {};
          const lease = await put(a, { expiresAt: now + 60_000 + i, ...extra });
          (inVault ? vault : tokens).push(lease);
        }
        const ended = tokens[5] as Lease;
        await store.markLeaseEnded(ended.id, 'revoked', 'earlier', now + 1);
        const others = [await put(b), await put(b)];
        const queuedBefore = tokens[tokens.length - 3] as Lease;
        const earlierJob = {
          leaseId: queuedBefore.id,
          backend: 'token',
          backendRef: queuedBefore.backendRef,
          expiresAt: queuedBefore.expiresAt,
          reason: 'task_ended',
          attempts: 3,
          lastError: 'backend down',
        };
        assert.equal(await h.queue.enqueue(earlierJob, now + 5000), true);
        const countsBefore = await store.activeLeaseCounts();

        const pages = await drain(store.revokeSelected({ agent: A, backend: 'token' }, opts(1200)));
        assertRunCovered(pages);
        assert.ok(pages.length >= 2, 'more than one page');
        const moved = movedBy(pages);
        const expected = tokens.filter((l) => l !== ended);
        assert.deepEqual(sortedIds(moved), sortedIds(expected), 'exactly the selected leases');
        assert.equal(new Set(ids(moved)).size, moved.length, 'each lease once');
        assert.ok(
          ids(pages[pages.length - 1]?.leases ?? []).includes(queuedBefore.id),
          'the queued lease is on the last page',
        );

        const revoking = (l: Lease): Lease => ({
          ...l,
          state: 'revoking',
          revokeReason: 'admin: incident 42',
          revokedAt: now + 100,
        });
        for (const l of expected) assert.deepEqual(await store.getLease(l.id), revoking(l));
        for (const l of [...vault, ...others]) assert.equal((await store.getLease(l.id))?.state, 'active');
        assert.equal((await store.getLease(ended.id))?.revokeReason, 'earlier');
        assert.deepEqual(
          sortedIds(await store.listRevokedUnexpired(now + 200)),
          sortedIds([...expected, ended]),
        );
        const denied = await store.listRevokedTokens(now, { limit: 5000 });
        assert.deepEqual(
          denied.map((t) => t.jti).sort(),
          [...expected, ended].map((l) => l.backendRef).sort(),
        );

        assert.equal(await h.queue.pending(), expected.length, 'one job each, the earlier one kept');
        assert.deepEqual(await h.queue.get(queuedBefore.id), { ...earlierJob, runAt: now + 5000 });
        for (const l of [expected[0] as Lease, expected[expected.length - 1] as Lease]) {
          assert.deepEqual(await h.queue.get(l.id), {
            leaseId: l.id,
            backend: 'token',
            backendRef: l.backendRef,
            expiresAt: l.expiresAt,
            reason: 'admin: incident 42',
            attempts: 0,
            runAt: now + 60_000,
          });
        }
        for (const l of [...vault, ...others, ended]) assert.equal(await h.queue.get(l.id), undefined);
        assert.deepEqual(await store.activeLeaseCounts(), {
          token: (countsBefore.token ?? 0) - expected.length,
          vault: vault.length,
        });
      });

      it('keeps a job already queued for a lease instead of queueing a second one', async () => {
        const a = await activeTask(A);
        const leases = [await put(a), await put(a), await put(a)];
        const first = leases[0] as Lease;
        const earlier = {
          leaseId: first.id,
          backend: 'token',
          backendRef: first.backendRef,
          expiresAt: first.expiresAt,
          reason: 'task_ended',
          attempts: 2,
          lastError: 'backend down',
        };
        assert.equal(await h.queue.enqueue(earlier, now + 5000), true);

        const pages = await drain(store.revokeSelected({ agent: A }, opts(10)));
        assert.deepEqual(sortedIds(movedBy(pages)), sortedIds(leases));
        assert.equal((await store.getLease(first.id))?.state, 'revoking');
        assert.deepEqual(await h.queue.get(first.id), { ...earlier, runAt: now + 5000 });
        assert.equal(await h.queue.pending(), leases.length);
      });

      it('takes active leases whatever state the selector names (state is for listing only)', async () => {
        const a = await activeTask(A);
        const active = await put(a);
        const revoked = await put(a);
        await store.markLeaseEnded(revoked.id, 'revoked', 'earlier', now + 1);
        const pages = await drain(store.revokeSelected({ agent: A, state: 'revoked' }, opts(10)));
        assert.deepEqual(sortedIds(movedBy(pages)), [active.id]);
        assert.equal((await store.getLease(revoked.id))?.revokeReason, 'earlier');
      });

      it('revokes the one lease a lease id names, if it matches the other fields', async () => {
        const a = await activeTask(A);
        const [one, two] = [await put(a), await put(a)];
        assert.deepEqual(
          movedBy(await drain(store.revokeSelected({ leaseId: one.id, backend: 'vault' }, opts(10)))),
          [],
        );
        const pages = await drain(store.revokeSelected({ leaseId: one.id }, opts(10)));
        assertRunCovered(pages);
        assert.deepEqual(ids(movedBy(pages)), [one.id]);
        assert.equal((await store.getLease(two.id))?.state, 'active');
        assert.deepEqual(movedBy(await drain(store.revokeSelected({ leaseId: 'l-none' }, opts(10)))), []);
      });

      it('yields one empty page when nothing is indexed', async () => {
        const pages = await drain(store.revokeSelected({ agent: A }, opts(5)));
        assert.deepEqual(pages, [{ leases: [], scanned: 0, total: 0 }]);
        assert.equal(await h.queue.pending(), 0);
      });

      // Each selector reads a different index on Redis: the agent's, and the active set itself.
      for (const selector of [
        { agent: A },
        { backend: 'token' },
        { agentPattern: `spiffe://${TD}/agents/**`, trustDomain: TD },
      ] satisfies LeaseSelector[]) {
        it(`skips none while others end leases between pages, and takes none created after it started (${JSON.stringify(selector)})`, async () => {
          const a = await activeTask(A);
          const other = await activeTask(OTHER_TD);
          // Ten matching leases in expiresAt order, and some that match none of the selectors.
          const leases: Lease[] = [];
          for (let i = 0; i < 10; i++) leases.push(await put(a, { expiresAt: now + 60_000 + i * 1000 }));
          const outsiders = [
            await put(other, { backend: 'vault', role: 'vault/db', expiresAt: now + 63_500 }),
            await put(other, { backend: 'vault', role: 'vault/db', expiresAt: now + 65_500 }),
          ];
          const lease = (i: number): Lease => leases[i] as Lease;

          const run = store.revokeSelected(selector, opts(3));
          const pages: RevocationPage[] = [];
          const first = await run.next();
          assert.equal(first.done, false);
          pages.push(first.value as RevocationPage);
          assert.deepEqual(ids((first.value as RevocationPage).leases), ids(leases.slice(0, 3)));

          // Meanwhile: the reaper claims one, a replica ends two, and new matching leases arrive,
          // one of them first in expiresAt order.
          const reaped = await store.claimExpiredLeases(lease(3).expiresAt, 10);
          assert.deepEqual(ids(reaped), [lease(3).id]);
          assert.ok(await store.markLeaseEnded(lease(4).id, 'revoked', 'task_ended', now + 2));
          assert.ok(await store.markLeaseEnded(lease(8).id, 'expired', 'expired', now + 2));
          const late = [
            await put(a, { expiresAt: now + 30_000 }),
            await put(a, { expiresAt: now + 64_500 }),
            await put(a, { expiresAt: now + 90_000 }),
          ];

          for (;;) {
            const next = await run.next();
            if (next.done) break;
            pages.push(next.value);
          }
          assertRunCovered(pages);
          const expected = [0, 1, 2, 5, 6, 7, 9].map(lease);
          assert.deepEqual(ids(movedBy(pages)), ids(expected), 'every lease still active when its page came');
          for (const l of expected) assert.equal((await store.getLease(l.id))?.state, 'revoking');
          assert.equal((await store.getLease(lease(3).id))?.state, 'expired');
          assert.equal((await store.getLease(lease(4).id))?.revokeReason, 'task_ended');
          assert.equal((await store.getLease(lease(8).id))?.state, 'expired');
          for (const l of [...late, ...outsiders]) {
            assert.equal(
              (await store.getLease(l.id))?.state,
              'active',
              'created after the start, or no match',
            );
          }
          assert.equal(await h.queue.pending(), expected.length);
          for (const l of [lease(3), lease(4), lease(8), ...late])
            assert.equal(await h.queue.get(l.id), undefined);
        });
      }

      it('stops cleanly when the caller stops reading, leaving later pages untouched', async () => {
        const a = await activeTask(A);
        const leases: Lease[] = [];
        for (let i = 0; i < 6; i++) leases.push(await put(a, { expiresAt: now + 60_000 + i * 1000 }));
        const seen: Lease[] = [];
        for await (const page of store.revokeSelected({ agent: A }, opts(2))) {
          seen.push(...page.leases);
          break;
        }
        assert.deepEqual(ids(seen), ids(leases.slice(0, 2)));
        assert.deepEqual(sortedIds(await store.listLeases({ state: 'active' })), sortedIds(leases.slice(2)));
        assert.equal(await h.queue.pending(), 2);
      });
    });

    describe('completeRevocations', () => {
      let h: SelectionHarness;
      let store: LeaseStore;
      let now: number;

      beforeEach(async () => {
        h = await makeHarness();
        store = h.store;
        now = wallNow();
      });
      afterEach(async () => {
        await h.close();
      });

      it('records each outcome once, removes the jobs and ignores leases that are not revoking', async () => {
        const task = makeTask(now, { agent: A });
        await store.createTask(task);
        const leases: Lease[] = [];
        for (let i = 0; i < 4; i++) {
          const l = makeLease(task, now, { expiresAt: now + 60_000 + i });
          assert.equal(await store.putLease(l, now), 'ok');
          leases.push(l);
        }
        const [ok, failed, pending, active] = leases as [Lease, Lease, Lease, Lease];
        // Three revoking with queued jobs; the fourth stays active.
        for (const l of [ok, failed, pending]) {
          const pages = await drain(
            store.revokeSelected(
              { leaseId: l.id },
              { reason: 'admin: x', at: now + 1, runAt: now + 60_000, pageSize: 2 },
            ),
          );
          assert.deepEqual(ids(movedBy(pages)), [l.id]);
        }
        assert.equal(await h.queue.pending(), 3);

        const done = await store.completeRevocations(
          [
            { id: ok.id, outcome: 'revoked', reason: 'revoked at backend' },
            { id: failed.id, outcome: 'revoke_failed', reason: 'gave up' },
            { id: active.id, outcome: 'revoked', reason: 'not revoking' },
            { id: 'l-none', outcome: 'revoked', reason: 'unknown' },
          ],
          now + 500,
        );
        assert.deepEqual(
          done.sort(byExpiry),
          (
            [
              { ...ok, state: 'revoked', revokeReason: 'revoked at backend', revokedAt: now + 500 },
              { ...failed, state: 'revoke_failed', revokeReason: 'gave up', revokedAt: now + 500 },
            ] satisfies Lease[]
          ).sort(byExpiry),
        );
        assert.deepEqual(
          await store.getLease(ok.id),
          done.find((l) => l.id === ok.id),
        );
        assert.equal((await store.getLease(active.id))?.state, 'active');
        assert.equal((await store.getLease(active.id))?.revokeReason, undefined);
        assert.equal((await store.getLease(pending.id))?.state, 'revoking');
        assert.equal(await h.queue.get(ok.id), undefined);
        assert.equal(await h.queue.get(failed.id), undefined);
        assert.ok(await h.queue.get(pending.id), 'a lease not in the call keeps its job');
        assert.equal(await h.queue.pending(), 1);
        // Still refused downstream, whatever the outcome.
        assert.deepEqual(
          sortedIds(await store.listRevokedUnexpired(now + 600)),
          sortedIds([ok, failed, pending]),
        );

        // Once: a second call moves nothing.
        assert.deepEqual(
          await store.completeRevocations(
            [{ id: ok.id, outcome: 'revoke_failed', reason: 'late' }],
            now + 700,
          ),
          [],
        );
        assert.equal((await store.getLease(ok.id))?.state, 'revoked');
      });

      it('answers [] for no outcomes, and refuses an unknown outcome before changing anything', async () => {
        assert.deepEqual(await store.completeRevocations([], now), []);
        const task = makeTask(now, { agent: A });
        await store.createTask(task);
        const lease = makeLease(task, now);
        await store.putLease(lease, now);
        await store.markLeaseEnded(lease.id, 'revoking', 'x', now);
        await rejectsWith(
          store.completeRevocations(
            [
              { id: lease.id, outcome: 'revoked', reason: 'fine' },
              { id: lease.id, outcome: 'expired' as 'revoked', reason: 'not an outcome' },
            ],
            now + 1,
          ),
          'INVALID_ARGUMENT',
        );
        assert.equal((await store.getLease(lease.id))?.state, 'revoking');
      });
    });

    describe('activeLeaseCounts', () => {
      let h: SelectionHarness;

      beforeEach(async () => {
        h = await makeHarness();
      });
      afterEach(async () => {
        await h.close();
      });

      it('goes up on put and down on every way a lease ends, per backend', async () => {
        const { store } = h;
        const now = wallNow();
        assert.deepEqual(await store.activeLeaseCounts(), {});
        const task = makeTask(now, { agent: A });
        await store.createTask(task);
        const put = async (backend: string, overrides: Partial<Lease> = {}): Promise<Lease> => {
          const lease = makeLease(task, now, { backend, role: `${backend}/r`, ...overrides });
          assert.equal(await store.putLease(lease, now), 'ok');
          return lease;
        };
        const tokens = [
          await put('token'),
          await put('token'),
          await put('token', { expiresAt: now + 1000 }),
          await put('token'),
        ];
        const vaults = [await put('vault'), await put('vault'), await put('vault')];
        assert.deepEqual(await store.activeLeaseCounts(), { token: 4, vault: 3 });

        const t = (i: number): Lease => tokens[i] as Lease;
        const v = (i: number): Lease => vaults[i] as Lease;
        await store.markLeaseEnded(t(0).id, 'revoking', 'x', now + 1);
        await store.markLeaseEnded(t(1).id, 'revoked', 'x', now + 1);
        await store.markLeaseEnded(v(0).id, 'expired', 'x', now + 1);
        await store.markLeaseEnded(v(1).id, 'revoke_failed', 'x', now + 1);
        assert.deepEqual(await store.activeLeaseCounts(), { token: 2, vault: 1 });

        // Transitions that do not end an active lease change nothing.
        assert.equal(await store.markLeaseEnded(t(1).id, 'revoked', 'again', now + 2), undefined);
        await store.markRevokeOutcome(t(0).id, 'revoked', 'done', now + 2);
        assert.deepEqual(await store.activeLeaseCounts(), { token: 2, vault: 1 });

        assert.deepEqual(ids(await store.claimExpiredLeases(now + 1000, 10)), [t(2).id]);
        assert.deepEqual(await store.activeLeaseCounts(), { token: 1, vault: 1 });

        await drain(
          store.revokeSelected({ backend: 'vault' }, { reason: 'x', at: now, runAt: now, pageSize: 1 }),
        );
        assert.deepEqual(await store.activeLeaseCounts(), { token: 1 }, 'a backend at zero is left out');
        await drain(store.revokeSelected({}, { reason: 'x', at: now, runAt: now, pageSize: 1 }));
        assert.deepEqual(await store.activeLeaseCounts(), {});
        await store.completeRevocations([{ id: t(3).id, outcome: 'revoked', reason: 'ok' }], now + 3);
        assert.deepEqual(await store.activeLeaseCounts(), {});
      });
    });

    describe('putLease and quarantines', () => {
      let h: SelectionHarness;
      let now: number;
      let task: Task;

      beforeEach(async () => {
        h = await makeHarness();
        now = wallNow();
        task = makeTask(now, { agent: A });
        await h.store.createTask(task);
      });
      afterEach(async () => {
        await h.close();
      });

      const cases: { pattern: string; refused: string[]; allowed: string[] }[] = [
        { pattern: A, refused: [A], allowed: [A_SUB, B, `${A}x`] },
        {
          pattern: `spiffe://${TD}/agents/*`,
          refused: [A, B],
          allowed: [A_SUB, A_DEEP, AGENTSX, `spiffe://${TD}/agents`, OTHER_TD],
        },
        {
          pattern: `spiffe://${TD}/agents/**`,
          refused: [A, A_SUB, A_DEEP, B],
          allowed: [AGENTSX, `spiffe://${TD}/agents`, LOOKALIKE_TD],
        },
        { pattern: `${A}/**`, refused: [A_SUB, A_DEEP], allowed: [A, B] },
      ];

      for (const c of cases) {
        it(`a quarantine of ${c.pattern} refuses exactly the agents it covers`, async () => {
          await h.quarantines.put(quarantine(c.pattern, now));
          for (const agent of c.refused) {
            const lease = makeLease(task, now, { agent });
            assert.equal(await h.store.putLease(lease, now), 'agent_quarantined', agent);
            assert.equal(await h.store.getLease(lease.id), undefined, 'nothing written');
          }
          for (const agent of c.allowed) {
            assert.equal(await h.store.putLease(makeLease(task, now, { agent }), now), 'ok', agent);
          }
          assert.deepEqual(await h.store.activeLeaseCounts(), { token: c.allowed.length });
          assert.deepEqual(await h.store.taskLeaseSummary(task.id), {
            count: c.allowed.length,
            roles: ['token/reader'],
            version: c.allowed.length,
          });
          assert.equal((await h.store.listLeases({ taskId: task.id })).length, c.allowed.length);
        });
      }

      it('ignores a quarantine that has expired, and lifts with release', async () => {
        await h.quarantines.put(quarantine(A, now - 10_000, { expiresAt: now }));
        await h.quarantines.put(quarantine(B, now - 10_000, { expiresAt: now + 1 }));
        await h.quarantines.put(quarantine(A_SUB, now - 10_000, { expiresAt: now - 1 }));
        assert.equal(
          await h.store.putLease(makeLease(task, now, { agent: A }), now),
          'ok',
          'expiresAt == now',
        );
        assert.equal(await h.store.putLease(makeLease(task, now, { agent: A_SUB }), now), 'ok');
        assert.equal(await h.store.putLease(makeLease(task, now, { agent: B }), now), 'agent_quarantined');
        assert.equal(await h.store.putLease(makeLease(task, now + 1, { agent: B }), now + 1), 'ok');

        await h.quarantines.put(quarantine(`spiffe://${TD}/**`, now));
        assert.equal(await h.store.putLease(makeLease(task, now, { agent: A }), now), 'agent_quarantined');
        await h.quarantines.release(`spiffe://${TD}/**`, now + 1);
        assert.equal(await h.store.putLease(makeLease(task, now, { agent: A }), now), 'ok');
      });

      it('answers the task checks first, and an existing id still rejects', async () => {
        await h.quarantines.put(quarantine(A, now));
        const ghost = makeTask(now, { agent: A });
        assert.equal(await h.store.putLease(makeLease(ghost, now), now), 'task_not_found');
        assert.equal(
          await h.store.putLease(makeLease(task, now, { expiresAt: task.expiresAt + 1 }), now),
          'lease_exceeds_task',
        );
        await h.quarantines.release(A, now);
        const lease = makeLease(task, now);
        assert.equal(await h.store.putLease(lease, now), 'ok');
        await h.quarantines.put(quarantine(A, now));
        await rejectsWith(h.store.putLease(lease, now), 'FAILED_PRECONDITION', 'lease_exists');
      });
    });
  });
}

describeSelectionContract('MemoryLeaseStore', memorySelection);
describeSelectionContract('RedisLeaseStore', redisSelection);

// ---------------------------------------------------------------------------------------------
// Property: the Lua selection agrees with leaseMatches (and the memory store) on random data.

const PROP_AGENTS = [
  'spiffe://a.org/x',
  'spiffe://a.org/x/y',
  'spiffe://a.org/x/y/z',
  'spiffe://a.org/xy',
  'spiffe://a.org/w',
  'spiffe://b.org/x',
  'spiffe://a.org.b/x',
];
const PROP_PATTERNS = [
  'spiffe://a.org/*',
  'spiffe://a.org/**',
  'spiffe://a.org/x/*',
  'spiffe://a.org/x/**',
  'spiffe://a.org/x/y/*',
  'spiffe://b.org/**',
];
const PROP_BACKENDS = ['token', 'vault'];
const PROP_ENVS = ['staging', 'prod'];
const PROP_ENDS = [undefined, 'revoking', 'revoked', 'expired', 'revoke_failed'] as const;

const propLease = fc.record({
  agent: fc.constantFrom(...PROP_AGENTS),
  task: fc.integer({ min: 0, max: 1 }),
  environment: fc.constantFrom(...PROP_ENVS),
  backend: fc.constantFrom(...PROP_BACKENDS),
  // A coarse grid so equal expiries (ties broken by id) are common.
  expiry: fc.integer({ min: 1, max: 6 }),
  end: fc.constantFrom(...PROP_ENDS),
});

const SELECTOR_FIELDS: { [K in keyof LeaseSelector]-?: fc.Arbitrary<NonNullable<LeaseSelector[K]>> } = {
  leaseId: fc.integer({ min: 0, max: 12 }).map((i) => `p-${i}`),
  agent: fc.constantFrom(...PROP_AGENTS),
  agentPattern: fc.constantFrom(...PROP_PATTERNS),
  taskId: fc.constantFrom('0', '1'),
  environment: fc.constantFrom(...PROP_ENVS),
  role: fc.constantFrom(...PROP_BACKENDS).map((b) => `${b}/r`),
  backend: fc.constantFrom(...PROP_BACKENDS),
  trustDomain: fc.constantFrom('a.org', 'b.org', 'a.org.b', 'a'),
  state: fc.constantFrom<LeaseState>('active', 'revoking', 'revoked', 'expired', 'revoke_failed'),
};

/** Up to three fields: with more, nearly every selector would match nothing. */
const propSelector: fc.Arbitrary<LeaseSelector> = fc
  .subarray(Object.keys(SELECTOR_FIELDS) as (keyof LeaseSelector)[], { maxLength: 3 })
  .chain((keys) => fc.record(Object.fromEntries(keys.map((k) => [k, SELECTOR_FIELDS[k]]))))
  .map((fields) => fields as LeaseSelector);

describe('LeaseStore selection: Redis agrees with leaseMatches (property)', () => {
  let server: Awaited<ReturnType<typeof sharedRedis>>;
  let redis: Redis;

  before(async () => {
    server = await sharedRedis();
    redis = createRedisClient(server.url);
    await redis.ping();
  });
  after(async () => {
    await redis.quit();
  });

  it('scanLeases and revokeSelected pick exactly the leases leaseMatches picks, on both stores', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(propLease, { minLength: 3, maxLength: 12 }),
        fc.array(fc.tuple(propSelector, fc.integer({ min: 1, max: 5 })), { minLength: 2, maxLength: 5 }),
        propSelector,
        fc.integer({ min: 1, max: 5 }),
        async (specs, scans, selector, revokePage) => {
          const now = wallNow();
          const prefix = randomPrefix();
          // One client for every run, a prefix of its own per run (the Redis store is left open:
          // closing it would quit the shared client).
          const stores: LeaseStore[] = [
            new RedisLeaseStore(redis, { prefix }),
            new MemoryLeaseStore({ revocations: new MemoryRevocationQueue() }),
          ];
          const leases = specs.map((s, i) =>
            makeLease(makeTask(now, { id: `${s.task}` }), now, {
              id: `p-${i}`,
              agent: s.agent,
              environment: s.environment,
              backend: s.backend,
              role: `${s.backend}/r`,
              expiresAt: now + 60_000 + s.expiry * 1000,
            }),
          );
          for (const store of stores) {
            for (let t = 0; t < 2; t++) {
              await store.createTask(makeTask(now, { id: `${t}`, agent: 'spiffe://a.org/x' }));
            }
            for (const [i, lease] of leases.entries()) {
              assert.equal(await store.putLease(lease, now), 'ok');
              const end = specs[i]?.end;
              if (end) await store.markLeaseEnded(lease.id, end, 'prop', now + 1);
            }
          }
          const [redisStore, memoryStore] = stores as [LeaseStore, LeaseStore];
          const all = (await redisStore.listLeases({})).sort(byExpiry);
          assert.deepEqual(await memoryStore.listLeases({}), all);

          for (const [selector, pageSize] of scans) {
            const expected = ids(all.filter((l) => leaseMatches(selector, l)));
            assert.deepEqual(ids((await scanAll(redisStore, selector, pageSize)).leases), expected, 'redis');
            assert.deepEqual(
              ids((await scanAll(memoryStore, selector, pageSize)).leases),
              expected,
              'memory',
            );
          }

          const expected = all.filter((l) => leaseMatches({ ...selector, state: 'active' }, l));
          for (const store of stores) {
            const pages = await drain(
              store.revokeSelected(selector, {
                reason: 'prop',
                at: now + 2,
                runAt: now + 3,
                pageSize: revokePage,
              }),
            );
            assertRunCovered(pages);
            assert.deepEqual(sortedIds(movedBy(pages)), sortedIds(expected));
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});
