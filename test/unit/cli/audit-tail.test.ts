import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rotatedFileName } from '../../../src/audit/chain-files.js';
import { fromCloudEvent } from '../../../src/audit/cloudevent.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { AuditRecord } from '../../../src/audit/types.js';
import { runAuditTail } from '../../../src/cli/audit-tail.js';

const A = 'spiffe://example.org/agents/a';
const B = 'spiffe://example.org/agents/b';

describe('cli: audit tail FILE', () => {
  let dir: string;
  let file: string;
  let records: AuditRecord[];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-tail-'));
    file = join(dir, 'audit.jsonl');
    const keeper = new MemoryAuditSink();
    await keeper.write({ type: 'task.begun', agent: A, intent: 'evil\u202eintent\nnext' });
    await keeper.write({ type: 'credential.issued', agent: A, role: 'token/demo' });
    await keeper.write({ type: 'credential.issued', agent: B, role: 'token/demo' });
    records = keeper.records;
    const line = (r: AuditRecord): string => `${JSON.stringify(r)}\n`;
    writeFileSync(rotatedFileName(file, 1, 1), line(records[0] as AuditRecord));
    writeFileSync(file, records.slice(1).map(line).join(''));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function tail(types: string[], agent: string | undefined, json = false): Promise<string[]> {
    const out: string[] = [];
    assert.equal(await runAuditTail(file, { types, agent }, json, (l) => out.push(l)), 0);
    return out;
  }

  it('prints one escaped line per record, rotated files first', async () => {
    const lines = await tail([], undefined);
    assert.equal(lines.length, 3);
    assert.ok(lines[0]?.startsWith(`${records[0]?.time}  task.begun  ${A}  `), lines[0]);
    assert.ok(lines[0]?.includes('intent=evil\\u{202e}intent\\nnext'), lines[0]);
    for (const l of lines) assert.doesNotMatch(l, /[\n\u202e]/);
    assert.ok(lines[1]?.includes('role=token/demo'));
  });

  it('filters by type and agent', async () => {
    const lines = await tail(['credential.issued'], B);
    assert.equal(lines.length, 1);
    assert.ok(lines[0]?.includes(`credential.issued  ${B}`));
  });

  it('--json prints each record as its CloudEvent, one per line, mapping back to the record', async () => {
    const lines = await tail([], A, true);
    assert.equal(lines.length, 2);
    const back = lines.map((l) => fromCloudEvent(JSON.parse(l) as Record<string, unknown>));
    assert.deepEqual(back, records.slice(0, 2));
    assert.doesNotMatch(lines[0] as string, /\u202e/);
  });
});
