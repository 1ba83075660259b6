/**
 * `svid-broker mcp`: the MCP server over stdio, next to the agent. stdout carries MCP messages
 * only; logs go to stderr. The MCP SDK is loaded only when this command runs, not at every CLI start.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrokerClient } from '../client/agent-client.js';
import { CredentialFiles } from '../mcp/credential-files.js';
import { packageRoot } from '../package-root.js';
import { CONNECTION_FLAGS, bool, str, usageError, type Command } from './command.js';

interface McpOptions {
  credentialDir: string;
  returnSecrets: boolean;
  auth: 'x509' | 'jwt';
  brokerId: string | undefined;
}

async function runMcp(o: McpOptions): Promise<number> {
  const { StdioServerTransport } = await import('@modelcontextprotocol/sdk/server/stdio.js');
  const { buildMcpServer } = await import('../mcp/mcp-server.js');
  const files = new CredentialFiles(o.credentialDir);
  files.prepare();
  const client = await BrokerClient.connect({
    auth: o.auth,
    ...(o.brokerId ? { brokerId: o.brokerId } : {}),
  });
  const server = buildMcpServer({ client, files, returnSecrets: o.returnSecrets, version: version() });
  await server.connect(new StdioServerTransport());
  if (o.returnSecrets) process.stderr.write('svid-broker mcp: --return-secrets: values go to the model\n');
  // MCP clients stop a server by closing its stdin, then SIGTERM: either way the files go.
  await new Promise<void>((resolve) => {
    server.server.onclose = resolve;
    process.stdin.once('end', resolve);
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  files.removeAll();
  await server.close();
  client.close();
  return 0;
}

/** $XDG_RUNTIME_DIR/svid-broker (a per-user tmpfs) or <tmp>/svid-broker-<uid>. */
function defaultCredentialDir(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return join(runtime, 'svid-broker');
  return join(tmpdir(), `svid-broker-${process.getuid?.() ?? 'user'}`);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

export const MCP_COMMANDS: Command[] = [
  {
    path: 'mcp',
    summary:
      'MCP server over stdio for an agent: begin_task, request_credential, await_approval, end_task, task_status, list_roles.',
    flags: {
      'credential-dir': {
        type: 'string',
        value: 'DIR',
        help: 'where credential files go (0700; default $XDG_RUNTIME_DIR/svid-broker, else <tmp>/svid-broker-<uid>)',
      },
      'return-secrets': {
        type: 'boolean',
        help: 'also put credential values in tool results (they then enter the model context; off by default)',
      },
      ...CONNECTION_FLAGS,
    },
    notes:
      'stdout carries MCP messages only; logs go to stderr. Ending a task deletes the files written for it.',
    run: (p) => {
      const auth = str(p, 'auth') || 'x509';
      if (auth !== 'x509' && auth !== 'jwt') throw usageError('--auth must be x509 or jwt');
      return runMcp({
        credentialDir: str(p, 'credential-dir') || defaultCredentialDir(),
        returnSecrets: bool(p, 'return-secrets'),
        auth,
        brokerId: str(p, 'broker-id') || undefined,
      });
    },
  },
];
