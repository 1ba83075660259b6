import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerClient, type IssuedCredential } from '../../src/client/index.js';
import { packageRoot } from '../../src/package-root.js';
import { DEMO_AGENT, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

describe('integration: TypeScript SDK (svid-broker/client)', function () {
  this.timeout(30_000);
  let h: Harness;
  let client: BrokerClient;

  before(async () => {
    h = await startHarness();
    client = await BrokerClient.connect({ endpointSocket: h.endpoints.demo, address: h.address });
  });
  after(async () => {
    client?.close();
    await h?.close();
  });

  it('is the package entry point svid-broker/client, with types, built from src/client/index.ts', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
    };
    assert.equal(pkg.exports['./client']?.default, './dist/src/client/index.js');
    assert.equal(pkg.exports['./client']?.types, './dist/src/client/index.d.ts');
  });

  it('await using ends the task when the scope closes: its credential is revoked', async () => {
    let issued: IssuedCredential | undefined;
    let taskId = '';
    {
      await using task = await client.beginTask({ environment: 'dev', intent: 'sdk test' });
      taskId = task.id;
      assert.equal(task.info.agent, DEMO_AGENT);
      assert.ok(task.info.expiresAt instanceof Date);
      const result = await task.issue({ role: 'token/demo', justification: 'sdk' });
      assert.equal(result.status, 'issued');
      issued = result as IssuedCredential;
      assert.equal(issued.credential.kind, 'jwt');
      assert.ok(issued.expiresAt.getTime() > Date.now());
      assert.equal((await h.broker.store.getLease(issued.leaseId))?.state, 'active');
    }
    assert.equal((await h.broker.store.getLease(issued.leaseId))?.state, 'revoked');
    assert.equal((await h.broker.store.getTask(taskId))?.state, 'ended');
  });

  it('sends the agent context (camelCase in the SDK) on BeginTask and IssueCredential', async () => {
    const context = { toolName: 'sdk.fetch', sessionId: 'sdk-session', plan: 'read one page' };
    await using task = await client.beginTask({ environment: 'dev', context });
    const result = await task.issue({ role: 'token/demo', context: { ...context, toolCallId: 'c-1' } });
    assert.equal(result.status, 'issued');
    const audit = await readAudit(h.auditFile);
    const recorded = { tool_name: 'sdk.fetch', session_id: 'sdk-session', plan: 'read one page' };
    const begun = audit.find((r) => r.type === 'task.begun' && r.task === task.id);
    assert.deepEqual(begun?.context, { ...recorded, asserted_by: 'agent' });
    const issued = audit.find((r) => r.type === 'credential.issued' && r.task === task.id);
    assert.deepEqual(issued?.context, { ...recorded, tool_call_id: 'c-1', asserted_by: 'agent' });
  });

  it('a task ended explicitly is not ended twice on dispose; a pending request is typed as such', async () => {
    {
      await using task = await client.beginTask({ environment: 'prod', intent: 'deploy' });
      const pending = await task.issue({
        role: 'token/deploy',
        changeType: 'destructive',
        justification: 'roll out',
      });
      assert.equal(pending.status, 'pending_approval');
      if (pending.status === 'pending_approval') {
        assert.match(pending.approvalId, /^[0-9a-f-]{36}$/);
        assert.equal(pending.approvalsRequired, 1);
        assert.ok(pending.approvalExpiresAt instanceof Date);
      }
      const ended = await task.end('done');
      assert.equal(ended.task?.state, 'ended');
    }
  });

  it('refusals keep their gRPC status and message; BeginTask is not retried', async () => {
    await assert.rejects(
      client.beginTask({ environment: 'nowhere' }),
      (err: { code: number; details: string }) => err.code === 3 && /environment/.test(err.details),
    );
  });
});
