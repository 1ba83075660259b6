/**
 * What an unauthenticated or greedy caller may cost the broker: a flood of bad bearers writes a
 * bounded number of audit records (the first in full, then a count per window), a peer that keeps
 * failing authentication is refused before its credentials are verified, and one caller cannot
 * hold more than N AwaitApproval streams open.
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { GRPC_SERVER_DEFAULTS } from '../../src/config/grpc-server-config.js';
import { grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const REASON = 'x-svid-broker-reason';
const garbage = (h: Harness): Promise<BrokerClient> =>
  h.client('demo', { auth: { kind: 'jwt', token: () => 'not.a.jwt' } });

describe('integration: open surfaces', function () {
  this.timeout(60_000);

  describe('a flood of bad bearers', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: {
          grpc: { ...GRPC_SERVER_DEFAULTS, authFailureBurst: 100_000, authDeniedWindowSeconds: 3600 },
        },
      });
    });
    after(async () => h?.close());

    it('writes the first denial per peer and reason in full, then one record with the count', async () => {
      const before = (await readAudit(h.auditFile)).length;
      const client = await garbage(h);
      const CALLS = 150;
      for (let i = 0; i < CALLS; i++) {
        const method =
          i % 3 === 0
            ? client.getTask({ task_id: '00000000-0000-4000-8000-000000000000' })
            : client.beginTask({ environment: 'dev' });
        const err = await grpcError(method);
        assert.equal(err.code, status.UNAUTHENTICATED);
      }
      const during = (await readAudit(h.auditFile)).slice(before).filter((r) => r.type === 'auth.denied');
      assert.equal(during.length, 1, 'one full record while the window is open');
      const first = during[0] as Record<string, unknown>;
      assert.equal(first.method, 'GetTask');
      assert.match(String(first.peer), /^(::ffff:)?127\.0\.0\.1:\d+$/);
      assert.equal(typeof first.message, 'string');

      // Closing ends the window: the count is written before the trail closes.
      await h.broker.close();
      const denied = (await readAudit(h.auditFile)).slice(before).filter((r) => r.type === 'auth.denied');
      assert.equal(denied.length, 2);
      const aggregate = denied[1] as Record<string, unknown>;
      assert.equal(aggregate.aggregate, true);
      assert.equal(aggregate.peer, '127.0.0.1');
      assert.equal(aggregate.reason, first.reason);
      assert.equal(aggregate.count, CALLS - 1);
      assert.deepEqual(aggregate.methods, { GetTask: CALLS / 3 - 1, BeginTask: (CALLS * 2) / 3 });
      assert.ok(Date.parse(String(aggregate.window_start)) <= Date.parse(String(aggregate.window_end)));
    });
  });

  describe('the per-peer limit on failed authentications', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: { grpc: { ...GRPC_SERVER_DEFAULTS, authFailureBurst: 5, authFailuresPerSecond: 0.001 } },
      });
    });
    after(async () => h?.close());

    it('refuses the peer with RESOURCE_EXHAUSTED before verifying what it presents', async () => {
      const client = await garbage(h);
      for (let i = 0; i < 5; i++) {
        assert.equal(
          (await grpcError(client.beginTask({ environment: 'dev' }))).code,
          status.UNAUTHENTICATED,
        );
      }
      const refused = await grpcError(client.beginTask({ environment: 'dev' }));
      assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
      assert.equal(refused.metadata[REASON], 'rate_limited');
      // Refused before authentication: a valid SVID from the same address is turned away too.
      const valid = await grpcError((await h.client('demo')).beginTask({ environment: 'dev' }));
      assert.equal(valid.code, status.RESOURCE_EXHAUSTED);
      assert.equal(valid.metadata[REASON], 'rate_limited');
    });
  });

  describe('AwaitApproval streams per caller', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({
        config: { grpc: { ...GRPC_SERVER_DEFAULTS, maxAwaitApprovalStreamsPerCaller: 2 } },
      });
    });
    after(async () => h?.close());

    it('refuses the third open stream of one caller, and frees a slot when a stream ends', async () => {
      const demo = await h.client('demo');
      const security = await h.adminClient('security');
      const task = await demo.beginTask({ environment: 'prod', intent: 'deploy the release' });
      const pending = await demo.issueCredential({
        task_id: task.task_id,
        role: 'token/deploy',
        change_type: 'destructive',
        justification: 'roll out v2',
      });
      assert.equal(pending.status, 'PENDING_APPROVAL');
      // A stream reports progress once it is past the cap, so both hold a slot before the third asks.
      const open = (): { result: ReturnType<typeof grpcError>; started: Promise<void> } => {
        let started!: () => void;
        const startedP = new Promise<void>((resolve) => (started = resolve));
        const result = grpcError(demo.awaitApproval(pending.approval_id, () => started(), 20_000));
        return { result, started: startedP };
      };
      const first = open();
      const second = open();
      await Promise.all([first.started, second.started]);
      const third = await grpcError(demo.awaitApproval(pending.approval_id, undefined, 20_000));
      assert.equal(third.code, status.RESOURCE_EXHAUSTED);
      assert.equal(third.metadata[REASON], 'too_many_streams');

      await security.decideApproval({ approval_id: pending.approval_id, approve: false, reason: 'not now' });
      for (const s of [first, second]) assert.equal((await s.result).code, status.PERMISSION_DENIED);
      // Both slots are free again: the next wait is answered on its merits (the denial).
      const later = await grpcError(demo.awaitApproval(pending.approval_id, undefined, 20_000));
      assert.equal(later.code, status.PERMISSION_DENIED);
    });
  });
});
