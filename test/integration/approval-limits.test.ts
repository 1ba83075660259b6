/**
 * Approval requests cost the agent what an issuance costs: they count against credentialsPerMinute,
 * and an agent or a task can hold only so many open requests, so approvers cannot be flooded.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

const deploy = (taskId: string, n: number) => ({
  task_id: taskId,
  role: 'token/deploy',
  change_type: 'destructive',
  // A different justification is a different request (its own digest), so each one is new.
  justification: `roll out v${n}`,
});

describe('integration: approval requests under budgets and caps', function () {
  this.timeout(60_000);

  describe('credentialsPerMinute', () => {
    let h: Harness;
    let demo: BrokerClient;
    before(async () => {
      h = await startHarness({
        config: {
          budgets: { groups: { agents: { credentialsPerMinute: 5 } } },
          approvals: { maxOpenPerAgent: 0, maxOpenPerTask: 0 },
        },
      });
      demo = await h.client('demo');
    });
    after(() => h?.close());

    it('counts each new approval request, so a flood stops at the budget', async () => {
      const taskId = (await demo.beginTask({ environment: 'prod', intent: 'deploy' })).task_id;
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, n) => demo.issueCredential(deploy(taskId, n))),
      );
      const parked = results.filter((r) => r.status === 'fulfilled');
      assert.equal(parked.length, 5, 'five requests in the minute, as the budget says');
      for (const r of parked) assert.equal(r.value.status, 'PENDING_APPROVAL');
      const refused = results.find((r) => r.status === 'rejected');
      const err = await grpcError(Promise.reject(refused?.reason));
      assert.equal(err.code, status.RESOURCE_EXHAUSTED);
      assert.equal(err.metadata['x-svid-broker-reason'], 'budget_exceeded');
      const list = await (await h.adminClient('security')).listApprovals({});
      assert.equal(list.approvals.length, 5, 'approvers see only what the budget let through');
      // Asking again for an open request costs nothing: it answers with the one already open.
      const open = list.approvals[0];
      const n = Number(/v(\d+)$/.exec(open?.justification ?? '')?.[1]);
      const again = await demo.issueCredential(deploy(taskId, n));
      assert.equal(again.status, 'PENDING_APPROVAL');
      assert.equal(again.approval_id, open?.approval_id);
    });
  });

  describe('ListApprovals pages', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({ config: { approvals: { maxOpenPerAgent: 0, maxOpenPerTask: 0 } } });
      const demo = await h.client('demo');
      const taskId = (await demo.beginTask({ environment: 'prod', intent: 'deploy' })).task_id;
      for (let n = 0; n < 5; n++) await demo.issueCredential(deploy(taskId, n));
    });
    after(() => h?.close());

    it('pages newest first through the admin API and the CLI (--limit, --page-token)', async () => {
      const admin = await h.adminClient('security');
      const all = (await admin.listApprovals({})).approvals.map((a) => a.approval_id);
      assert.equal(all.length, 5);
      const seen: string[] = [];
      let token = '';
      do {
        const page = await admin.listApprovals({ page_size: 2, page_token: token });
        assert.ok(page.approvals.length <= 2);
        seen.push(...page.approvals.map((a) => a.approval_id));
        token = page.next_page_token;
      } while (token);
      assert.deepEqual(seen, all);

      const env = {
        ...process.env,
        SPIFFE_ENDPOINT_SOCKET: h.endpoints.security,
        SVID_BROKER_ADDR: h.address,
      };
      const cli = (...args: string[]) =>
        run(
          process.execPath,
          ['--import', 'tsx', 'src/cli/main.ts', 'approvals', 'list', '--json', ...args],
          {
            cwd: REPO,
            env,
          },
        );
      const first = await cli('--limit', '3');
      const next = /--page-token (\S+)/.exec(first.stderr)?.[1];
      assert.ok(next, `the CLI names the next page: ${first.stderr}`);
      const rest = await cli('--page-token', next);
      const ids = [first.stdout, rest.stdout].flatMap((out) =>
        (JSON.parse(out) as Array<{ approval_id: string }>).map((a) => a.approval_id),
      );
      assert.deepEqual(ids, all);
      assert.doesNotMatch(rest.stderr, /--page-token/, 'no token after the last page');
    });
  });

  describe('open requests per task and per agent', () => {
    let h: Harness;
    let demo: BrokerClient;
    before(async () => {
      h = await startHarness({ config: { approvals: { maxOpenPerAgent: 3, maxOpenPerTask: 2 } } });
      demo = await h.client('demo');
    });
    after(() => h?.close());

    it('refuses a request past the cap with RESOURCE_EXHAUSTED and records why', async () => {
      const first = (await demo.beginTask({ environment: 'prod', intent: 'deploy' })).task_id;
      assert.equal((await demo.issueCredential(deploy(first, 1))).status, 'PENDING_APPROVAL');
      assert.equal((await demo.issueCredential(deploy(first, 2))).status, 'PENDING_APPROVAL');
      const perTask = await grpcError(demo.issueCredential(deploy(first, 3)));
      assert.equal(perTask.code, status.RESOURCE_EXHAUSTED);
      assert.equal(perTask.metadata['x-svid-broker-reason'], 'too_many_open_approvals');
      assert.match(perTask.details, /for this task \(at most 2\)/);

      const second = (await demo.beginTask({ environment: 'prod', intent: 'deploy' })).task_id;
      assert.equal((await demo.issueCredential(deploy(second, 4))).status, 'PENDING_APPROVAL');
      const perAgent = await grpcError(demo.issueCredential(deploy(second, 5)));
      assert.equal(perAgent.code, status.RESOURCE_EXHAUSTED);
      assert.match(perAgent.details, /for this agent \(at most 3\)/);

      const records = (await readAudit(h.auditFile)).filter(
        (r) => r.type === 'budget.exceeded' && typeof r.approval === 'string',
      );
      assert.deepEqual(
        records.map((r) => r.budget_limit),
        ['openApprovalsPerTask', 'openApprovalsPerAgent'],
      );
      const list = await (await h.adminClient('security')).listApprovals({});
      assert.equal(list.approvals.length, 3);
    });
  });
});
