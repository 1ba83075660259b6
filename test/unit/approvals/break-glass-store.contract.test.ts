/**
 * The BreakGlassStore contract, run against the Redis store (a real redis-server, fresh key prefix
 * per test) and the in-process store: both must give the same answers.
 */
import { strict as assert } from 'node:assert';
import type { BreakGlassGrant, BreakGlassStore } from '../../../src/approvals/types.js';
import { isBrokerError } from '../../../src/errors.js';
import {
  makeGrant,
  memoryBreakGlass,
  redisBreakGlass,
  REQUESTER,
  type Harness,
  type MakeHarness,
} from './approval-harness.js';

async function rejectsWith(promise: Promise<unknown>, code: string, reasonOrField: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(
      err.reason === reasonOrField || err.field === reasonOrField,
      `expected ${reasonOrField}, got ${err.reason}/${err.field}`,
    );
    return true;
  });
}

const OTHER_AGENT = 'spiffe://example.org/agent/other';
const REVIEWER = 'spiffe://example.org/human/security';

export function describeBreakGlassStoreContract(
  name: string,
  makeHarness: MakeHarness<BreakGlassStore>,
): void {
  describe(`BreakGlassStore contract: ${name}`, () => {
    let h: Harness<BreakGlassStore>;
    let store: BreakGlassStore;
    let now: number;

    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
      now = Date.now();
    });
    afterEach(async () => {
      await h.close();
    });

    async function granted(overrides: Partial<BreakGlassGrant> = {}): Promise<BreakGlassGrant> {
      const grant = makeGrant(now, overrides);
      await store.grant(grant);
      return grant;
    }

    describe('grant', () => {
      it('stores a grant and reads it back unchanged, with or without a task', async () => {
        const agentWide = await granted();
        const taskScoped = await granted({ taskId: 'task-7', roles: ['token/deploy'] });
        assert.deepEqual(await store.get(agentWide.id), agentWide);
        assert.deepEqual(await store.get(taskScoped.id), taskScoped);
        assert.equal(await store.get('no-such-grant'), undefined);
        // Ids that could collide with the index keys are never grants.
        assert.equal(await store.get('unreviewed'), undefined);
        assert.equal(await store.get(`agent:${REQUESTER}`), undefined);
      });

      it('refuses a second grant with the same id, keeping the first', async () => {
        const grant = await granted();
        await rejectsWith(
          store.grant({ ...grant, reason: 'other' }),
          'FAILED_PRECONDITION',
          'break_glass_exists',
        );
        assert.equal((await store.get(grant.id))?.reason, grant.reason);
      });

      it('refuses a grant without reason or roles, an id that could collide with an index, or one already used', async () => {
        await rejectsWith(store.grant(makeGrant(now, { reason: '' })), 'INVALID_ARGUMENT', 'grant.reason');
        await rejectsWith(store.grant(makeGrant(now, { roles: [] })), 'INVALID_ARGUMENT', 'grant.roles');
        await rejectsWith(store.grant(makeGrant(now, { id: 'unreviewed' })), 'INVALID_ARGUMENT', 'grant.id');
        await rejectsWith(store.grant(makeGrant(now, { id: 'agent:x' })), 'INVALID_ARGUMENT', 'grant.id');
        await rejectsWith(store.grant(makeGrant(now, { uses: 3 })), 'INVALID_ARGUMENT', 'grant.uses');
        await rejectsWith(
          store.grant(makeGrant(now, { expiresAt: now })),
          'INVALID_ARGUMENT',
          'grant.expiresAt',
        );
        assert.deepEqual(await store.listUnreviewed(), []);
      });
    });

    describe('findActive', () => {
      it('finds an unexpired grant covering the agent and role, for any task when it names none', async () => {
        const grant = await granted({ expiresAt: now + 1000 });
        assert.deepEqual(await store.findActive(REQUESTER, 'task-1', 'token/deploy', now), grant);
        assert.deepEqual(await store.findActive(REQUESTER, 'task-2', 'vault/db-admin', now + 999), grant);
        assert.equal(await store.findActive(REQUESTER, 'task-1', 'token/other', now), undefined);
        assert.equal(await store.findActive(OTHER_AGENT, 'task-1', 'token/deploy', now), undefined);
        // Expired from expiresAt on.
        assert.equal(await store.findActive(REQUESTER, 'task-1', 'token/deploy', now + 1000), undefined);
      });

      it('holds a task-scoped grant only inside its task', async () => {
        const grant = await granted({ taskId: 'task-7' });
        assert.deepEqual(await store.findActive(REQUESTER, 'task-7', 'token/deploy', now), grant);
        assert.equal(await store.findActive(REQUESTER, 'task-8', 'token/deploy', now), undefined);
        assert.equal(await store.findActive(REQUESTER, '', 'token/deploy', now), undefined);
      });

      it('picks the grant that lasts longest when several cover the request', async () => {
        await granted({ expiresAt: now + 1000 });
        const longest = await granted({ expiresAt: now + 5000, taskId: 'task-1' });
        await granted({ expiresAt: now + 3000 });
        await granted({ expiresAt: now + 9000, roles: ['token/other'] });
        assert.equal((await store.findActive(REQUESTER, 'task-1', 'token/deploy', now))?.id, longest.id);
        assert.equal(await store.findActive(REQUESTER, 'task-1', 'token/deploy', now + 5000), undefined);
        assert.equal(
          (await store.findActive(REQUESTER, 'task-2', 'token/deploy', now))?.expiresAt,
          now + 3000,
        );
      });

      it('keeps a reviewed grant in force until it expires', async () => {
        const grant = await granted();
        await store.review(grant.id, REVIEWER, 'justified', now + 1);
        assert.equal((await store.findActive(REQUESTER, 'task-1', 'token/deploy', now + 2))?.id, grant.id);
      });
    });

    describe('recordUse', () => {
      it('counts every use, concurrent ones included, across replicas', async () => {
        const grant = await granted();
        const replica = await h.replica();
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => (i % 2 ? replica : store).recordUse(grant.id)),
        );
        assert.equal((await store.get(grant.id))?.uses, 10);
        assert.equal((await store.findActive(REQUESTER, 't', 'token/deploy', now))?.uses, 10);
      });

      it('leaves an unknown grant alone, creating nothing', async () => {
        await store.recordUse('no-such-grant');
        await store.recordUse('unreviewed');
        assert.equal(await store.get('no-such-grant'), undefined);
        assert.deepEqual(await store.listUnreviewed(), []);
      });
    });

    describe('review', () => {
      it('lists unreviewed grants oldest first, keeping expired ones until someone reviews them', async () => {
        const first = await granted({ createdAt: now - 3000, expiresAt: now - 1000 });
        const second = await granted({ createdAt: now - 2000, agent: OTHER_AGENT });
        const third = await granted({ createdAt: now - 1000, taskId: 'task-1' });
        assert.deepEqual(await store.listUnreviewed(), [first, second, third]);

        const reviewed = await store.review(first.id, REVIEWER, 'restore was needed', now + 5);
        assert.deepEqual(reviewed, {
          ...first,
          reviewed: true,
          reviewedBy: REVIEWER,
          reviewedAt: now + 5,
          reviewNote: 'restore was needed',
        });
        assert.deepEqual(await store.get(first.id), reviewed);
        assert.deepEqual(
          (await store.listUnreviewed()).map((g) => g.id),
          [second.id, third.id],
        );
      });

      it('keeps the first review when reviewed twice, and answers undefined for an unknown grant', async () => {
        const grant = await granted();
        const first = await store.review(grant.id, REVIEWER, 'first look', now + 1);
        assert.deepEqual(
          await store.review(grant.id, 'spiffe://example.org/human/other', 'again', now + 2),
          first,
        );
        assert.equal(await store.review('no-such-grant', REVIEWER, 'x', now), undefined);
        assert.equal(await store.review('unreviewed', REVIEWER, 'x', now), undefined);
      });
    });

    describe('retention', () => {
      let short: Harness<BreakGlassStore>;
      beforeEach(async () => {
        short = await makeHarness({ retentionSeconds: 0 });
      });
      afterEach(async () => {
        await short.close();
      });

      it('never drops an unreviewed grant; drops a reviewed one once expiresAt + retention has passed', async () => {
        const s = short.store;
        const old = makeGrant(now - 60_000, { expiresAt: now - 1000 });
        const live = makeGrant(now - 60_000, { expiresAt: now + 60_000 });
        await s.grant(old);
        await s.grant(live);
        assert.deepEqual(await s.get(old.id), old);
        assert.equal((await s.review(old.id, REVIEWER, 'ok', now))?.reviewed, true);
        assert.equal((await s.review(live.id, REVIEWER, 'ok', now))?.reviewed, true);
        assert.equal(await s.get(old.id), undefined);
        assert.equal((await s.get(live.id))?.reviewNote, 'ok');
        assert.deepEqual(await s.listUnreviewed(), []);
        assert.equal((await s.findActive(live.agent, 'task', 'token/deploy', now))?.id, live.id);
      });
    });
  });
}

describeBreakGlassStoreContract('MemoryBreakGlassStore', memoryBreakGlass);
describeBreakGlassStoreContract('RedisBreakGlassStore', redisBreakGlass);
