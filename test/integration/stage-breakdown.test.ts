/**
 * The bench's stage breakdown reads the code's own steps: one IssueCredential through a broker
 * with a StageClock passes every step of the pipeline once, in order, under its function's name.
 * And the hot path as it was before (whole-set Cedar, the three-evaluation gate, jose signing),
 * which the bench measures beside it, still issues verifiable credentials with the same decision.
 */
import { strict as assert } from 'node:assert';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { StageClock } from '../../src/observability/stage-timer.js';
import { startHarness, type Harness } from '../support/broker-harness.js';

/** The steps of one issued IssueCredential, in the order they run. */
const ISSUANCE_STEPS = [
  'authenticate',
  'validateIssue',
  'loadTask',
  'screen',
  'readGrants',
  'decide',
  'reserveBudget',
  'mint',
  'recordPendingLease',
  'recordIssued',
  'activate',
  'lastLook',
  'respond',
];

describe('stage breakdown of IssueCredential', () => {
  const harnesses: Harness[] = [];
  after(async () => {
    for (const h of harnesses.splice(0)) await h.close();
  });

  it('times every step of the pipeline once, by its name, in order', async () => {
    const clock = new StageClock();
    const h = await startHarness({ measure: { stageTimer: clock } });
    harnesses.push(h);
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'stages' });
    clock.reset();
    await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const { stages } = clock.snapshot();
    assert.deepEqual(
      stages.map((s) => s.stage),
      ISSUANCE_STEPS,
    );
    for (const s of stages) {
      assert.equal(s.count, 1, s.stage);
      assert.ok(Number.isFinite(s.cpuUs) && s.cpuUs >= 0, s.stage);
      assert.ok(Number.isFinite(s.wallUs) && s.wallUs >= 0, s.stage);
    }
  });

  for (const previousHotPath of [false, true]) {
    it(`issues a verifiable credential on the ${previousHotPath ? 'previous' : 'current'} hot path`, async () => {
      const h = await startHarness({ measure: { previousHotPath } });
      harnesses.push(h);
      const client = await h.client('demo');
      const task = await client.beginTask({ environment: 'dev', intent: 'hot path' });
      const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.deepEqual(issued.policy_ids, ['demo-agent-token-demo-dev']);
      const jwks = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
      const { payload } = await jwtVerify(issued.credential?.token ?? '', createLocalJWKSet(jwks));
      assert.equal(payload.jti, issued.lease_id);
      // A denial names the same forbid either way (the previous path probes it; the current one reads it).
      const err = await client.issueCredential({ task_id: task.task_id, role: 'token/deploy' }).then(
        () => undefined,
        (e: unknown) => e as { details?: string },
      );
      assert.match(err?.details ?? '', /not allowed in this environment/);
    });
  }
});
