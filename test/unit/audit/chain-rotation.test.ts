import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { writeCheckpoint } from '../../../src/audit/chain-checkpoint.js';
import { listChainFiles, listRotatedFiles, rotatedFileName } from '../../../src/audit/chain-files.js';
import { FileChainSink, nodeChainFileSystem } from '../../../src/audit/file-chain-sink.js';
import type { AuditEventInput, AuditRecord } from '../../../src/audit/types.js';
import { verifyTrail } from '../../../src/audit/verify-trail.js';
import { isBrokerError } from '../../../src/errors.js';
import { eventually } from '../../support/eventually.js';

const issued = (n: number): AuditEventInput => ({
  type: 'credential.issued',
  agent: 'spiffe://example.org/agent/a',
  lease_id: `lease-${n}`,
});

async function records(file: string): Promise<AuditRecord[]> {
  const text = await readFile(file, 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditRecord);
}

async function writeSequentially(sink: FileChainSink, from: number, to: number): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let n = from; n <= to; n++) out.push(await sink.write(issued(n)));
  return out;
}

/** Every record of the trail, file by file, in chain order. */
async function trail(path: string): Promise<AuditRecord[][]> {
  return Promise.all((await listChainFiles(path)).map(records));
}

describe('audit/chain-rotation: the chain file rotates and the chain continues across files', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svid-broker-rotate-'));
    path = join(dir, 'audit.jsonl');
  });

  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('rotates past maxBytes into files named by their seq range; verify reads them as one chain', async () => {
    const sink = await FileChainSink.open(path, { rotate: { maxBytes: 2000 } });
    await writeSequentially(sink, 1, 120);
    await sink.close();

    const rotated = await listRotatedFiles(path);
    assert.ok(rotated.length >= 3, `several rotations (got ${rotated.length})`);
    const files = await trail(path);
    let previous: AuditRecord | undefined;
    for (const [i, file] of files.entries()) {
      const first = file[0] as AuditRecord;
      const info = rotated[i];
      if (info !== undefined) {
        assert.equal(first.seq, info.firstSeq, basename(info.path));
        assert.equal(file.at(-1)?.seq, info.lastSeq, basename(info.path));
      }
      if (previous !== undefined && first !== undefined) {
        assert.equal(first.prev_hash, previous.hash, 'each file links to the one before');
        assert.equal(first.seq, previous.seq + 1);
      }
      previous = file.at(-1) ?? previous;
    }
    assert.deepEqual(
      files.flat().map((r) => r.seq),
      Array.from({ length: 120 }, (_, i) => i + 1),
      'no record lost or duplicated',
    );
    const result = await verifyTrail((await listChainFiles(path)).reverse());
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.count, 120);
  });

  it('concurrent writes across rotations: every write resolves once, every seq is on disk once', async () => {
    const sink = await FileChainSink.open(path, { rotate: { maxBytes: 4096 } });
    // Waves of 25 writes: each wave is issued once the previous wave's first write resolved, so
    // later writes of one wave and the next wave queue up while a batch, or a rotation, runs.
    const pending: Array<Promise<AuditRecord>> = [];
    for (let wave = 0; wave < 16; wave++) {
      for (let n = 0; n < 25; n++) pending.push(sink.write(issued(wave * 25 + n)));
      await pending[wave * 25];
    }
    const written = await Promise.all(pending);
    await sink.close();
    const onDisk = (await trail(path)).flat();
    assert.ok((await listRotatedFiles(path)).length >= 3);
    assert.deepEqual(
      onDisk.map((r) => r.seq),
      Array.from({ length: 400 }, (_, i) => i + 1),
    );
    assert.deepEqual(new Set(onDisk.map((r) => r.id)), new Set(written.map((r) => r.id)));
    assert.equal((await verifyTrail(await listChainFiles(path))).ok, true);
  });

  it('rotates by age (the first record of the active file) on the next write', async () => {
    let now = Date.parse('2026-12-04T10:00:00Z');
    const sink = await FileChainSink.open(path, { rotate: { maxAgeSeconds: 60 }, now: () => new Date(now) });
    await writeSequentially(sink, 1, 3);
    now += 59_000;
    await sink.write(issued(4));
    assert.equal((await listRotatedFiles(path)).length, 0, 'not yet 60 s old');
    now += 2_000;
    await sink.write(issued(5));
    await sink.close();
    const rotated = await listRotatedFiles(path);
    assert.deepEqual(
      rotated.map((f) => [f.firstSeq, f.lastSeq]),
      [[1, 4]],
    );
    assert.deepEqual(
      (await records(path)).map((r) => r.seq),
      [5],
    );
  });

  it('continues the chain after a restart, and the .checkpoint describes the active file', async () => {
    const first = await FileChainSink.open(path, { rotate: { maxBytes: 1500 } });
    await writeSequentially(first, 1, 30);
    await first.close();
    const cp = JSON.parse(await readFile(`${path}.checkpoint`, 'utf8')) as { size: number; hash: string };
    assert.equal(cp.size, (await readFile(path)).length);
    const second = await FileChainSink.open(path, { rotate: { maxBytes: 1500 } });
    const next = await second.write(issued(31));
    assert.equal(next.seq, 31);
    await writeSequentially(second, 32, 60);
    await second.close();
    const result = await verifyTrail(await listChainFiles(path));
    assert.equal(result.ok, true, JSON.stringify(result));
    assert.equal(result.count, 60);
  });

  for (const activeFile of ['missing', 'empty'] as const) {
    it(`a crash between the rename and the first write (active file ${activeFile}) resumes from the newest rotated file`, async () => {
      const sink = await FileChainSink.open(path);
      const before = await writeSequentially(sink, 1, 10);
      await sink.close();
      // The rename landed; the new file (and the .checkpoint at its start) did not: the
      // .checkpoint still describes the file that was renamed, as of record 6.
      const lines = (await readFile(path, 'utf8')).split('\n');
      const upTo6 = Buffer.byteLength(lines.slice(0, 6).join('\n')) + 1;
      await writeCheckpoint(path, { size: upTo6, hash: (before[5] as AuditRecord).hash }, false);
      await rename(path, rotatedFileName(path, 1, 10));
      if (activeFile === 'empty') await writeFile(path, '');

      const reopened = await FileChainSink.open(path, { rotate: { maxBytes: 100_000 } });
      const next = await reopened.write(issued(11));
      await reopened.close();
      assert.equal(next.seq, 11);
      assert.equal(next.prev_hash, (before[9] as AuditRecord).hash);
      const result = await verifyTrail(await listChainFiles(path));
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal(result.count, 11);
    });
  }

  it('after such a crash, a record edited in the rotated file since the .checkpoint stops startup', async () => {
    const sink = await FileChainSink.open(path);
    const before = await writeSequentially(sink, 1, 10);
    await sink.close();
    const lines = (await readFile(path, 'utf8')).split('\n');
    await writeCheckpoint(
      path,
      { size: Buffer.byteLength(lines.slice(0, 5).join('\n')) + 1, hash: (before[4] as AuditRecord).hash },
      false,
    );
    lines[7] = (lines[7] as string).replace('lease-8', 'lease-X');
    await writeFile(rotatedFileName(path, 1, 10), lines.join('\n'));
    await rm(path);
    await assert.rejects(FileChainSink.open(path), (err: unknown) => {
      assert.ok(isBrokerError(err) && err.reason === 'audit_tail_unverified', String(err));
      return true;
    });
  });

  it('an active file emptied after a rotation (records written since) stops startup', async () => {
    const sink = await FileChainSink.open(path, { rotate: { maxBytes: 1000 } });
    await writeSequentially(sink, 1, 20);
    await sink.close();
    assert.ok((await readFile(path)).length > 0);
    await truncate(path, 0);
    await assert.rejects(FileChainSink.open(path), (err: unknown) => isBrokerError(err));
  });

  it('syncs the rename before the .checkpoint names the new file (a crash between cannot strand the chain)', async () => {
    const steps: string[] = [];
    const written: AuditRecord[] = [];
    const checkpointText = (): Promise<string> => readFile(`${path}.checkpoint`, 'utf8').catch(() => '');
    const fileSystem = {
      ...nodeChainFileSystem,
      rename: async (from: string, to: string): Promise<void> => {
        steps.push('rename');
        await rename(from, to);
      },
      open: async (p: string, flags: string | number, mode: number) => {
        if (p === dir && steps.includes('rename')) {
          const cp = JSON.parse(await checkpointText()) as { hash: string };
          const atNewFile = cp.hash === written[0]?.hash;
          steps.push(
            atNewFile ? 'sync dir (.checkpoint at the new file)' : 'sync dir (.checkpoint still old)',
          );
        }
        return nodeChainFileSystem.open(p, flags, mode);
      },
    };
    const sink = await FileChainSink.open(path, { fileSystem, rotate: { maxBytes: 1 } });
    written.push(await sink.write(issued(1)));
    await sink.write(issued(2));
    await sink.close();
    assert.deepEqual(steps, [
      'rename',
      'sync dir (.checkpoint still old)',
      'sync dir (.checkpoint at the new file)',
    ]);
  });

  it('a rename that fails refuses the batch (fail closed), then healing finishes the rotation', async () => {
    let failRename = false;
    const fileSystem = {
      ...nodeChainFileSystem,
      rename: async (from: string, to: string): Promise<void> => {
        if (failRename) throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
        await rename(from, to);
      },
    };
    // maxBytes 1: every batch after the first record rotates first.
    const sink = await FileChainSink.open(path, {
      fileSystem,
      rotate: { maxBytes: 1 },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
    });
    await sink.write(issued(1));
    failRename = true;
    await assert.rejects(
      sink.write(issued(2)),
      (err: unknown) => isBrokerError(err) && err.code === 'UNAVAILABLE',
    );
    assert.deepEqual(await listRotatedFiles(path), [], 'nothing renamed');
    failRename = false;
    await eventually(() => sink.health().ok);
    const after = await sink.write(issued(3));
    await sink.close();
    const files = await trail(path);
    assert.deepEqual(
      files.map((f) => f.map((r) => r.type)),
      [['credential.issued'], ['audit.recovered'], ['credential.issued']],
    );
    assert.equal(after.seq, 3);
    assert.equal((await verifyTrail(await listChainFiles(path))).ok, true);
  });
});
