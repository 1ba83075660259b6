/**
 * svid-broker CLI: thin commands over the same modules the server uses. Each command is a
 * `Command` (command.ts says how to add one); this file only finds it, runs it and turns what it
 * throws into one line and an exit code: 0 ok, 1 error, 2 usage, 3 pending approval (request),
 * 4 partial revocation (admin revoke/quarantine). main.ts is the executable that calls it.
 */
import { ConfigError } from '../config/load-config.js';
import { PolicyLoadError } from '../policy/policy-load-error.js';
import { RegistrationError } from '../spire/registration.js';
import { StartupError } from '../main.js';
import { ADMIN_COMMANDS } from './admin.js';
import { APPROVAL_COMMANDS } from './approvals.js';
import { AUDIT_HMAC_COMMANDS } from './audit-hmac.js';
import { AUDIT_COMMANDS } from './audit-verify.js';
import { CONFIG_COMMANDS } from './config-validate.js';
import { UsageError, parseCommand, type Command } from './command.js';
import { brokerAddress } from './connect.js';
import { printable } from './escape.js';
import { DEV_COMMANDS } from './dev.js';
import { MCP_COMMANDS } from './mcp.js';
import { explainError } from './explain-error.js';
import { POLICY_COMMANDS } from './policy.js';
import { REQUEST_COMMANDS } from './request.js';
import { SERVE_COMMANDS } from './serve.js';
import { SPIRE_COMMANDS } from './spire.js';

/** Every command, in the order the overview lists them. */
export const COMMANDS: readonly Command[] = [
  ...SERVE_COMMANDS,
  ...DEV_COMMANDS,
  ...REQUEST_COMMANDS,
  ...MCP_COMMANDS,
  ...AUDIT_COMMANDS,
  ...AUDIT_HMAC_COMMANDS,
  ...APPROVAL_COMMANDS,
  ...ADMIN_COMMANDS,
  ...POLICY_COMMANDS,
  ...SPIRE_COMMANDS,
  ...CONFIG_COMMANDS,
];

const ENVIRONMENT = `environment:
  SPIFFE_ENDPOINT_SOCKET  the Workload API your identity comes from (unix:///path or tcp://IP:port)
  SVID_BROKER_ADDR        the broker's gRPC address (default localhost:8443)
  SVID_BROKER_ID          the broker's SPIFFE ID (default spiffe://<your trust domain>/broker)
  SVID_BROKER_CONFIG      the config file for serve

exit codes: 0 ok, 1 error, 2 usage, 3 pending approval (request), 4 partial revocation (admin)
Run 'svid-broker <command> --help' for a command's flags.`;

function synopsis(c: Command): string {
  return [c.path, c.args].filter(Boolean).join(' ');
}

/** The first sentence of a summary, for listings. */
const headline = (c: Command): string =>
  (c.summary.replace(/\n/g, ' ').split(/(?<=[.;])\s/)[0] ?? '').replace(/[.;]$/, '');

function listing(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => synopsis(c).length)) + 2;
  return commands.map((c) => `  ${synopsis(c).padEnd(width)}${headline(c)}`).join('\n');
}

export function overview(): string {
  return `usage: svid-broker <command> [flags]\n\ncommands:\n${listing(COMMANDS)}\n\n${ENVIRONMENT}`;
}

function groupHelp(group: string): string {
  const members = COMMANDS.filter((c) => c.path.startsWith(`${group} `));
  return `usage: svid-broker ${group} <command> [flags]\n\ncommands:\n${listing(members)}\n\nRun 'svid-broker ${group} <command> --help' for a command's flags.`;
}

const isHelp = (a: string | undefined): boolean => a === '-h' || a === '--help' || a === 'help';

/** The command `argv` names (longest path first) and the arguments after its words. */
function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  const byLength = [...COMMANDS].sort((a, b) => b.path.split(' ').length - a.path.split(' ').length);
  for (const command of byLength) {
    const words = command.path.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { command, rest: argv.slice(words.length) };
  }
  return undefined;
}

function usageFailure(where: string, message: string, help: string): number {
  console.error(`svid-broker ${where}: ${message}\n${help}`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  const [first, second] = argv;
  if (first === undefined) {
    console.log(overview());
    return 2;
  }
  if (isHelp(first)) {
    if (argv.length === 1) {
      console.log(overview());
      return 0;
    }
    // `help X Y` is `X Y --help`: an unknown command is a usage mistake, not an empty listing.
    return main([...argv.slice(1), '--help']);
  }
  const found = findCommand(argv);
  if (!found) {
    const isGroup = COMMANDS.some((c) => c.path.startsWith(`${first} `));
    if (isGroup && isHelp(second)) {
      console.log(groupHelp(first));
      return 0;
    }
    if (isGroup) {
      const what = second === undefined ? 'needs a command' : `unknown command '${first} ${second}'`;
      return usageFailure(first, what, groupHelp(first));
    }
    return usageFailure(first, 'unknown command', "Run 'svid-broker --help' for the list of commands.");
  }
  const { command, rest } = found;
  try {
    const parsed = parseCommand(command, rest);
    if (parsed === undefined) return 0; // --help
    return await command.run(parsed);
  } catch (err) {
    if (err instanceof UsageError) {
      return usageFailure(command.path, err.message, `Run 'svid-broker ${command.path} --help' for usage.`);
    }
    return report(err, command);
  }
}

export function report(err: unknown, command?: Command): number {
  if (
    err instanceof ConfigError ||
    err instanceof PolicyLoadError ||
    err instanceof StartupError ||
    err instanceof RegistrationError
  ) {
    console.error(`svid-broker: ${err.message}`);
    return 1;
  }
  console.error(
    `svid-broker: ${printableLines(explainError(err, { address: brokerAddress(), ...(command?.fields ? { fields: command.fields } : {}) }))}`,
  );
  return 1;
}

/** Broker error text may quote what an agent sent: each line is escaped, the CLI's own newlines kept. */
function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}
