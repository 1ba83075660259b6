/** `svid-broker mcp` in the command table; the MCP SDK is loaded only when this command runs. */
import { CONNECTION_FLAGS, bool, str, type Command } from './command.js';

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
    run: async (p) => {
      const args = [
        ...(str(p, 'credential-dir') ? ['--credential-dir', str(p, 'credential-dir')] : []),
        ...(bool(p, 'return-secrets') ? ['--return-secrets'] : []),
        ...(str(p, 'auth') ? ['--auth', str(p, 'auth')] : []),
        ...(str(p, 'broker-id') ? ['--broker-id', str(p, 'broker-id')] : []),
      ];
      return (await import('./mcp.js')).runMcp(args);
    },
  },
];
