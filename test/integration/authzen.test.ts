import { strict as assert } from 'node:assert';
import { request } from 'node:https';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { X509Source } from '../../src/identity/workload-api.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { DEMO_AGENT, OTHER_AGENT, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const GATEWAY = 'spiffe://example.org/gateways/mcp';

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

const TRACE = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('integration: AuthZEN decision point (POST /access/v1/evaluation[s])', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;
  const sources: X509Source[] = [];

  before(async () => {
    h = await startHarness({
      workloads: { gateway: { spiffeId: GATEWAY } },
      config: { authzen: { listen: '127.0.0.1:0' } },
    });
    demo = await h.client('demo');
  });
  after(async () => {
    for (const s of sources) s.close();
    await h?.close();
  });

  /** A plain node:https client presenting the workload's SVID, as a gateway would. */
  const post = async (
    workload: string | undefined,
    path: string,
    body: unknown,
    extraHeaders = {},
  ): Promise<HttpResult> => {
    let cert: string | undefined;
    let key: string | undefined;
    const brokerSource = await X509Source.create({
      endpoint: h.endpoints[workload ?? 'demo'] as string,
      timeoutMs: 5000,
    });
    sources.push(brokerSource);
    const svid = brokerSource.getX509Svid();
    if (workload) {
      cert = svid.certChain.map((d) => derToPem(d)).join('');
      key = derToPem(svid.privateKey, 'PRIVATE KEY');
    }
    const ca = brokerSource
      .getX509BundleForTrustDomain('example.org')
      ?.authorities.map((d) => derToPem(d))
      .join('');
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: h.broker.authzenPort,
          path,
          method: 'POST',
          ca,
          cert,
          key,
          // The broker is identified by its SPIFFE ID, not a host name.
          checkServerIdentity: (_host, peer) =>
            peer.subjectaltname === 'URI:spiffe://example.org/broker'
              ? undefined
              : new Error('not the broker'),
          headers: { 'content-type': 'application/json', ...extraHeaders },
        },
        (res) => {
          let data = '';
          res.on('data', (d: Buffer) => (data += d.toString('utf8')));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: JSON.parse(data) as Record<string, unknown>,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(text);
    });
  };

  const demoTask = async (environment = 'dev'): Promise<string> =>
    (await demo.beginTask({ environment, intent: 'use tools' })).task_id;

  it('permits a read tool call in the agent task, denies outside a task, and audits each decision', async () => {
    const taskId = await demoTask();
    // The shape of the spec's example: subject, action, resource, context.
    const ok = await post(
      'gateway',
      '/access/v1/evaluation',
      {
        subject: { type: 'agent', id: DEMO_AGENT },
        action: { name: 'call' },
        resource: { type: 'tool', id: 'search_logs' },
        context: { task_id: taskId, change_type: 'read' },
      },
      { 'X-Request-ID': 'req-1', traceparent: TRACE },
    );
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.decision, true);
    assert.deepEqual((ok.body.context as { policy_ids: string[] }).policy_ids, [
      'agents-may-call-read-tools-in-a-task',
    ]);
    assert.equal(ok.headers['x-request-id'], 'req-1');

    const noTask = await post('gateway', '/access/v1/evaluation', {
      subject: { type: 'agent', id: DEMO_AGENT },
      action: { name: 'call' },
      resource: { type: 'tool', id: 'search_logs' },
    });
    assert.equal(noTask.body.decision, false);

    const audit = await readAudit(h.auditFile);
    const records = audit.filter((r) => r.type === 'access.evaluated' && r.tool === 'search_logs');
    assert.equal(records.length, 2);
    assert.equal(records[0]?.gateway, GATEWAY);
    assert.equal(records[0]?.agent, DEMO_AGENT);
    assert.equal(records[0]?.decision, true);
    assert.equal(records[1]?.decision, false);
    // The gateway's W3C traceparent is recorded on the decision it asked for, and only there.
    assert.equal(records[0]?.traceparent, TRACE);
    assert.equal('traceparent' in (records[1] ?? {}), false);
  });

  it('answers approval_required as an obligation in the context for a call that changes something', async () => {
    const taskId = await demoTask();
    const res = await post('gateway', '/access/v1/evaluation', {
      subject: { type: 'agent', id: DEMO_AGENT },
      action: { name: 'call' },
      resource: { type: 'tool', id: 'restart_service' },
      context: { task_id: taskId, change_type: 'destructive' },
    });
    assert.equal(res.body.decision, false);
    const ctx = res.body.context as Record<string, unknown>;
    assert.equal(ctx.approval_required, 1);
    assert.deepEqual(ctx.policy_ids, ['tool-writes-need-approval']);
  });

  it("another agent naming demo's task is denied (task_not_yours)", async () => {
    const taskId = await demoTask();
    const res = await post('gateway', '/access/v1/evaluation', {
      subject: { type: 'agent', id: OTHER_AGENT },
      action: { name: 'call' },
      resource: { type: 'tool', id: 'search_logs' },
      context: { task_id: taskId },
    });
    assert.deepEqual(res.body, { decision: false, context: { reason: 'task_not_yours' } });
  });

  it('evaluations: defaults, per-item overrides and the three semantics', async () => {
    const taskId = await demoTask();
    const base = {
      subject: { type: 'agent', id: DEMO_AGENT },
      action: { name: 'call' },
      context: { task_id: taskId },
      evaluations: [
        { resource: { type: 'tool', id: 'read_a' } },
        { resource: { type: 'tool', id: 'write_b' }, context: { task_id: taskId, change_type: 'write' } },
        { resource: { type: 'tool', id: 'read_c' } },
      ],
    };
    const all = await post('gateway', '/access/v1/evaluations', base);
    assert.deepEqual(
      (all.body.evaluations as Array<{ decision: boolean }>).map((e) => e.decision),
      [true, false, true],
    );
    const denyFirst = await post('gateway', '/access/v1/evaluations', {
      ...base,
      options: { evaluations_semantic: 'deny_on_first_deny' },
    });
    assert.deepEqual(
      (denyFirst.body.evaluations as Array<{ decision: boolean }>).map((e) => e.decision),
      [true, false],
    );
    const permitFirst = await post('gateway', '/access/v1/evaluations', {
      ...base,
      options: { evaluations_semantic: 'permit_on_first_permit' },
    });
    assert.deepEqual(
      (permitFirst.body.evaluations as Array<{ decision: boolean }>).map((e) => e.decision),
      [true],
    );
  });

  it('refuses callers without an SVID (401) or without EvaluateAccess (403), and bad input (400 naming the field)', async () => {
    const q = {
      subject: { type: 'agent', id: DEMO_AGENT },
      action: { name: 'call' },
      resource: { type: 'tool', id: 't' },
    };
    const anonymous = await post(undefined, '/access/v1/evaluation', q);
    assert.equal(anonymous.status, 401);
    const agent = await post('demo', '/access/v1/evaluation', q);
    assert.equal(agent.status, 403);
    assert.match(agent.body.error as string, /EvaluateAccess/);
    const bad = await post('gateway', '/access/v1/evaluation', {
      ...q,
      subject: { type: 'agent', id: 'alice' },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.field, 'subject.id');
    const notJson = await post('gateway', '/access/v1/evaluation', '{nope');
    assert.equal(notJson.status, 400);
    assert.doesNotMatch(JSON.stringify([anonymous.body, agent.body, bad.body, notJson.body]), /\bat \//);
  });
});
