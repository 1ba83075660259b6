import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listRotatedFiles, rotatedFileName } from '../../../src/audit/chain-files.js';
import { FileChainSink } from '../../../src/audit/file-chain-sink.js';
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

describe('cli: audit tail FILE --follow', () => {
  it('prints what the broker appends, across rotations, each record once and in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svb-follow-'));
    const file = join(dir, 'audit.jsonl');
    const keeper = await FileChainSink.open(file, { rotate: { maxBytes: 1500 }, fsync: false });
    try {
      for (let n = 0; n < 5; n += 1) await keeper.write({ type: 'credential.issued', agent: A, n });
      const seen: number[] = [];
      const abort = new AbortController();
      const following = runAuditTail(
        file,
        { types: [], agent: undefined },
        true,
        (l) => seen.push(fromCloudEvent(JSON.parse(l) as Record<string, unknown>).seq),
        { signal: abort.signal, intervalMs: 10 },
      );
      for (let n = 5; n < 60; n += 1) {
        await keeper.write({ type: 'credential.issued', agent: n % 2 ? A : B, n, pad: 'x'.repeat(100) });
        if (n % 7 === 0) await new Promise((r) => setTimeout(r, 15));
      }
      for (let i = 0; i < 300 && seen.length < 60; i += 1) await new Promise((r) => setTimeout(r, 10));
      abort.abort();
      await following;
      assert.ok((await listRotatedFiles(file)).length >= 2, 'the trail rotated while followed');
      assert.deepEqual(
        seen,
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
    } finally {
      await keeper.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a torn last line is not printed until it is whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svb-follow-'));
    const file = join(dir, 'audit.jsonl');
    const keeper = new MemoryAuditSink();
    const one = await keeper.write({ type: 'task.begun', agent: A });
    const two = await keeper.write({ type: 'task.ended', agent: A });
    const line2 = `${JSON.stringify(two)}\n`;
    writeFileSync(file, `${JSON.stringify(one)}\n${line2.slice(0, 20)}`);
    const seen: number[] = [];
    const abort = new AbortController();
    const following = runAuditTail(
      file,
      { types: [], agent: undefined },
      true,
      (l) => seen.push(fromCloudEvent(JSON.parse(l) as Record<string, unknown>).seq),
      { signal: abort.signal, intervalMs: 10 },
    );
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(seen, [1]);
    appendFileSync(file, line2.slice(20));
    for (let i = 0; i < 100 && seen.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    abort.abort();
    await following;
    assert.deepEqual(seen, [1, 2]);
    rmSync(dir, { recursive: true, force: true });
  });
});
