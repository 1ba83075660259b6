/**
 * `svid-broker mcp [--credential-dir DIR] [--return-secrets] [--broker-id ID] [--auth x509|jwt]`:
 * the MCP server over stdio, next to the agent. stdout carries MCP messages only; logs go to stderr.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { BrokerClient } from '../client/agent-client.js';
import { CredentialFiles } from '../mcp/credential-files.js';
import { buildMcpServer } from '../mcp/mcp-server.js';
import { packageRoot } from '../package-root.js';

export async function runMcp(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'credential-dir': { type: 'string' },
      'return-secrets': { type: 'boolean', default: false },
      'broker-id': { type: 'string' },
      auth: { type: 'string', default: 'x509' },
    },
  });
  if (values.auth !== 'x509' && values.auth !== 'jwt') throw new Error('--auth must be x509 or jwt');
  const files = new CredentialFiles(values['credential-dir'] ?? defaultCredentialDir());
  files.prepare();
  const client = await BrokerClient.connect({
    auth: values.auth,
    ...(values['broker-id'] ? { brokerId: values['broker-id'] } : {}),
  });
  const server = buildMcpServer({
    client,
    files,
    returnSecrets: values['return-secrets'],
    version: version(),
  });
  await server.connect(new StdioServerTransport());
  if (values['return-secrets'])
    process.stderr.write('svid-broker mcp: --return-secrets: values go to the model\n');
  await new Promise<void>((resolve) => {
    server.server.onclose = resolve;
    process.stdin.once('end', resolve);
  });
  files.removeAll();
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
