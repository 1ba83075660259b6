import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileChainSink } from '../../../src/audit/file-chain-sink.js';
import { formatVerifyResult, verifyAuditFile } from '../../../src/audit/verify-file.js';

describe('audit/verify-file', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svid-broker-verify-'));
    path = join(dir, 'audit.jsonl');
    const sink = await FileChainSink.open(path, { fsync: false });
    for (let i = 0; i < 100; i += 1) {
      await sink.write({ type: 'credential.issued', agent: 'spiffe://example.org/a', lease_id: `l${i}` });
    }
    await sink.close();
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('streams an intact file and reports count and last hash', async () => {
    const result = await verifyAuditFile(path);
    assert.equal(result.ok, true);
    assert.equal(result.count, 100);
    const lastLine = (await readFile(path, 'utf8')).trimEnd().split('\n').at(-1) ?? '';
    assert.equal(result.ok && result.lastHash, (JSON.parse(lastLine) as { hash: string }).hash);
    assert.equal(
      formatVerifyResult(result),
      `ok: 100 records, chain intact, last hash ${result.ok && result.lastHash}`,
    );
  });

  it('reports the first broken line with the record id', async () => {
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
    const record = JSON.parse(lines[56] ?? '') as Record<string, unknown>;
    record.lease_id = 'forged';
    lines[56] = JSON.stringify(record);
    await writeFile(path, `${lines.join('\n')}\n`);
    const result = await verifyAuditFile(path);
    assert.deepEqual(result, { ok: false, count: 56, line: 57, id: record.id, error: 'hash mismatch' });
    assert.equal(
      formatVerifyResult(result),
      `BROKEN at line 57 (record ${String(record.id)}): hash mismatch (56 valid records before it)`,
    );
  });

  it('reports a crash-partial last line as unparseable', async () => {
    await writeFile(path, '{"id":"trunc', { flag: 'a' });
    const result = await verifyAuditFile(path);
    assert.deepEqual(result, { ok: false, count: 100, line: 101, error: 'unparseable json' });
    assert.equal(
      formatVerifyResult(result),
      'BROKEN at line 101: unparseable json (100 valid records before it)',
    );
  });

  it('an empty file is an intact empty chain', async () => {
    await writeFile(path, '');
    assert.equal(
      formatVerifyResult(await verifyAuditFile(path)),
      `ok: 0 records, chain intact, last hash ${'0'.repeat(64)}`,
    );
  });

  it('rejects for a missing file', async () => {
    await assert.rejects(verifyAuditFile(join(dir, 'nope.jsonl')), /ENOENT/);
  });
});
