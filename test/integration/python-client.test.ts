import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevStack, type DevStack } from '../../src/dev/dev-stack.js';
import { createLogger, startBroker, type RunningBroker } from '../../src/main.js';
import { packageRoot } from '../../src/package-root.js';
import { LogCapture, readAudit } from '../support/broker-harness.js';
import { findOrInstallPythonGrpc } from '../support/python-grpc.js';
import { runProcess, type CliResult } from '../support/run-cli.js';

const CLIENT_DIR = join(packageRoot(), 'clients', 'python');

function runPython(python: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  return runProcess(python, args, {
    cwd: CLIENT_DIR,
    env: { PATH: process.env.PATH ?? '', PYTHONPATH: CLIENT_DIR, ...env },
  });
}

describe('integration: Python client (clients/python, Debian python3-grpcio) against the dev stack', function () {
  this.timeout(120_000);
  let python: string;
  let dir: string;
  let stack: DevStack;
  let broker: RunningBroker;
  let logs: LogCapture;

  before(async () => {
    python = findOrInstallPythonGrpc();
    const built = spawnSync(python, ['build_stubs.py'], { cwd: CLIENT_DIR, encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
    dir = mkdtempSync(join(tmpdir(), 'svb-py-'));
    logs = new LogCapture();
    const logger = createLogger('info', logs);
    stack = await startDevStack({
      dir,
      logger,
      store: 'memory',
      listen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
    });
    broker = await startBroker({ config: stack.config, logger });
  });
  after(async () => {
    await broker?.close();
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const agentEnv = (): Record<string, string> => ({
    SPIFFE_ENDPOINT_SOCKET: stack.endpoints.agent,
    SVID_BROKER_ADDR: `127.0.0.1:${broker.grpcPort}`,
  });

  it('the example agent gets a credential inside a task and the task ends on exit (lease revoked)', async () => {
    const res = await runPython(
      python,
      [
        'examples/agent.py',
        '--env',
        'dev',
        '--role',
        'token/demo',
        '--tool',
        'py.fetch',
        '--session',
        's-42',
      ],
      agentEnv(),
    );
    assert.equal(res.code, 0, res.stderr);
    const [issuedLine, endedLine] = res.stdout.trim().split('\n');
    const issued = JSON.parse(issuedLine ?? '{}') as Record<string, unknown>;
    assert.equal(issued.status, 'issued');
    assert.equal(issued.agent, 'spiffe://example.org/agents/demo');
    assert.equal(issued.kind, 'jwt');
    assert.ok((issued.token_length as number) > 20);
    assert.deepEqual(JSON.parse(endedLine ?? '{}'), { task_ended: issued.task_id });
    const lease = await broker.store.getLease(issued.lease_id as string);
    assert.equal(lease?.state, 'revoked');
    const audit = await readAudit(stack.config.audit.file);
    const record = audit.find((r) => r.type === 'credential.issued' && r.lease === issued.lease_id);
    // The agent's context travelled through the Python client.
    assert.deepEqual(record?.context, { tool_name: 'py.fetch', session_id: 's-42', asserted_by: 'agent' });
    assert.ok(audit.some((r) => r.type === 'task.ended' && r.task === issued.task_id));
  });

  it('refuses a server that is not the expected broker SPIFFE ID, before any call', async () => {
    const res = await runPython(python, ['examples/agent.py'], {
      ...agentEnv(),
      SVID_BROKER_ID: 'spiffe://example.org/agents/impostor',
    });
    assert.equal(res.code, 1);
    assert.match(
      res.stderr,
      /UNAUTHENTICATED: the server at .* is \['spiffe:\/\/example\.org\/broker'\], expected spiffe:\/\/example\.org\/agents\/impostor/,
    );
    assert.doesNotMatch(res.stderr, /Traceback/);
  });

  it('a refusal is a BrokerError with the gRPC status name, not a traceback', async () => {
    const res = await runPython(python, ['examples/agent.py', '--env', 'nowhere'], agentEnv());
    assert.equal(res.code, 1);
    assert.match(res.stderr, /refused: INVALID_ARGUMENT: .*environment/);
    assert.doesNotMatch(res.stderr, /Traceback/);
  });
});
