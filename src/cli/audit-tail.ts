/**
 * `svid-broker audit tail FILE`: an audit trail for a person to read, one line per record (time,
 * type, agent, the record's key fields), every value escaped (cli/escape.ts) so no recorded text
 * can draw a line of its own. Reads the chain's rotated files, then FILE. `--json` prints each
 * record as its CloudEvent JSON instead, one per line.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { listChainFiles } from '../audit/chain-files.js';
import { fromCloudEvent, toCloudEvent } from '../audit/cloudevent.js';
import type { AuditRecord } from '../audit/types.js';
import type { BrokerAdminClient } from '../client/broker-client.js';
import { followTrail } from './audit-follow.js';
import { CONNECTION_FLAGS, usageError, type Command, type Parsed } from './command.js';
import { printable, safeJson } from './escape.js';
import { withConnection } from './output.js';

export interface TailFilter {
  types: readonly string[];
  agent: string | undefined;
}

/** Fields every line shows first, or leaves out; the rest follow as key=value. */
const SHOWN_FIRST = new Set(['time', 'type', 'agent', 'id', 'seq', 'source', 'prev_hash', 'hash']);

export function formatRecordLine(record: AuditRecord): string {
  const rest = Object.entries(record)
    .filter(([key]) => !SHOWN_FIRST.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return printable([record.time, record.type, record.agent || '-', ...rest].join('  '));
}

export function matchesTail(record: AuditRecord, filter: TailFilter): boolean {
  if (filter.types.length > 0 && !filter.types.includes(record.type)) return false;
  return filter.agent === undefined || record.agent === filter.agent;
}

export async function runAuditTail(
  file: string,
  filter: TailFilter,
  json: boolean,
  out: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  follow?: { signal: AbortSignal; intervalMs?: number },
): Promise<number> {
  const print = (record: AuditRecord): void => {
    if (matchesTail(record, filter))
      out(json ? oneLineJson(toCloudEvent(record).toJSON()) : formatRecordLine(record));
  };
  let seq = 0;
  let offset = 0;
  let torn = 0;
  for (const path of await listChainFiles(file)) {
    offset = 0;
    torn = 0;
    const lines = createInterface({
      input: createReadStream(path, { encoding: 'utf8' }),
      crlfDelay: Infinity,
    });
    try {
      for await (const line of lines) {
        offset += Buffer.byteLength(line) + 1;
        if (line === '') continue;
        const record = parseRecord(line);
        // Only the last line can be a record still being written; it is read again when whole.
        if (record === undefined) {
          torn = Buffer.byteLength(line) + 1;
          continue;
        }
        torn = 0;
        if (typeof record.seq === 'number') seq = record.seq;
        print(record);
      }
    } catch (err) {
      // Rotated away between the listing and the read: --follow picks its records up by seq.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !follow) throw err;
      offset = 0;
    }
  }
  if (follow) await followTrail(file, { seq, offset: offset - torn }, print, follow);
  return 0;
}

function parseRecord(line: string): AuditRecord | undefined {
  try {
    return JSON.parse(line) as AuditRecord;
  } catch {
    return undefined;
  }
}

/**
 * The same lines from the broker's WatchAudit (history after `fromId`, then live records) until the
 * broker ends the stream or `signal` aborts (Ctrl-C).
 */
export async function watchAuditTail(
  admin: Pick<BrokerAdminClient, 'watchAudit'>,
  fromId: string,
  filter: TailFilter,
  json: boolean,
  out: (line: string) => void,
  signal?: AbortSignal,
): Promise<number> {
  await admin.watchAudit(
    { from_id: fromId, types: [...filter.types], agent: filter.agent ?? '' },
    (event) => {
      const cloudEvent = JSON.parse(event.cloudevent_json) as Record<string, unknown>;
      out(json ? oneLineJson(cloudEvent) : formatRecordLine(fromCloudEvent(cloudEvent)));
    },
    signal,
  );
  return 0;
}

function runTail(p: Parsed): Promise<number> {
  const filter = {
    types: (p.values.type as string[] | undefined) ?? [],
    agent: p.values.agent as string | undefined,
  };
  const json = p.values.json === true;
  const file = p.positionals[0];
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  if (file !== undefined) {
    const follow = p.values.follow === true ? { signal: abort.signal } : undefined;
    return runAuditTail(file, filter, json, undefined, follow);
  }
  if (p.values.follow === true)
    throw usageError('--follow needs FILE (without FILE, WatchAudit follows already)');
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  const from = typeof p.values.from === 'string' ? p.values.from : '';
  return withConnection(p, (c) => watchAuditTail(c.admin, from, filter, json, out, abort.signal));
}

/** safeJson (C1 and bidi characters escaped) on one line: its only raw newlines are indentation. */
function oneLineJson(value: unknown): string {
  return safeJson(value).replace(/\n */g, '');
}

export const AUDIT_TAIL_COMMAND: Command = {
  path: 'audit tail',
  args: '[FILE]',
  positionals: [0, 1],
  summary: 'Print an audit trail for a person: one line per record (time, type, agent, key fields).',
  flags: {
    type: { type: 'string', value: 'TYPE', multiple: true, help: 'only records of this type (repeatable)' },
    agent: { type: 'string', value: 'ID', help: 'only records of this agent SPIFFE ID' },
    json: { type: 'boolean', help: "each record's CloudEvent JSON, one per line" },
    follow: {
      type: 'boolean',
      help: 'with FILE: keep printing records as they are appended, across rotation, until Ctrl-C',
    },
    from: {
      type: 'string',
      value: 'ID',
      help: 'without FILE: start after this record id (default: only new records)',
    },
    ...CONNECTION_FLAGS,
  },
  notes:
    "FILE: reads the chain's rotated files first, then FILE (with --follow, then what is appended, across rotation). Without FILE: the broker's WatchAudit, until Ctrl-C. exit codes: 0 printed, 1 error, 2 usage",
  run: runTail,
};
