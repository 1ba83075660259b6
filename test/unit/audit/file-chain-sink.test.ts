import assert from 'node:assert/strict';
import { constants as fsConstants, statSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileChainSink } from '../../../src/audit/file-chain-sink.js';
import { GENESIS_HASH, verifyChain } from '../../../src/audit/hash-chain.js';
import type { AuditEventInput, AuditRecord } from '../../../src/audit/types.js';
import { isBrokerError } from '../../../src/errors.js';
import { eventually } from '../../support/eventually.js';
import { createFsSpy } from './fs-spy.js';

/** Heal attempts a few milliseconds apart, so outages in these tests end quickly. */
const FAST = { baseDelayMs: 1, maxDelayMs: 5 };

/** A SinkLogger that keeps what it was told. */
function captureLogger(): {
  lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }>;
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
} {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at =
    (level: string) =>
    (obj: object, msg: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { lines, error: at('error'), warn: at('warn'), info: at('info') };
}

const RFC3339_UTC_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const issued = (n: number): AuditEventInput => ({
  type: 'credential.issued',
  agent: 'spiffe://example.org/agent/a',
  lease_id: `lease-${n}`,
});

async function fileLines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  assert.ok(text.endsWith('\n'), 'file ends with a newline');
  return text.slice(0, -1).split('\n');
}

function reasonOf(err: unknown): string {
  return isBrokerError(err) ? err.reason : `not a BrokerError: ${String(err)}`;
}

