import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { JSONWebKeySet } from 'jose';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { packageRoot } from '../../src/package-root.js';
import type { BrokerAdminClient } from '../../src/client/broker-client.js';
import { BROKER_ID, DEMO_AGENT, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

type ToolText = { content: Array<{ type: string; text: string }>; isError?: boolean };

const textOf = (res: unknown): Record<string, unknown> => {
  const r = res as ToolText;
  return JSON.parse(r.content[0]?.text ?? '{}') as Record<string, unknown>;
};

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('integration: MCP server (svid-broker mcp over stdio, SDK client)', function () {
  this.timeout(60_000);
  let h: Harness;
  let security: BrokerAdminClient;

  before(async () => {
    h = await startHarness();
    security = await h.adminClient('security');
  });
  after(async () => {
    await h?.close();
  });

  const startMcp = async (
    extraArgs: string[] = [],
  ): Promise<{ client: Client; dir: string; transport: StdioClientTransport }> => {
    const dir = join(mkdtempSync(join(tmpdir(), 'svb-mcp-')), 'creds');
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      SPIFFE_ENDPOINT_SOCKET: h.endpoints.demo as string,
      SVID_BROKER_ADDR: h.address,
    };
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', 'src/cli/main.ts', 'mcp', '--credential-dir', dir, ...extraArgs],
      cwd: packageRoot(),
      env,
      stderr: 'pipe',
    });
    const client = new Client({ name: 'svb-test', version: '1.0.0' });
    await client.connect(transport);
    return { client, dir, transport };
  };

  it('SIGTERM (how MCP clients stop a server) still deletes the credential files it wrote', async () => {
    const { client, transport } = await startMcp();
    try {
      const begun = textOf(
        await client.callTool({
          name: 'begin_task',
          arguments: { environment: 'dev', intent: 'mcp sigterm' },
        }),
      );
      const issued = textOf(
        await client.callTool({
          name: 'request_credential',
          arguments: { task_id: begun.task_id, role: 'token/demo' },
        }),
      );
      const files = [issued.path as string, issued.env_file as string];
      assert.ok(files.every((f) => existsSync(f)));
      const pid = transport.pid as number;
      process.kill(pid, 'SIGTERM');
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && processAlive(pid)) await new Promise((r) => setTimeout(r, 100));
      assert.ok(!processAlive(pid), 'the server did not exit on SIGTERM');
      assert.deepEqual(
        files.filter((f) => existsSync(f)),
        [],
        'credential files left behind',
      );
    } finally {
      await client.close();
    }
  });

  it('lists its tools, begins a task, writes the credential to a private file (value not in the result), ends the task (file gone, lease revoked)', async () => {
    const { client, dir } = await startMcp();
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(tools, [
        'await_approval',
        'begin_task',
        'end_task',
        'list_roles',
        'request_credential',
        'task_status',
      ]);

      const begun = textOf(
        await client.callTool({ name: 'begin_task', arguments: { environment: 'dev', intent: 'mcp test' } }),
      );
      const taskId = begun.task_id as string;
      assert.match(taskId, /^[0-9a-f-]{36}$/);

      const listed = textOf(await client.callTool({ name: 'list_roles', arguments: { task_id: taskId } }));
      const roles = listed.roles as Array<{ name: string; decision: string; policyIds: string[] }>;
      const demo = roles.find((r) => r.name === 'token/demo');
      assert.equal(demo?.decision, 'allow');
      assert.deepEqual(demo?.policyIds, ['demo-agent-token-demo-dev']);
      // Roles restricted to other environments are not offered in dev.
      assert.ok(
        roles.every((r) => r.name !== 'token/deploy' || r.decision !== 'allow'),
        JSON.stringify(roles),
      );

      const raw = (await client.callTool({
        name: 'request_credential',
        arguments: {
          task_id: taskId,
          role: 'token/demo',
          justification: 'read the demo api',
          plan: 'fetch the demo page',
        },
      })) as ToolText;
      assert.ok(!raw.isError, raw.content[0]?.text);
      const issued = textOf(raw);
      assert.equal(issued.status, 'issued');
      assert.equal(issued.kind, 'jwt');
      const path = issued.path as string;
      assert.ok(path.startsWith(dir));
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      const file = JSON.parse(readFileSync(path, 'utf8')) as { credential: { token: string } };
      const token = file.credential.token;
      // The value is in the file, never in what the model sees.
      assert.ok(token.length > 20);
      assert.ok(!raw.content[0]?.text.includes(token), 'token leaked into the tool result');
      assert.ok(!JSON.stringify(issued).includes(token));
      assert.match(readFileSync(issued.env_file as string, 'utf8'), /^SVID_BROKER_TOKEN='/m);
      const jwks = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
      const { claims } = await verifyAccessToken(token, { jwks, issuer: BROKER_ID, audience: 'demo-api' });
      assert.equal(claims.sub, DEMO_AGENT);
      assert.equal(claims.jti, issued.lease_id);

      const status = textOf(await client.callTool({ name: 'task_status', arguments: { task_id: taskId } }));
      assert.equal(status.state, 'active');
      assert.deepEqual(status.credential_files, [path, issued.env_file]);

      const ended = textOf(await client.callTool({ name: 'end_task', arguments: { task_id: taskId } }));
      assert.equal(ended.state, 'ended');
      assert.equal(ended.files_removed, 2);
      assert.ok(!existsSync(path) && !existsSync(issued.env_file as string), 'credential files left behind');
      assert.equal((await h.broker.store.getLease(issued.lease_id as string))?.state, 'revoked');
      const audit = await readAudit(h.auditFile);
      assert.ok(audit.some((r) => r.type === 'task.ended' && r.task === taskId));
      // The MCP tool call is the agent context: the tool, the call's JSON-RPC id, what the model stated.
      const record = audit.find((r) => r.type === 'credential.issued' && r.lease === issued.lease_id);
      const context = record?.context as Record<string, string>;
      assert.equal(context.tool_name, 'request_credential');
      assert.match(context.tool_call_id ?? '', /^\d+$/);
      assert.equal(context.plan, 'fetch the demo page');
      assert.equal(context.asserted_by, 'agent');
      const begunRecord = audit.find((r) => r.type === 'task.begun' && r.task === taskId);
      assert.equal((begunRecord?.context as Record<string, string>).tool_name, 'begin_task');
    } finally {
      await client.close();
    }
  });

  it('end_task removes the credential files even when the broker refuses (the task was ended elsewhere)', async () => {
    const { client } = await startMcp();
    try {
      const taskId = textOf(
        await client.callTool({
          name: 'begin_task',
          arguments: { environment: 'dev', intent: 'ended twice' },
        }),
      ).task_id as string;
      const issued = textOf(
        await client.callTool({
          name: 'request_credential',
          arguments: { task_id: taskId, role: 'token/demo' },
        }),
      );
      assert.ok(existsSync(issued.path as string));
      const demo = await h.client('demo');
      await demo.endTask({ task_id: taskId, reason: 'ended by the agent itself' });

      const refused = (await client.callTool({
        name: 'end_task',
        arguments: { task_id: taskId },
      })) as ToolText;
      assert.equal(refused.isError, true, refused.content[0]?.text);
      assert.ok(
        !existsSync(issued.path as string) && !existsSync(issued.env_file as string),
        'credential files left behind',
      );
    } finally {
      await client.close();
    }
  });

  it('a refused request is an error result with the reason, never a stack; --return-secrets puts the value in the result', async () => {
    const { client } = await startMcp(['--return-secrets']);
    try {
      const denied = (await client.callTool({
        name: 'begin_task',
        arguments: { environment: 'nowhere', intent: 'x' },
      })) as ToolText;
      assert.equal(denied.isError, true);
      assert.match(denied.content[0]?.text ?? '', /environment/);
      assert.doesNotMatch(denied.content[0]?.text ?? '', /\n\s+at /);

      const taskId = textOf(
        await client.callTool({ name: 'begin_task', arguments: { environment: 'dev', intent: 'opt-in' } }),
      ).task_id;
      const issued = textOf(
        await client.callTool({
          name: 'request_credential',
          arguments: { task_id: taskId, role: 'token/demo' },
        }),
      );
      const inFile = JSON.parse(readFileSync(issued.path as string, 'utf8')) as {
        credential: { token: string };
      };
      assert.equal((issued.credential as { token: string }).token, inFile.credential.token);
    } finally {
      await client.close();
    }
  });

  it('await_approval sends progress notifications and writes the credential once approved', async () => {
    const { client } = await startMcp();
    try {
      const taskId = textOf(
        await client.callTool({ name: 'begin_task', arguments: { environment: 'prod', intent: 'deploy' } }),
      ).task_id;
      const pending = textOf(
        await client.callTool({
          name: 'request_credential',
          arguments: {
            task_id: taskId,
            role: 'token/deploy',
            change_type: 'destructive',
            justification: 'roll out v2',
          },
        }),
      );
      assert.equal(pending.status, 'pending_approval');
      const progress: string[] = [];
      let sawPending: () => void = () => undefined;
      const pendingSeen = new Promise<void>((resolve) => (sawPending = resolve));
      const waiting = client.callTool(
        { name: 'await_approval', arguments: { approval_id: pending.approval_id } },
        undefined,
        {
          onprogress: (p) => {
            progress.push(p.message ?? '');
            if (p.message === 'pending') sawPending();
          },
          timeout: 30_000,
        },
      );
      // Approve once the wait reported the request pending (the broker polls the shared store).
      await pendingSeen;
      await security.decideApproval({
        approval_id: pending.approval_id as string,
        approve: true,
        reason: 'ok',
      });
      const issued = textOf(await waiting);
      assert.equal(issued.status, 'issued');
      assert.ok(existsSync(issued.path as string));
      assert.ok(progress.includes('pending'), progress.join());
      assert.ok(progress.includes('approved'), progress.join());
    } finally {
      await client.close();
    }
  });
});
