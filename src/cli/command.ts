/**
 * How a CLI command is declared, parsed and explained: one table entry per (sub)command, so every
 * command answers `-h`/`--help` with the same layout (exit 0) and every usage mistake exits 2
 * with one line naming the flag, followed by where to read more.
 *
 * To add a command (the convention the registry in cli.ts follows):
 *   1. Declare a `Command` next to the code it runs: `path` ('spire entries'), `summary` (one line
 *      for the overview), `args` (positional synopsis, e.g. 'TASK_ID'), `positionals` (how many),
 *      `flags` (each with `help` text and, for a string, a `value` name), optionally `notes`
 *      (exit codes, examples) and `fields` (wire field -> flag, for error messages).
 *   2. `run(parsed)` gets the parsed flags and positionals; throw `usageError('...')` for a missing
 *      or malformed flag (exit 2), anything else is an error (exit 1); return the exit code.
 *   3. Add it to COMMANDS in cli.ts (commands sharing a first word form a group: `admin --help`
 *      lists them). The README's "CLI reference" lists every command and flag: add yours there
 *      (test/unit/cli/cli-reference.test.ts fails, naming what is missing, until you do).
 * Parsing is node:util parseArgs (strict); this file only adds help, exit codes and wording.
 */
import { parseArgs } from 'node:util';

export interface Flag {
  type: 'string' | 'boolean';
  /** The value's name in help, e.g. `SECONDS`; strings only. */
  value?: string;
  multiple?: boolean;
  help: string;
}

export interface Parsed {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
}

export interface Command {
  /** The words that select it: 'request', 'admin leases'. */
  path: string;
  /** Positional synopsis for the usage line, e.g. 'TASK_ID' or 'DIR CASES.yaml'. */
  args?: string;
  /** How many positionals it takes: [min, max]. Default [0, 0]. */
  positionals?: [number, number];
  summary: string;
  flags: Record<string, Flag>;
  /** Extra help text: exit codes, examples. */
  notes?: string;
  /** Request fields the broker may name in an error, as this command's flags or arguments. */
  fields?: Record<string, string>;
  run(parsed: Parsed): Promise<number>;
}

/** A mistake in how the command was called: exit 2, with a pointer to the command's help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const usageError = (message: string): UsageError => new UsageError(message);

/** Flags every command that talks to a broker takes. */
export const CONNECTION_FLAGS: Record<string, Flag> = {
  auth: {
    type: 'string',
    value: 'x509|jwt',
    help: 'authenticate with the X.509-SVID (mTLS, default) or a JWT-SVID',
  },
  'broker-id': {
    type: 'string',
    value: 'SPIFFE_ID',
    help: "the broker's expected SPIFFE ID (default SVID_BROKER_ID, else spiffe://<your trust domain>/broker)",
  },
};

export const JSON_FLAG: Record<string, Flag> = {
  json: { type: 'boolean', help: 'print JSON (times as ISO-8601) instead of a table' },
};

const HELP_FLAG = '  -h, --help';

/** The help text of one command. */
export function commandHelp(cmd: Command): string {
  const synopsis = [`svid-broker ${cmd.path}`, cmd.args, Object.keys(cmd.flags).length ? '[flags]' : '']
    .filter(Boolean)
    .join(' ');
  const rows: Array<[string, string]> = Object.entries(cmd.flags).map(([name, f]) => [
    `      --${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`,
    f.help + (f.multiple ? ' (repeatable)' : ''),
  ]);
  rows.push([HELP_FLAG, 'show this help']);
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  const lines = [`usage: ${synopsis}`, '', cmd.summary, '', 'flags:'];
  for (const [left, right] of rows) lines.push(`${left.padEnd(width)}${right}`);
  if (cmd.notes) lines.push('', cmd.notes);
  return lines.join('\n');
}

/** `--ttl -5` is a (bad) value, not a flag: parseArgs would call it ambiguous. */
function joinNegativeValues(args: string[], flags: Record<string, Flag>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : '';
    if (flags[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/** Parses `args` for `cmd`; undefined when help was asked for (and printed). Throws UsageError. */
export function parseCommand(cmd: Command, args: string[]): Parsed | undefined {
  if (wantsHelp(args)) {
    console.log(commandHelp(cmd));
    return undefined;
  }
  const options = Object.fromEntries(
    Object.entries(cmd.flags).map(([name, f]) => [name, { type: f.type, multiple: f.multiple ?? false }]),
  );
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, cmd.flags),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw usageError(parseErrorText(err));
  }
  const [min, max] = cmd.positionals ?? [0, 0];
  const n = parsed.positionals.length;
  if (n < min) throw usageError(`missing ${cmd.args ?? 'argument'}`);
  if (n > max) throw usageError(`unexpected argument '${parsed.positionals[max]}'`);
  return { values: parsed.values, positionals: parsed.positionals };
}

function parseErrorText(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const first = (e.message ?? String(err)).split('\n')[0] ?? '';
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    return first.replace(/^Unknown option ('[^']*').*$/, 'unknown flag $1');
  }
  return first.replace(/^Option /, '').replace(/\.$/, '');
}

/** Typed readers for parsed values. */
export const str = (p: Parsed, name: string): string => {
  const v = p.values[name];
  return typeof v === 'string' ? v : '';
};
export const bool = (p: Parsed, name: string): boolean => p.values[name] === true;
export const list = (p: Parsed, name: string): string[] => {
  const v = p.values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
};

/** A required flag: its value, or a usage error saying what it is for. */
export function required(p: Parsed, name: string, why: string): string {
  const v = str(p, name);
  if (!v) throw usageError(`--${name} is required: ${why}`);
  return v;
}
