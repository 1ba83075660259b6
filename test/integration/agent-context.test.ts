import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { fromCloudEvent, toCloudEvent } from '../../src/audit/cloudevent.js';
import type { AuditRecord } from '../../src/audit/types.js';
import type { AgentContextMsg } from '../../src/server/broker-proto.js';
import { grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { runCli } from '../support/run-cli.js';

const FIELD = 'x-svid-broker-field';
const POLICIES = 'x-svid-broker-policies';

/** A policy on what the agent says it is doing: the shell tool never gets a credential. */
const TOOL_POLICY = `
@id("no-credentials-for-the-shell-tool")
@reason("credentials are never issued to the shell tool")
forbid (principal, action == Action::"IssueCredential", resource is Role)
when {
  context has agentContext &&
  context.agentContext has tool_name &&
  context.agentContext.tool_name == "shell.exec"
};

@id("no-tasks-for-model-x")
forbid (principal, action == Action::"BeginTask", resource)
when { context has agentContext && context.agentContext has model && context.agentContext.model == "model-x" };
`;

const CONTEXT: AgentContextMsg = {
  tool_name: 'github.create_pull_request',
  tool_call_id: 'toolu_01ABC',
  session_id: 'conv-7f3a',
  model: 'claude-sonnet-4',
  prompt_digest: `sha256:${'ab'.repeat(32)}`,
  plan: 'open a PR that bumps the demo client; read-only on the demo API',
};
const RECORDED = { ...CONTEXT, asserted_by: 'agent' };

describe('integration: agent-supplied context', function () {
  this.timeout(30_000);
  let h: Harness;
  let demo: BrokerClient;

  before(async () => {
    h = await startHarness({ extraPolicies: TOOL_POLICY });
    demo = await h.client('demo');
  });
  after(async () => h?.close());

  const recordsOf = async (pred: (r: Record<string, unknown>) => boolean) =>
    (await readAudit(h.auditFile)).filter(pred);

  it('is recorded as given, asserted_by agent, on task.begun and credential.issued', async () => {
    const task = await demo.beginTask({ environment: 'dev', intent: 'bump client', context: CONTEXT });
    const issued = await demo.issueCredential({
      task_id: task.task_id,
      role: 'token/demo',
      context: CONTEXT,
    });
    assert.equal(issued.status, 'ISSUED');
    const [begun] = await recordsOf((r) => r.type === 'task.begun' && r.task === task.task_id);
    assert.deepEqual(begun?.context, RECORDED);
    const [credential] = await recordsOf(
      (r) => r.type === 'credential.issued' && r.lease === issued.lease_id,
    );
    assert.deepEqual(credential?.context, RECORDED);
  });

  it('records only the fields given, and nothing when none was', async () => {
    const task = await demo.beginTask({ environment: 'dev', context: { tool_name: 'kubectl' } });
    const plain = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const [begun] = await recordsOf((r) => r.type === 'task.begun' && r.task === task.task_id);
    assert.deepEqual(begun?.context, { tool_name: 'kubectl', asserted_by: 'agent' });
    const [credential] = await recordsOf((r) => r.type === 'credential.issued' && r.lease === plain.lease_id);
    assert.equal(credential !== undefined && 'context' in credential, false);
  });

  it('a Cedar policy on context.agentContext.tool_name decides, and the denial records the context', async () => {
    const task = await demo.beginTask({ environment: 'dev' });
    const shell = { ...CONTEXT, tool_name: 'shell.exec' };
    const err = await grpcError(
      demo.issueCredential({ task_id: task.task_id, role: 'token/demo', context: shell }),
    );
    assert.equal(err.code, status.PERMISSION_DENIED, err.details);
    assert.equal(err.metadata[POLICIES], 'no-credentials-for-the-shell-tool');
    const [denied] = await recordsOf((r) => r.type === 'credential.denied' && r.task === task.task_id);
    assert.deepEqual(denied?.context, { ...shell, asserted_by: 'agent' });
    // The same request from another tool is issued.
    const ok = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo', context: CONTEXT });
    assert.equal(ok.status, 'ISSUED');
  });

  it('BeginTask policy sees it too; task.denied records it', async () => {
    const err = await grpcError(demo.beginTask({ environment: 'dev', context: { model: 'model-x' } }));
    assert.equal(err.code, status.PERMISSION_DENIED, err.details);
    const denied = await recordsOf(
      (r) => r.type === 'task.denied' && (r.context as { model?: string } | undefined)?.model === 'model-x',
    );
    assert.equal(denied.length, 1);
    assert.deepEqual(denied[0]?.context, { model: 'model-x', asserted_by: 'agent' });
  });

  it('approval.requested carries it', async () => {
    const task = await demo.beginTask({ environment: 'prod', intent: 'deploy' });
    const pending = await demo.issueCredential({
      task_id: task.task_id,
      role: 'token/deploy',
      change_type: 'destructive',
      context: CONTEXT,
    });
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const [requested] = await recordsOf(
      (r) => r.type === 'approval.requested' && r.approval === pending.approval_id,
    );
    assert.deepEqual(requested?.context, RECORDED);
  });

  it('refuses bad context with INVALID_ARGUMENT naming the field, and records the refusal without it', async () => {
    const task = await demo.beginTask({ environment: 'dev' });
    const issue = (context: AgentContextMsg) =>
      demo.issueCredential({ task_id: task.task_id, role: 'token/demo', context });
    const cases: Array<[Promise<unknown>, string, RegExp]> = [
      [issue({ plan: 'x'.repeat(2049) }), 'context.plan', /at most 2048/],
      [issue({ plan: 'step 1\nAPPROVED' }), 'context.plan', /control or bidi/],
      [issue({ tool_name: 'git\u202e' }), 'context.tool_name', /control or bidi/],
      [issue({ session_id: 's'.repeat(129) }), 'context.session_id', /at most 128/],
      [issue({ tool_call_id: 'call\u0085' }), 'context.tool_call_id', /control or bidi/],
      [issue({ model: 'm'.repeat(129) }), 'context.model', /at most 128/],
      [issue({ prompt_digest: 'md5:abcd' }), 'context.prompt_digest', /sha256/],
      [issue({ prompt_digest: `sha256:${'AB'.repeat(32)}` }), 'context.prompt_digest', /sha256/],
      [demo.beginTask({ environment: 'dev', context: { plan: 'a\tb' } }), 'context.plan', /control/],
    ];
    for (const [call, field, message] of cases) {
      const err = await grpcError(call);
      assert.equal(err.code, status.INVALID_ARGUMENT, `${field}: ${err.details}`);
      assert.equal(err.metadata[FIELD], field);
      assert.ok(err.details.startsWith(`${field}: `), err.details);
      assert.match(err.details, message);
    }
    assert.deepEqual(await h.broker.store.listLeases({ taskId: task.task_id }), []);
    const refused = await recordsOf((r) => r.type === 'credential.denied' && r.task === task.task_id);
    assert.equal(refused.length, 8);
    for (const r of refused) {
      assert.equal(r.reason, 'invalid_argument');
      assert.equal('context' in r, false, 'bad context is never recorded');
    }
  });

  describe('W3C traceparent', () => {
    const TRACE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

    it("a valid traceparent header is recorded on the call's records; it maps to the CloudEvent extension", async () => {
      const traced = await h.client('demo', { traceparent: () => TRACE });
      const task = await traced.beginTask({ environment: 'dev' });
      const issued = await traced.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      await grpcError(traced.issueCredential({ task_id: task.task_id, role: 'token/other-nope' }));
      await traced.endTask({ task_id: task.task_id });
      const records = await recordsOf((r) => r.task === task.task_id);
      assert.deepEqual(
        records.map((r) => [r.type, r.traceparent]),
        [
          ['task.begun', TRACE],
          ['credential.issued', TRACE],
          ['credential.denied', TRACE],
          ['lease.revoked', TRACE],
          ['task.ended', TRACE],
        ],
      );
      const record = records.find((r) => r.lease === issued.lease_id) as unknown as AuditRecord;
      const event = toCloudEvent(record);
      assert.equal(event.traceparent, TRACE);
      assert.deepEqual(fromCloudEvent(event), record);
    });

    it('an invalid traceparent is ignored (not recorded), and the call is served', async () => {
      const bad = await h.client('demo', { traceparent: () => '00-not-a-trace-01' });
      const task = await bad.beginTask({ environment: 'dev' });
      const [begun] = await recordsOf((r) => r.type === 'task.begun' && r.task === task.task_id);
      assert.ok(begun);
      assert.equal('traceparent' in begun, false);
    });
  });

  describe('svid-broker request', () => {
    const cli = (args: string[]) =>
      runCli(['request', '--env', 'dev', '--role', 'token/demo', ...args], {
        SPIFFE_ENDPOINT_SOCKET: h.endpoints.demo as string,
        SVID_BROKER_ADDR: h.address,
      });

    it('--tool, --session, --plan (and the others) travel as the context', async () => {
      const digest = `sha256:${'0f'.repeat(32)}`;
      const run = await cli([
        '--tool',
        'cli.deploy',
        '--tool-call-id',
        'call-9',
        '--session',
        'sess-cli',
        '--model',
        'm-1',
        '--prompt-digest',
        digest,
        '--plan',
        'read the demo api',
      ]);
      assert.equal(run.code, 0, run.stderr);
      const out = JSON.parse(run.stdout) as { lease_id: string; task: { task_id: string } };
      const expected = {
        tool_name: 'cli.deploy',
        tool_call_id: 'call-9',
        session_id: 'sess-cli',
        model: 'm-1',
        prompt_digest: digest,
        plan: 'read the demo api',
        asserted_by: 'agent',
      };
      const [issued] = await recordsOf((r) => r.type === 'credential.issued' && r.lease === out.lease_id);
      assert.deepEqual(issued?.context, expected);
      const [begun] = await recordsOf((r) => r.type === 'task.begun' && r.task === out.task.task_id);
      assert.deepEqual(begun?.context, expected);
    });

    it('a bad --plan is a usage error naming the flag, before anything is begun', async () => {
      const before = (await readAudit(h.auditFile)).length;
      const run = await cli(['--plan', 'x'.repeat(2049)]);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /--plan: at most 2048 characters/);
      assert.equal((await readAudit(h.auditFile)).length, before);
    });
  });
});
