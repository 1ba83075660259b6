/**
 * `svid-broker audit verify FILE... [--checkpoints NOTES_FILE --key VKEY_OR_FILE]`: exit 0 when the
 * chain is intact across the files (and every checkpoint verifies and is covered), 1 at the first
 * broken record, a bad note or a truncated trail, with what the person on call does next.
 */
import { readFile } from 'node:fs/promises';
import { parseVkey, type NoteVerifier } from '../audit/signed-note.js';
import { verifyTrail, type TrailPosition, type TrailResult } from '../audit/verify-trail.js';
import { str, usageError, type Command, type Parsed } from './command.js';
import { AUDIT_TAIL_COMMAND } from './audit-tail.js';
import { printable } from './escape.js';

type Broken = Extract<TrailResult, { ok: false }>;

/** Each line escaped (file names come from the command line), the line breaks kept. */
const printableLines = (text: string): string => text.split('\n').map(printable).join('\n');

/** What to do with a broken trail: keep it, start a new one, and where the good part ends. */
function brokenTrailAdvice(file: string, brokenLine: number, lastGood: TrailPosition): string {
  const good =
    brokenLine > 1
      ? `lines 1-${brokenLine - 1} verify; the last good record is line ${brokenLine - 1}, hash ${lastGood.hash}`
      : lastGood.line > 0
        ? `the files before it verify; the last good record is ${lastGood.file} line ${lastGood.line}, hash ${lastGood.hash}`
        : 'no record verifies: the break is on the first line';
  return [
    'what to do:',
    `  1. keep this file as evidence, unchanged: cp -p ${file} ${file}.broken-$(date -u +%Y%m%dT%H%M%SZ)`,
    `  2. ${good}; records from line ${brokenLine} on cannot be trusted`,
    `  3. start a new trail: stop the broker, move the file aside (mv ${file} ${file}.broken), start the`,
    '     broker again: it begins a new chain; record the last good hash above with the incident',
  ].join('\n');
}

function truncationAdvice(lastGood: TrailPosition | undefined): string {
  const end =
    lastGood && lastGood.line > 0 ? ` (the trail ends at ${lastGood.file} line ${lastGood.line})` : '';
  return [
    'what to do:',
    '  1. keep the files and the checkpoints file as evidence, unchanged',
    `  2. records signed by a checkpoint are missing from the end of the trail${end}: recover them from`,
    '     a copy the audit sinks received (Redis Stream, webhook receiver, SIEM) and record the incident',
  ].join('\n');
}

const NOTE_ADVICE =
  "what to do: check that --key is the broker's verifier key (GET /v1/audit/checkpoint-key); a note that\n" +
  'does not verify with it was not signed by the broker: keep the file as evidence';

function brokenText(result: Broken, single: boolean): string {
  if (result.at === undefined) return `BROKEN: ${result.error}`;
  const { file, line, id } = result.at;
  const where = `${single ? '' : `${file} `}line ${line}${id === undefined ? '' : ` (record ${id})`}`;
  return `BROKEN at ${where}: ${result.error} (${result.count} valid records before it)`;
}

function report(result: TrailResult, verifier: NoteVerifier | undefined): number {
  const single = result.files.length === 1;
  if (result.ok) {
    const noun = result.count === 1 ? 'record' : 'records';
    const files = single ? '' : ` in ${result.files.length} files`;
    console.log(`ok: ${result.count} ${noun}${files}, chain intact, last hash ${result.lastHash}`);
    if (result.checkpoints && verifier) {
      const { count, latest } = result.checkpoints;
      console.log(
        printable(
          `ok: ${count} checkpoints verify with key ${verifier.name}; the latest covers seq ${latest}`,
        ),
      );
    }
    return 0;
  }
  // A broken record's id is whatever the file holds: escaped, so a forged one cannot drive the terminal.
  console.error(printable(brokenText(result, single)));
  if (result.truncated) console.error(printableLines(truncationAdvice(result.lastGood)));
  else if (result.at === undefined) console.error(NOTE_ADVICE);
  else if (result.lastGood) {
    console.error(printableLines(brokenTrailAdvice(result.at.file, result.at.line, result.lastGood)));
  }
  return 1;
}

/** `--key`: a vkey line, or a file holding one. */
async function readVerifier(arg: string): Promise<NoteVerifier> {
  let text = arg;
  try {
    text = (await readFile(arg, 'utf8')).split('\n').find((l) => l.trim() !== '') ?? '';
  } catch {
    // not a file: the argument is the key itself
  }
  try {
    return parseVkey(text);
  } catch (err) {
    throw usageError(`--key: ${(err as Error).message}`);
  }
}

async function runAuditVerify(p: Parsed): Promise<number> {
  const notesPath = str(p, 'checkpoints');
  const keyArg = str(p, 'key');
  if (notesPath && !keyArg) {
    throw usageError(
      '--key is required with --checkpoints: the verifier key line (GET /v1/audit/checkpoint-key) or a file holding it',
    );
  }
  if (keyArg && !notesPath) throw usageError('--key needs --checkpoints NOTES_FILE');
  const verifier = keyArg ? await readVerifier(keyArg) : undefined;
  const checkpoints =
    verifier === undefined
      ? undefined
      : { path: notesPath, text: await readFile(notesPath, 'utf8'), verifier };
  return report(await verifyTrail(p.positionals, checkpoints), verifier);
}

export const AUDIT_COMMANDS: Command[] = [
  {
    path: 'audit verify',
    args: 'FILE...',
    positionals: [1, Number.MAX_SAFE_INTEGER],
    summary:
      "Check an audit trail's hash chain across its files (rotated and active, any order) and, with --checkpoints, against the signed checkpoints; on a break, name the first bad record and what to do.",
    flags: {
      checkpoints: {
        type: 'string',
        value: 'NOTES_FILE',
        help: 'the signed checkpoints (<audit.file>.checkpoints, or notes fetched from GET /v1/audit/checkpoint): each must verify with --key, match the chain at its size, and be reached by the trail',
      },
      key: {
        type: 'string',
        value: 'VKEY_OR_FILE',
        help: "the broker's checkpoint verifier key (GET /v1/audit/checkpoint-key), or a file holding it",
      },
    },
    notes:
      'exit codes: 0 chain intact, 1 broken (or unreadable, a bad checkpoint, a truncated trail), 2 usage',
    run: runAuditVerify,
  },
  AUDIT_TAIL_COMMAND,
];
