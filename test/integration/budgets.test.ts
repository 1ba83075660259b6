import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { DEMO_AGENT, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const REASON = 'x-svid-broker-reason';

const BUDGETS = {
  groups: { agents: { credentialsPerMinute: 3, activeLeases: 5, openTasks: 2 } },
  task: { activeLeases: 2 },
};

async function exceeded(h: Harness, limit: string): Promise<Array<Record<string, unknown>>> {
  return (await readAudit(h.auditFile)).filter(
    (r) => r.type === 'budget.exceeded' && r.budget_limit === limit,
  );
}

describe('integration: budgets shared by two brokers on one Redis', function () {
  this.timeout(30_000);
  let a: Harness;
  let b: Harness;
  let demoA: BrokerClient;
  let demoB: BrokerClient;

  before(async () => {
    a = await startHarness({ config: { budgets: BUDGETS } });
    b = await startHarness({ config: { budgets: BUDGETS }, redisPrefix: a.redisPrefix });
    [demoA, demoB] = await Promise.all([a.client('demo'), b.client('demo')]);
  });
  after(async () => {
    await b?.close();
    await a?.close();
  });

  it('openTasks: two open tasks (one per broker) fill the group; ending one frees a place', async () => {
    const t1 = await demoA.beginTask({ environment: 'dev', intent: 'one' });
    const t2 = await demoB.beginTask({ environment: 'dev', intent: 'two' });

    for (const [h, client] of [
      [a, demoA],
      [b, demoB],
    ] as const) {
      const err = await grpcError(client.beginTask({ environment: 'dev', intent: 'three' }));
      assert.equal(err.code, status.RESOURCE_EXHAUSTED);
      assert.equal(err.metadata[REASON], 'budget_exceeded');
      assert.match(err.details, /openTasks for group:agents is 2/);
      const records = await exceeded(h, 'openTasks');
      assert.equal(records.length, 1);
      assert.equal(records[0]?.agent, DEMO_AGENT);
      assert.equal(records[0]?.budget_scope, 'group:agents');
      assert.equal(records[0]?.budget_max, 2);
    }
    // The refused BeginTask left no task behind.
    const begun = [...(await readAudit(a.auditFile)), ...(await readAudit(b.auditFile))].filter(
      (r) => r.type === 'task.begun',
    );
    assert.equal(begun.length, 2);

    await demoA.endTask({ task_id: t1.task_id });
    const t3 = await demoB.beginTask({ environment: 'dev', intent: 'three, after one ended' });
    assert.equal(t3.state, 'active');
    await demoA.endTask({ task_id: t2.task_id });
    await demoB.endTask({ task_id: t3.task_id });
  });

  it('credentialsPerMinute: issuances on either broker count against one limit; a refusal leaves nothing', async () => {
    const t1 = await demoA.beginTask({ environment: 'dev' });
    const t2 = await demoB.beginTask({ environment: 'dev' });
    const issued = [
      await demoA.issueCredential({ task_id: t1.task_id, role: 'token/demo' }),
      await demoB.issueCredential({ task_id: t1.task_id, role: 'token/demo' }),
      await demoB.issueCredential({ task_id: t2.task_id, role: 'token/demo' }),
    ];
    assert.deepEqual(
      issued.map((i) => i.status),
      ['ISSUED', 'ISSUED', 'ISSUED'],
    );

    for (const [h, client] of [
      [a, demoA],
      [b, demoB],
    ] as const) {
      const err = await grpcError(client.issueCredential({ task_id: t2.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.RESOURCE_EXHAUSTED);
      assert.equal(err.metadata[REASON], 'budget_exceeded');
      assert.match(err.details, /credentialsPerMinute for group:agents is 3/);
      const records = await exceeded(h, 'credentialsPerMinute');
      assert.equal(records.length, 1);
      assert.equal(records[0]?.task, t2.task_id);
      assert.equal(records[0]?.role, 'token/demo');
    }
    // No lease and no credential for the refused requests.
    assert.equal((await a.broker.store.listLeases({ taskId: t2.task_id })).length, 1);
    const issuedRecords = [...(await readAudit(a.auditFile)), ...(await readAudit(b.auditFile))].filter(
      (r) => r.type === 'credential.issued',
    );
    assert.equal(issuedRecords.length, 3);
    await demoA.endTask({ task_id: t1.task_id });
    await demoA.endTask({ task_id: t2.task_id });
  });
});

describe('integration: budgets per task and for active leases', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;

  before(async () => {
    h = await startHarness({
      config: {
        budgets: {
          groups: { agents: { credentialsPerMinute: 100, activeLeases: 5 } },
          task: { activeLeases: 2 },
        },
      },
    });
    demo = await h.client('demo');
  });
  after(async () => {
    await h?.close();
  });

  it('a task holds at most two active leases, the group five; revoking returns the places', async () => {
    const issue = (taskId: string) => demo.issueCredential({ task_id: taskId, role: 'token/demo' });
    const t1 = await demo.beginTask({ environment: 'dev' });
    await issue(t1.task_id);
    await issue(t1.task_id);
    const third = await grpcError(issue(t1.task_id));
    assert.equal(third.code, status.RESOURCE_EXHAUSTED);
    assert.equal(third.metadata[REASON], 'budget_exceeded');
    assert.match(third.details, new RegExp(`activeLeases for task:${t1.task_id} is 2`));
    assert.equal((await h.broker.store.listLeases({ taskId: t1.task_id })).length, 2);
    const record = (await exceeded(h, 'activeLeases')).find((r) => r.task === t1.task_id);
    assert.equal(record?.budget_scope, `task:${t1.task_id}`);
    assert.equal(record?.budget_current, 2);

    // Other tasks still have room, up to the group's five active leases.
    const t2 = await demo.beginTask({ environment: 'dev' });
    const t3 = await demo.beginTask({ environment: 'dev' });
    await issue(t2.task_id);
    await issue(t2.task_id);
    await issue(t3.task_id);
    const sixth = await grpcError(issue(t3.task_id));
    assert.equal(sixth.code, status.RESOURCE_EXHAUSTED);
    assert.match(sixth.details, /activeLeases for group:agents is 5/);
    assert.equal((await h.broker.store.listLeases({ taskId: t3.task_id })).length, 1);

    // Ending a task revokes its leases and gives their places back.
    const ended = await demo.endTask({ task_id: t1.task_id });
    assert.equal(ended.revoked.length, 2);
    const after = await issue(t3.task_id);
    assert.equal(after.status, 'ISSUED');
    await demo.endTask({ task_id: t2.task_id });
    await demo.endTask({ task_id: t3.task_id });
  });
});
