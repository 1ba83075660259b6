import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import { DEMO_AGENT, grpcError, startHarness, type Harness } from '../support/broker-harness.js';

describe('integration: smoke', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  it('issues a token/demo credential over mTLS and over a JWT-SVID', async () => {
    for (const client of [await h.client('demo'), await h.jwtClient('demo')]) {
      const task = await client.beginTask({ environment: 'dev', intent: 'smoke' });
      assert.equal(task.agent, DEMO_AGENT);
      const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.equal(issued.credential?.kind, 'jwt');
      assert.deepEqual(issued.policy_ids, ['demo-agent-token-demo-dev']);
    }
  });

  it('refuses a caller with neither certificate nor token', async () => {
    const client = await h.client('demo', { auth: { kind: 'jwt', token: () => 'not-a-jwt' } });
    const err = await grpcError(client.beginTask({ environment: 'dev' }));
    assert.equal(err.code, status.UNAUTHENTICATED);
  });
});
