/**
 * `svid-broker audit verify FILE`: exit 0 when the chain is intact, 1 at the first broken record,
 * with what the person on call does next.
 */
import { AUDIT_TAIL_COMMAND } from './audit-tail.js';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { ChainVerifier, GENESIS_HASH } from '../audit/hash-chain.js';
import { formatVerifyResult, verifyAuditFile } from '../audit/verify-file.js';
import type { Command } from './command.js';
import { printable } from './escape.js';

/** The hash of the record on line `lines` (the chain up to it verified), read again from the file. */
async function hashThrough(file: string, lines: number): Promise<string> {
  if (lines === 0) return GENESIS_HASH;
  const verifier = new ChainVerifier();
  const input = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const line of input) {
    verifier.push(line);
    if (++n === lines) break;
  }
  input.close();
  const r = verifier.result();
  return r.ok ? r.lastHash : GENESIS_HASH;
}

/** What to do with a broken trail: keep it, start a new one, and where the good part ends. */
function brokenTrailAdvice(file: string, brokenLine: number, lastGoodHash: string): string {
  const good =
    brokenLine > 1
      ? `lines 1-${brokenLine - 1} verify; the last good record is line ${brokenLine - 1}, hash ${lastGoodHash}`
      : 'no record verifies: the break is on the first line';
  return [
    'what to do:',
    `  1. keep this file as evidence, unchanged: cp -p ${file} ${file}.broken-$(date -u +%Y%m%dT%H%M%SZ)`,
    `  2. ${good}; records from line ${brokenLine} on cannot be trusted`,
    `  3. start a new trail: stop the broker, move the file aside (mv ${file} ${file}.broken), start the`,
    '     broker again: it begins a new chain; record the last good hash above with the incident',
  ].join('\n');
}

async function runAuditVerify(file: string): Promise<number> {
  const result = await verifyAuditFile(file);
  // A broken record's id is whatever the file holds: escaped, so a forged one cannot drive the terminal.
  const text = printable(formatVerifyResult(result));
  if (result.ok) {
    console.log(text);
    return 0;
  }
  console.error(text);
  console.error(brokenTrailAdvice(file, result.line, await hashThrough(file, result.line - 1)));
  return 1;
}

export const AUDIT_COMMANDS: Command[] = [
  {
    path: 'audit verify',
    args: 'FILE',
    positionals: [1, 1],
    summary: "Check an audit file's hash chain; on a break, name the first broken record and what to do.",
    flags: {},
    notes: 'exit codes: 0 chain intact, 1 broken (or unreadable), 2 usage',
    run: (p) => runAuditVerify(p.positionals[0] as string),
  },
  AUDIT_TAIL_COMMAND,
];