describe('audit/file-chain-sink', () => {
  let dir: string;
  let path: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svid-broker-audit-'));
    path = join(dir, 'nested', 'deeper', 'audit.jsonl');
  });

  afterEach(async () => {
    await chmod(dir, 0o700).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('writes one chained JSON line per record, creating the directory and a 0600 file', async () => {
    const sink = await FileChainSink.open(path);
    const records: AuditRecord[] = [];
    for (let i = 0; i < 5; i += 1) records.push(await sink.write(issued(i)));
    await sink.close();

    const lines = await fileLines(path);
    assert.equal(lines.length, 5);
    assert.deepEqual(
      lines.map((line) => JSON.parse(line)),
      records,
    );
    assert.deepEqual(verifyChain(lines), { ok: true, count: 5, lastHash: records[4]?.hash, lastSeq: 5 });
    assert.equal(records[0]?.prev_hash, GENESIS_HASH);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    for (const record of records) {
      assert.match(record.time, RFC3339_UTC_MS);
      assert.match(record.id, UUID_V7);
      assert.equal(record.type, 'credential.issued');
      assert.equal(record.agent, 'spiffe://example.org/agent/a');
    }
    const ids = records.map((r) => r.id);
    assert.deepEqual([...ids].sort(), ids, 'ids sort in write order');
  });

  it('uses the injected clock and id factory', async () => {
    let n = 0;
    const sink = await FileChainSink.open(path, {
      now: () => new Date(Date.UTC(2030, 5, 1, 12, 0, 0, 7)),
      idFactory: () => `fixed-${(n += 1)}`,
    });
    const record = await sink.write(issued(0));
    await sink.close();
    assert.equal(record.time, '2030-06-01T12:00:00.007Z');
    assert.equal(record.id, 'fixed-1');
  });

  it('continues the chain across close and reopen', async () => {
    const first = await FileChainSink.open(path);
    let last: AuditRecord | undefined;
    for (let i = 0; i < 3; i += 1) last = await first.write(issued(i));
    await first.close();

    const second = await FileChainSink.open(path);
    const next = await second.write(issued(3));
    await second.close();

    assert.equal(next.prev_hash, last?.hash);
    const lines = await fileLines(path);
    assert.deepEqual(verifyChain(lines), { ok: true, count: 4, lastHash: next.hash, lastSeq: 4 });
  });

  it('group commit: 200 concurrent writes all resolve, in one valid chain, with fewer syncs than writes', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem });
    const records = await Promise.all(Array.from({ length: 200 }, (_, i) => sink.write(issued(i))));
    await sink.close();

    const lines = await fileLines(path);
    assert.equal(lines.length, 200);
    assert.deepEqual(verifyChain(lines), {
      ok: true,
      count: 200,
      lastHash: records[199]?.hash,
      lastSeq: 200,
    });
    // Chained in call order: line i is the record of the i-th call.
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as AuditRecord).lease_id),
      records.map((_, i) => `lease-${i}`),
    );
    assert.ok(spy.counts.datasyncs >= 1);
    assert.ok(spy.counts.datasyncs < 200, `${spy.counts.datasyncs} syncs for 200 writes`);
  });

  it('group commit: writes arriving while a sync is in flight share the next sync', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem });
    // Requests arriving on separate turns of the event loop, as from the network.
    const pending: Array<Promise<AuditRecord>> = [];
    for (let i = 0; i < 64; i += 1) {
      pending.push(sink.write(issued(i)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
    await sink.close();
    assert.equal(verifyChain(await fileLines(path)).ok, true);
    assert.ok(spy.counts.datasyncs < 64, `${spy.counts.datasyncs} syncs for 64 writes`);
  });

  it('resolves a write only after its sync', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem });
    await sink.write(issued(0));
    assert.equal(spy.counts.datasyncs, 1);
    await sink.close();
  });

  it('opens the chain file with O_DSYNC (each write durable when it returns), and without it when fsync is off', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem });
    await sink.write(issued(0));
    await sink.close();
    const unsynced = createFsSpy();
    const other = await FileChainSink.open(`${path}.nosync`, {
      fileSystem: unsynced.fileSystem,
      fsync: false,
    });
    await other.close();
    const dsync = (s: ReturnType<typeof createFsSpy>, file: string): boolean =>
      s.opened.some((o) => o.path === file && (o.flags & fsConstants.O_DSYNC) !== 0);
    assert.equal(dsync(spy, path), true);
    assert.equal(dsync(unsynced, `${path}.nosync`), false);
    assert.equal(spy.counts.datasyncs, 1, 'the O_DSYNC write was the sync');
  });

  it('fsync: false skips the sync', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem, fsync: false });
    await Promise.all([sink.write(issued(0)), sink.write(issued(1))]);
    await sink.close();
    assert.equal(spy.counts.datasyncs, 0);
    assert.equal(verifyChain(await fileLines(path)).ok, true);
  });

  it('fails closed on a write error, cuts what it wrote of the batch, and heals once writes succeed', async () => {
    const spy = createFsSpy();
    const logs = captureLogger();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem, logger: logs, retry: FAST });
    const kept = await sink.write(issued(0));
    const goodSize = (await stat(path)).size;
    // The disk fills 40 bytes into the batch: a torn record lands, then ENOSPC.
    Object.assign(spy.faults, { write: 'ENOSPC', writeAfter: 40 });
    const results = await Promise.allSettled([sink.write(issued(1)), sink.write(issued(2))]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    // Down: refused at once, with a generic message; the cause is logged once, not per refusal.
    for (let i = 3; i < 6; i += 1) {
      await assert.rejects(sink.write(issued(i)), (err: unknown) => {
        assert.equal(isBrokerError(err) && err.code, 'UNAVAILABLE');
        assert.equal(reasonOf(err), 'audit_unavailable');
        assert.doesNotMatch((err as Error).message, /audit\.jsonl/, 'the caller-facing message has no path');
        return true;
      });
    }
    const health = sink.health();
    assert.equal(health.ok, false);
    assert.match(health.ok ? '' : health.cause, /ENOSPC/);
    await eventually(() => (statSync(path).size === goodSize ? true : undefined));
    await eventually(() => logs.lines.length > 0);
    assert.equal(logs.lines.length, 1);
    assert.equal(logs.lines[0]?.level, 'error');
    assert.equal(logs.lines[0]?.obj.errno, 'ENOSPC');
    assert.equal(logs.lines[0]?.obj.path, path);
    assert.equal(logs.lines[0]?.obj.free_bytes, 0);

    delete spy.faults.write;
    await eventually(() => sink.health().ok);
    const next = await sink.write(issued(6));
    await sink.close();

    const lines = await fileLines(path);
    assert.equal(verifyChain(lines).ok, true);
    const records = lines.map((line) => JSON.parse(line) as AuditRecord);
    assert.deepEqual(
      records.map((r) => r.type),
      ['credential.issued', 'audit.recovered', 'credential.issued'],
    );
    const recovered = records[1] as AuditRecord;
    assert.equal(recovered.prev_hash, kept.hash, 'the chain continues from the last synced record');
    assert.equal(recovered.refused_writes, 5, 'the failed batch and the three refused while down');
    assert.equal(typeof recovered.down_ms, 'number');
    assert.match(String(recovered.cause), /ENOSPC/);
    assert.equal(next.prev_hash, recovered.hash);
    assert.deepEqual(
      logs.lines.map((l) => l.level),
      ['error', 'info'],
    );
  });

  it('cuts a batch whose sync failed, rejecting writes queued behind it too, then heals', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem, retry: FAST });
    spy.faults.datasync = 'EIO';
    const first = sink.write(issued(0));
    // Queued while the first flush is in flight.
    await new Promise((resolve) => setImmediate(resolve));
    const second = sink.write(issued(1));
    const results = await Promise.allSettled([first, second]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    await assert.rejects(sink.write(issued(2)), (err: unknown) => reasonOf(err) === 'audit_unavailable');
    delete spy.faults.datasync;
    await eventually(() => sink.health().ok);
    await sink.write(issued(3));
    await sink.close();
    const lines = await fileLines(path);
    assert.deepEqual(
      lines.map((line) => (JSON.parse(line) as AuditRecord).type),
      ['audit.recovered', 'credential.issued'],
    );
    assert.equal(verifyChain(lines).ok, true);
  });

  it('logs a failure that persists once per cause, not once per attempt', async () => {
    const spy = createFsSpy();
    const logs = captureLogger();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem, logger: logs, retry: FAST });
    spy.faults.write = 'ENOSPC';
    await assert.rejects(sink.write(issued(0)));
    await eventually(() => spy.counts.writes >= 5);
    spy.faults.write = 'EIO';
    const writes = spy.counts.writes;
    await eventually(() => spy.counts.writes >= writes + 5);
    delete spy.faults.write;
    await eventually(() => sink.health().ok);
    await sink.close();
    assert.deepEqual(
      logs.lines.map((l) => [l.level, l.obj.errno]),
      [
        ['error', 'ENOSPC'],
        ['warn', 'EIO'],
        ['info', undefined],
      ],
    );
  });

  it('stops trying to heal once closed', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, { fileSystem: spy.fileSystem, retry: FAST });
    spy.faults.write = 'ENOSPC';
    await assert.rejects(sink.write(issued(0)));
    await sink.close();
    const writes = spy.counts.writes;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(spy.counts.writes, writes);
    await assert.rejects(sink.write(issued(1)), (err: unknown) => reasonOf(err) === 'audit_closed');
  });

  it('closed while down, cuts what reached the file of the refused batch', async () => {
    const spy = createFsSpy();
    const sink = await FileChainSink.open(path, {
      fileSystem: spy.fileSystem,
      retry: { baseDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    await sink.write(issued(0));
    const goodSize = (await stat(path)).size;
    // The batch reaches the file, its sync fails: the caller is refused.
    spy.faults.datasync = 'EIO';
    await assert.rejects(sink.write(issued(1)), (err: unknown) => reasonOf(err) === 'audit_unavailable');
    await sink.close();
    assert.equal((await stat(path)).size, goodSize);
    assert.equal((await fileLines(path)).length, 1);
  });

  it('rejects writes after close; close flushes accepted writes and is idempotent', async () => {
    const sink = await FileChainSink.open(path);
    const accepted = sink.write(issued(0));
    const closed = sink.close();
    await assert.rejects(sink.write(issued(1)), (err: unknown) => reasonOf(err) === 'audit_closed');
    await accepted;
    await closed;
    await sink.close();
    assert.equal((await fileLines(path)).length, 1);
  });

  it('refuses to open when the directory cannot be created (a file is in the way)', async () => {
    const blocker = join(dir, 'blocker');
    await writeFile(blocker, 'not a directory');
    await assert.rejects(FileChainSink.open(join(blocker, 'audit.jsonl')), (err: unknown) => {
      assert.equal(reasonOf(err), 'audit_unavailable');
      assert.match((err as Error).message, /cannot open/);
      return true;
    });
  });

  it('repairs its own interrupted write at startup and records the repair', async () => {
    const sink = await FileChainSink.open(path);
    for (let i = 0; i < 3; i += 1) await sink.write(issued(i));
    await sink.close();
    const { size: completeSize } = await stat(path);
    const lastHash = JSON.parse((await fileLines(path))[2] ?? '').hash as string;
    const fragment = '{"id":"0194254d-b4ae-7000-8000-00000000000","time":"2025-';
    await appendFile(path, fragment);

    const reopened = await FileChainSink.open(path);
    await reopened.write(issued(3));
    await reopened.close();
    const lines = await fileLines(path);
    assert.deepEqual(verifyChain(lines).ok, true);
    assert.equal(lines.length, 5);
    const repaired = JSON.parse(lines[3] ?? '') as AuditRecord;
    assert.equal(repaired.type, 'audit.repaired');
    assert.equal(repaired.prev_hash, lastHash);
    assert.equal(repaired.offset, completeSize);
    assert.equal(repaired.removed_bytes, Buffer.byteLength(fragment));
    assert.match(String(repaired.removed_sha256), /^[0-9a-f]{64}$/);
  });

  it('repairs a file whose only content is its own partial record', async () => {
    await mkdir(join(dir, 'nested', 'deeper'), { recursive: true });
    await writeFile(path, '{"id":"x"');
    const sink = await FileChainSink.open(path);
    await sink.close();
    const [only] = (await fileLines(path)).map((line) => JSON.parse(line) as AuditRecord);
    assert.equal(only?.type, 'audit.repaired');
    assert.equal(only?.prev_hash, GENESIS_HASH);
  });

  for (const [what, tail] of [
    ['bytes that are not the start of a record', 'echo pwned'],
    [
      'a partial record that names another predecessor',
      `{"id":"x","type":"t","prev_hash":"${'a'.repeat(64)}",`,
    ],
  ] as const) {
    it(`refuses a torn tail of ${what}, and leaves the file untouched`, async () => {
      const sink = await FileChainSink.open(path);
      for (let i = 0; i < 2; i += 1) await sink.write(issued(i));
      await sink.close();
      const { size: completeSize } = await stat(path);
      await appendFile(path, tail);
      const { size: damagedSize } = await stat(path);
      await assert.rejects(FileChainSink.open(path), (err: unknown) => {
        assert.equal(reasonOf(err), 'audit_partial_record');
        assert.match((err as Error).message, new RegExp(`truncate -s ${completeSize} `));
        return true;
      });
      assert.equal((await stat(path)).size, damagedSize);
    });
  }

  it('refuses a torn tail after a last record that does not verify', async () => {
    const sink = await FileChainSink.open(path);
    for (let i = 0; i < 2; i += 1) await sink.write(issued(i));
    await sink.close();
    const lines = await fileLines(path);
    lines[1] = (lines[1] ?? '').replace('lease-1', 'lease-9');
    await writeFile(path, `${lines.join('\n')}\n{"id":"`);
    await assert.rejects(FileChainSink.open(path), (err: unknown) => reasonOf(err) === 'audit_chain_damaged');
  });

  it('refuses to continue from a tail record whose own hash does not verify', async () => {
    const sink = await FileChainSink.open(path);
    for (let i = 0; i < 3; i += 1) await sink.write(issued(i));
    await sink.close();
    const lines = await fileLines(path);
    const tampered = JSON.parse(lines[2] ?? '') as Record<string, unknown>;
    tampered.lease_id = 'lease-forged';
    lines[2] = JSON.stringify(tampered);
    await writeFile(path, `${lines.join('\n')}\n`);
    await assert.rejects(FileChainSink.open(path), (err: unknown) => {
      assert.equal(reasonOf(err), 'audit_chain_damaged');
      assert.match((err as Error).message, /hash mismatch/);
      return true;
    });
  });

  it('refuses to append when a record before the last does not verify since the checkpoint', async () => {
    const sink = await FileChainSink.open(path);
    for (let i = 0; i < 3; i += 1) await sink.write(issued(i));
    await sink.close(); // checkpoint: after record 2
    const reopened = await FileChainSink.open(path);
    for (let i = 3; i < 8; i += 1) await reopened.write(issued(i));
    await reopened.close(); // checkpoint: after record 7
    // Roll the checkpoint back as if the broker had crashed before saving it, then edit a record
    // three lines from the end: the last record's own hash still verifies.
    await writeFile(`${path}.checkpoint`, await checkpointAfter(path, 3));
    const lines = await fileLines(path);
    const tampered = JSON.parse(lines[5] ?? '') as Record<string, unknown>;
    tampered.lease_id = 'lease-forged';
    lines[5] = JSON.stringify(tampered);
    await writeFile(path, `${lines.join('\n')}\n`);
    await assert.rejects(FileChainSink.open(path), (err: unknown) => {
      assert.equal(reasonOf(err), 'audit_tail_unverified');
      assert.match((err as Error).message, /does not verify: hash mismatch/);
      assert.match((err as Error).message, /start a new trail/);
      return true;
    });
  });

  it('without a checkpoint verifies the whole chain; a file shorter than its checkpoint is refused', async () => {
    const sink = await FileChainSink.open(path);
    for (let i = 0; i < 4; i += 1) await sink.write(issued(i));
    await sink.close();
    const saved = JSON.parse(await readFile(`${path}.checkpoint`, 'utf8')) as { size: number; hash: string };
    assert.equal(saved.size, (await stat(path)).size);
    const lines = await fileLines(path);
    const tampered = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    tampered.lease_id = 'lease-forged';
    await rm(`${path}.checkpoint`);
    await writeFile(path, `${[JSON.stringify(tampered), ...lines.slice(1)].join('\n')}\n`);
    await assert.rejects(
      FileChainSink.open(path),
      (err: unknown) => reasonOf(err) === 'audit_tail_unverified',
    );

    await writeFile(path, `${lines.slice(0, 2).join('\n')}\n`);
    await writeFile(`${path}.checkpoint`, JSON.stringify(saved));
    await assert.rejects(FileChainSink.open(path), (err: unknown) => {
      assert.equal(reasonOf(err), 'audit_tail_unverified');
      assert.match((err as Error).message, /shorter than its last checkpoint/);
      return true;
    });
  });

  it('saves checkpoints one at a time, so the timer and close never race on the temporary file', async () => {
    const logger = captureLogger();
    const sink = await FileChainSink.open(path, { checkpointIntervalMs: 1, logger });
    for (let i = 0; i < 200; i += 1) await sink.write(issued(i));
    await sink.close();
    assert.deepEqual(
      logger.lines.filter((l) => l.msg === 'audit checkpoint not saved'),
      [],
    );
    const saved = JSON.parse(await readFile(`${path}.checkpoint`, 'utf8')) as { size: number };
    assert.equal(saved.size, (await stat(path)).size);
  });

  it('finds the tail record across read chunks (records larger than one chunk)', async () => {
    const big = 'x'.repeat(150 * 1024);
    const sink = await FileChainSink.open(path);
    await sink.write({ ...issued(0), blob: big });
    const last = await sink.write({ ...issued(1), blob: big });
    await sink.close();
    const reopened = await FileChainSink.open(path);
    const next = await reopened.write(issued(2));
    await reopened.close();
    assert.equal(next.prev_hash, last.hash);
  });

  it('rejects an event with a reserved field without breaking the chain', async () => {
    const sink = await FileChainSink.open(path);
    await sink.write(issued(0));
    await assert.rejects(sink.write({ ...issued(1), hash: 'forged' }), /reserved field/);
    await sink.write(issued(2));
    await sink.close();
    assert.deepEqual(verifyChain(await fileLines(path)).ok, true);
  });
});

/** A checkpoint as the sink writes it, after the first `n` records of the file. */
async function checkpointAfter(file: string, n: number): Promise<string> {
  const lines = (await readFile(file, 'utf8')).split('\n').slice(0, n);
  const size = Buffer.byteLength(lines.join('\n')) + 1;
  const hash = (JSON.parse(lines[n - 1] ?? '') as { hash: string }).hash;
  return JSON.stringify({ size, hash });
}
