/**
 * The ApprovalStore contract, run against the Redis store (a real redis-server, fresh key prefix
 * per test) and the in-process store: both must give the same answers.
 */
import { strict as assert } from 'node:assert';
import type { ApprovalRequest, ApprovalStore, DecideOutcome } from '../../../src/approvals/types.js';
import { isBrokerError } from '../../../src/errors.js';
import {
  ALICE,
  BOB,
  CAROL,
  makeRequest,
  memoryApprovals,
  redisApprovals,
  REQUESTER,
  type Harness,
  type MakeHarness,
} from './approval-harness.js';

async function rejectsWith(promise: Promise<unknown>, code: string, field?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (field !== undefined) assert.equal(err.field, field);
    return true;
  });
}

const ids = (records: { id: string }[]): string[] => records.map((r) => r.id);

export function describeApprovalStoreContract(name: string, makeHarness: MakeHarness<ApprovalStore>): void {
  describe(`ApprovalStore contract: ${name}`, () => {
    let h: Harness<ApprovalStore>;
    let store: ApprovalStore;
    let now: number;

    beforeEach(async () => {
      h = await makeHarness();
      store = h.store;
      now = Date.now();
    });
    afterEach(async () => {
      await h.close();
    });

    async function pending(overrides: Partial<ApprovalRequest> = {}): Promise<ApprovalRequest> {
      const request = makeRequest(now, overrides);
      await store.create(request);
      return request;
    }

    async function approved(overrides: Partial<ApprovalRequest> = {}): Promise<ApprovalRequest> {
      const request = await pending(overrides);
      const { outcome } = await store.decide(request.id, {
        approver: ALICE,
        approve: true,
        reason: 'ok',
        at: now + 1,
      });
      assert.equal(outcome, 'approved');
      return request;
    }

    const approve = (
      id: string,
      approver: string,
      at = now + 10,
    ): Promise<{ outcome: DecideOutcome; request?: ApprovalRequest }> =>
      store.decide(id, { approver, approve: true, reason: `lgtm from ${approver}`, at });

    describe('caps on open requests', () => {
      it('refuses a request past the cap of its requester or its task, counting only open ones', async () => {
        const caps = { perAgent: 3, perTask: 2 };
        const task = `task-cap-${now}`;
        const other = 'spiffe://example.org/agent/other';
        assert.equal(await store.create(makeRequest(now, { taskId: task }), caps), 'ok');
        assert.equal(await store.create(makeRequest(now, { taskId: task }), caps), 'ok');
        const third = makeRequest(now, { taskId: task });
        assert.equal(await store.create(third, caps), 'too_many_open_for_task');
        assert.equal(await store.get(third.id, now), undefined, 'nothing written');
        // The task's cap binds whoever asks in it; the agent's cap counts every task of the agent.
        assert.equal(
          await store.create(makeRequest(now, { taskId: task, requester: other }), caps),
          'too_many_open_for_task',
        );
        assert.equal(await store.create(makeRequest(now), caps), 'ok');
        assert.equal(await store.create(makeRequest(now), caps), 'too_many_open_for_agent');
        assert.equal(await store.create(makeRequest(now, { requester: other }), caps), 'ok');
      });

      it('mayHaveOpenForTask: false only without a pending or approved unexpired request of the task', async () => {
        const task = `task-open-${now}`;
        assert.equal(await store.mayHaveOpenForTask(task, now), false, 'no request yet');
        const request = await pending({ taskId: task });
        assert.equal(await store.mayHaveOpenForTask(task, now), true, 'pending');
        assert.equal(await store.mayHaveOpenForTask(`${task}-other`, now), false, 'another task');
        await approve(request.id, ALICE);
        assert.equal(await store.mayHaveOpenForTask(task, now + 20), true, 'approved');
        assert.equal(await store.mayHaveOpenForTask(task, request.expiresAt), false, 'expired');
      });

      it('frees a place when a request is denied, consumed or expires, but not when approved', async () => {
        const caps = { perAgent: 1 };
        const first = await approved();
        assert.equal(
          await store.create(makeRequest(now), caps),
          'too_many_open_for_agent',
          'approved is still open',
        );
        assert.ok(await store.consume(first.id, first.digest, now + 2));
        const second = makeRequest(now + 3);
        assert.equal(await store.create(second, caps), 'ok', 'consumed frees the place');
        await store.decide(second.id, { approver: ALICE, approve: false, reason: 'no', at: now + 4 });
        const third = makeRequest(now + 5, { expiresAt: now + 10 });
        assert.equal(await store.create(third, caps), 'ok', 'denied frees the place');
        assert.equal(await store.create(makeRequest(now + 10), caps), 'ok', 'expired frees the place');
        assert.equal(await store.create(makeRequest(now + 10), {}), 'ok', 'no caps: no limit');
      });
    });

    describe('create', () => {
      it('stores a pending request and reads it back unchanged', async () => {
        const request = await pending({ policyIds: ['a', 'b'], justification: '', tool: '' });
        assert.deepEqual(await store.get(request.id, now), request);
        assert.equal(await store.get('no-such-request', now), undefined);
      });

      it('refuses a second request with the same id, keeping the first', async () => {
        const request = await pending();
        await assert.rejects(store.create({ ...request, role: 'token/other' }), (err: unknown) => {
          assert.ok(isBrokerError(err));
          assert.equal(err.code, 'FAILED_PRECONDITION');
          assert.equal(err.reason, 'approval_exists');
          return true;
        });
        assert.equal((await store.get(request.id, now))?.role, 'token/deploy');
      });

      it('refuses required < 1 (a zero-approver gate must never pass) and non-integers', async () => {
        for (const required of [0, -1, 1.5, Number.NaN]) {
          const request = makeRequest(now, { required });
          await rejectsWith(store.create(request), 'INVALID_ARGUMENT', 'request.required');
          assert.equal(await store.get(request.id, now), undefined);
        }
      });

      it('refuses a request that is not new: decided, approved already, or expiring before it was made', async () => {
        await rejectsWith(
          store.create(makeRequest(now, { state: 'approved' })),
          'INVALID_ARGUMENT',
          'request.state',
        );
        await rejectsWith(
          store.create(makeRequest(now, { approvals: [{ approver: ALICE, reason: 'x', at: now }] })),
          'INVALID_ARGUMENT',
          'request.approvals',
        );
        await rejectsWith(
          store.create(makeRequest(now, { expiresAt: now })),
          'INVALID_ARGUMENT',
          'request.expiresAt',
        );
        await rejectsWith(
          store.create(makeRequest(now, { requester: '' })),
          'INVALID_ARGUMENT',
          'request.requester',
        );
      });
    });

    describe('decide', () => {
      it('approves a one-approver request: outcome approved, approval recorded', async () => {
        const request = await pending();
        const result = await store.decide(request.id, {
          approver: ALICE,
          approve: true,
          reason: 'fine',
          at: now + 5,
        });
        const expected = {
          ...request,
          state: 'approved',
          approvals: [{ approver: ALICE, reason: 'fine', at: now + 5 }],
        };
        assert.deepEqual(result, { outcome: 'approved', request: expected });
        assert.deepEqual(await store.get(request.id, now + 6), expected);
      });

      it('needs N distinct approvers: recorded, duplicate_approver, self_approval, then approved', async () => {
        const request = await pending({ required: 2 });
        assert.equal((await approve(request.id, ALICE, now + 1)).outcome, 'recorded');
        assert.equal((await store.get(request.id, now))?.state, 'pending');
        const again = await approve(request.id, ALICE, now + 2);
        assert.equal(again.outcome, 'duplicate_approver');
        assert.equal(again.request?.approvals.length, 1);
        assert.equal((await approve(request.id, REQUESTER, now + 3)).outcome, 'self_approval');
        assert.deepEqual(await store.findOpenByDigest(request.digest, now), {
          ...request,
          approvals: [{ approver: ALICE, reason: `lgtm from ${ALICE}`, at: now + 1 }],
        });

        const done = await approve(request.id, BOB, now + 4);
        assert.equal(done.outcome, 'approved');
        assert.deepEqual(done.request?.approvals, [
          { approver: ALICE, reason: `lgtm from ${ALICE}`, at: now + 1 },
          { approver: BOB, reason: `lgtm from ${BOB}`, at: now + 4 },
        ]);
        assert.equal((await approve(request.id, CAROL, now + 5)).outcome, 'not_pending');
      });

      it('never lets the requester approve or deny its own request', async () => {
        const request = await pending();
        const result = await approve(request.id, REQUESTER);
        assert.equal(result.outcome, 'self_approval');
        assert.equal(result.request?.state, 'pending');
        const deny = await store.decide(request.id, {
          approver: REQUESTER,
          approve: false,
          reason: 'nvm',
          at: now,
        });
        assert.equal(deny.outcome, 'self_approval');
        assert.deepEqual(await store.get(request.id, now), request);
      });

      it('closes on one denial, even after approvals, recording the denial', async () => {
        const request = await pending({ required: 2 });
        assert.equal((await approve(request.id, ALICE, now + 1)).outcome, 'recorded');
        // An approver who approved may still deny: a denial can only close the request.
        const denied = await store.decide(request.id, {
          approver: ALICE,
          approve: false,
          reason: 'wrong cluster',
          at: now + 2,
        });
        assert.equal(denied.outcome, 'denied');
        assert.equal(denied.request?.state, 'denied');
        assert.deepEqual(denied.request?.denial, { approver: ALICE, reason: 'wrong cluster', at: now + 2 });
        assert.equal((await approve(request.id, BOB, now + 3)).outcome, 'not_pending');
        assert.equal(await store.consume(request.id, request.digest, now + 4), undefined);
        assert.equal(await store.findOpenByDigest(request.digest, now + 4), undefined);
        assert.equal((await store.get(request.id, now + 4))?.state, 'denied');
      });

      it('answers not_found for an unknown request and not_pending once decided or consumed', async () => {
        assert.deepEqual(await approve('no-such-request', ALICE), { outcome: 'not_found' });
        const request = await approved();
        assert.equal((await approve(request.id, BOB)).outcome, 'not_pending');
        await store.consume(request.id, request.digest, now + 2);
        const after = await approve(request.id, BOB);
        assert.equal(after.outcome, 'not_pending');
        assert.equal(after.request?.state, 'consumed');
      });

      it('answers expired from expiresAt on, and the request stays expired', async () => {
        const request = await pending({ expiresAt: now + 1000 });
        const result = await approve(request.id, ALICE, now + 1000);
        assert.equal(result.outcome, 'expired');
        assert.equal(result.request?.state, 'expired');
        assert.deepEqual(result.request?.approvals, []);
        // Written down: even read at an earlier time, it no longer comes back as pending.
        assert.equal((await store.get(request.id, now))?.state, 'expired');
        assert.equal((await approve(request.id, BOB, now + 1)).outcome, 'not_pending');
      });

      it('counts exactly `required` approvals among 10 distinct approvers deciding at once, across replicas', async () => {
        const request = await pending({ required: 3 });
        const replicas = await Promise.all([1, 2].map(() => h.replica()));
        const all = [store, ...replicas];
        const outcomes = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (all[i % all.length] as ApprovalStore)
              .decide(request.id, {
                approver: `spiffe://example.org/human/h${i}`,
                approve: true,
                reason: 'ok',
                at: now + i,
              })
              .then((r) => r.outcome),
          ),
        );
        assert.deepEqual(outcomes.filter((o) => o !== 'not_pending').sort(), [
          'approved',
          'recorded',
          'recorded',
        ]);
        const stored = await store.get(request.id, now);
        assert.equal(stored?.state, 'approved');
        assert.equal(new Set(stored?.approvals.map((a) => a.approver)).size, 3);
      });
    });

    describe('consume', () => {
      it('spends an approved request once, recording consumedAt', async () => {
        const request = await approved();
        const consumed = await store.consume(request.id, request.digest, now + 7);
        assert.equal(consumed?.state, 'consumed');
        assert.equal(consumed?.consumedAt, now + 7);
        assert.deepEqual(await store.get(request.id, now + 8), consumed);
        assert.equal(await store.consume(request.id, request.digest, now + 8), undefined);
        assert.equal(await store.findOpenByDigest(request.digest, now + 8), undefined);
      });

      it('hands an approval to exactly one of 20 concurrent callers, across replicas', async () => {
        const request = await approved();
        const replicas = await Promise.all([1, 2, 3].map(() => h.replica()));
        const all = [store, ...replicas];
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            (all[i % all.length] as ApprovalStore).consume(request.id, request.digest, now + 10 + i),
          ),
        );
        const winners = results.filter((r) => r !== undefined);
        assert.equal(winners.length, 1);
        assert.deepEqual(await store.get(request.id, now), winners[0]);
      });

      it('refuses a different digest (a changed TTL needs a new approval) without spending it', async () => {
        const request = await approved();
        assert.equal(await store.consume(request.id, `${request.digest}-ttl-3600`, now + 2), undefined);
        assert.equal((await store.get(request.id, now + 2))?.state, 'approved');
        assert.equal((await store.consume(request.id, request.digest, now + 3))?.state, 'consumed');
      });

      it('refuses a pending, unknown or expired request', async () => {
        const waiting = await pending({ required: 2 });
        await approve(waiting.id, ALICE);
        assert.equal(await store.consume(waiting.id, waiting.digest, now + 20), undefined);
        assert.equal((await store.get(waiting.id, now + 20))?.state, 'pending');
        assert.equal(await store.consume('no-such-request', 'digest', now), undefined);

        const late = await approved({ expiresAt: now + 1000 });
        assert.equal(await store.consume(late.id, late.digest, now + 1000), undefined);
        assert.equal((await store.get(late.id, now))?.state, 'expired');
        assert.equal(await store.consume(late.id, late.digest, now + 2), undefined);
      });
    });

    describe('expiry', () => {
      it('reports a pending or approved request past expiresAt as expired, without a write', async () => {
        const waiting = await pending({ expiresAt: now + 1000 });
        const ready = await approved({ expiresAt: now + 1000 });
        for (const r of [waiting, ready]) {
          assert.equal((await store.get(r.id, now + 999))?.state, r === waiting ? 'pending' : 'approved');
          assert.equal((await store.get(r.id, now + 1000))?.state, 'expired');
        }
        assert.deepEqual(ids(await store.list({}, now + 999)), [waiting.id]);
        assert.deepEqual(await store.list({}, now + 1000), []);
        assert.deepEqual(
          ids(await store.list({ state: 'expired' }, now + 1000)).sort(),
          [waiting.id, ready.id].sort(),
        );
        assert.equal(await store.findOpenByDigest(waiting.digest, now + 1000), undefined);
        assert.equal(await store.findOpenByDigest(ready.digest, now + 1000), undefined);
        // Nothing was written: at an earlier time they are still open.
        assert.equal((await store.findOpenByDigest(ready.digest, now + 999))?.id, ready.id);
      });
    });

    describe('findOpenByDigest', () => {
      it('returns the newest open request for the digest, skipping consumed, denied and expired ones', async () => {
        const digest = 'sha256-of-the-request';
        const oldest = await pending({ digest, createdAt: now - 3000 });
        const older = await pending({ digest, createdAt: now - 2000 });
        const newer = await pending({ digest, createdAt: now - 1000 });
        const newest = await pending({ digest, createdAt: now - 500, expiresAt: now + 100 });
        await pending({ createdAt: now }); // another digest

        assert.equal((await store.findOpenByDigest(digest, now))?.id, newest.id);
        assert.equal((await store.findOpenByDigest(digest, now + 100))?.id, newer.id);

        await approve(newer.id, ALICE, now + 1);
        assert.equal((await store.findOpenByDigest(digest, now + 100))?.state, 'approved');
        await store.consume(newer.id, digest, now + 2);
        assert.equal((await store.findOpenByDigest(digest, now + 100))?.id, older.id);
        await store.decide(older.id, { approver: ALICE, approve: false, reason: 'no', at: now + 3 });
        assert.equal((await store.findOpenByDigest(digest, now + 100))?.id, oldest.id);
        assert.equal(await store.findOpenByDigest('no-such-digest', now), undefined);
      });
    });

    describe('list', () => {
      it('lists pending requests newest first by default, and filters by state and requester', async () => {
        const other = 'spiffe://example.org/agent/other';
        const p1 = await pending({ createdAt: now - 3000 });
        const p2 = await pending({ createdAt: now - 2000, requester: other });
        const p3 = await pending({ createdAt: now - 1000 });
        const a = await approved({ createdAt: now - 4000 });
        const d = await pending({ createdAt: now - 5000 });
        await store.decide(d.id, { approver: BOB, approve: false, reason: 'no', at: now });
        const c = await approved({ createdAt: now - 6000 });
        await store.consume(c.id, c.digest, now + 2);

        assert.deepEqual(ids(await store.list({}, now + 3)), [p3.id, p2.id, p1.id]);
        assert.deepEqual(ids(await store.list({ state: 'pending' }, now + 3)), [p3.id, p2.id, p1.id]);
        assert.deepEqual(ids(await store.list({ requester: REQUESTER }, now + 3)), [p3.id, p1.id]);
        assert.deepEqual(ids(await store.list({ requester: other }, now + 3)), [p2.id]);
        assert.deepEqual(ids(await store.list({ state: 'approved' }, now + 3)), [a.id]);
        assert.deepEqual(ids(await store.list({ state: 'denied' }, now + 3)), [d.id]);
        assert.deepEqual(ids(await store.list({ state: 'consumed' }, now + 3)), [c.id]);
        assert.deepEqual(await store.list({ state: 'expired' }, now + 3), []);
        assert.deepEqual(await store.list({ state: 'approved', requester: other }, now + 3), []);
        // `any`: every state, newest first.
        assert.deepEqual(ids(await store.list({ state: 'any' }, now + 3)), [
          p3.id,
          p2.id,
          p1.id,
          a.id,
          d.id,
          c.id,
        ]);
        assert.deepEqual(ids(await store.list({ state: 'any', requester: other }, now + 3)), [p2.id]);
        const [listed] = await store.list({ state: 'denied' }, now + 3);
        assert.deepEqual(listed, await store.get(d.id, now + 3));
      });
    });

    describe('countPending', () => {
      it('counts what list() reports pending: unexpired, undecided, unconsumed', async () => {
        assert.equal(await store.countPending(now), 0);
        const p1 = await pending({ createdAt: now - 3000 });
        await pending({ createdAt: now - 2000, requester: 'spiffe://example.org/agent/other' });
        const a = await approved({ createdAt: now - 4000 });
        const d = await pending({ createdAt: now - 5000 });
        await store.decide(d.id, { approver: BOB, approve: false, reason: 'no', at: now });
        const c = await approved({ createdAt: now - 6000 });
        await store.consume(c.id, c.digest, now + 2);
        await pending({ createdAt: now - 1000, expiresAt: now + 10 });

        assert.equal(await store.countPending(now + 3), 3);
        assert.equal(await store.countPending(now + 3), (await store.list({}, now + 3)).length);
        // From expiresAt on, a request is expired, not pending.
        assert.equal(await store.countPending(now + 10), 2);
        assert.equal(await store.countPending(p1.expiresAt), 0);
        assert.equal((await store.get(a.id, now + 3))?.state, 'approved');
      });

      it('refuses a malformed time', async () => {
        await rejectsWith(store.countPending(Number.NaN), 'INVALID_ARGUMENT', 'now');
      });
    });

    describe('retention', () => {
      let short: Harness<ApprovalStore>;
      beforeEach(async () => {
        short = await makeHarness({ retentionSeconds: 0 });
      });
      afterEach(async () => {
        await short.close();
      });

      it('drops a request once expiresAt + retention has passed, and unlists it', async () => {
        const s = short.store;
        const gone = makeRequest(now - 60_000, { expiresAt: now - 1000 });
        const kept = makeRequest(now - 60_000, { digest: gone.digest, expiresAt: now + 60_000 });
        await s.create(gone);
        await s.create(kept);
        assert.equal(await s.get(gone.id, now), undefined);
        assert.equal((await s.get(kept.id, now))?.state, 'pending');
        assert.deepEqual(ids(await s.list({ state: 'expired' }, now + 60_000)), [kept.id]);
        assert.deepEqual(ids(await s.list({}, now)), [kept.id]);
        assert.equal((await s.findOpenByDigest(gone.digest, now))?.id, kept.id);
      });
    });
  });
}

describeApprovalStoreContract('MemoryApprovalStore', memoryApprovals);
describeApprovalStoreContract('RedisApprovalStore', redisApprovals);
