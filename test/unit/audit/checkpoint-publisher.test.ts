import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadCheckpointKey, type CheckpointKey } from '../../../src/audit/checkpoint-key.js';
import { CheckpointPublisher, checkpointsFile } from '../../../src/audit/checkpoint-publisher.js';
import { FileChainSink } from '../../../src/audit/file-chain-sink.js';
import { openNote, parseVkey, splitNotes } from '../../../src/audit/signed-note.js';
import { parseCheckpointText, type ChainCheckpoint } from '../../../src/audit/tlog-checkpoint.js';
import type { AuditRecord } from '../../../src/audit/types.js';
import { startOpsHttp, type RunningOpsHttp } from '../../../src/server/ops-http.js';
import { eventually } from '../../support/eventually.js';

const ORIGIN = 'svid-broker/example.org/broker';
const silent = { error: () => undefined, warn: () => undefined, info: () => undefined };

/** Every note in the notes file, verified with the key and parsed. */
async function notesIn(file: string, key: CheckpointKey): Promise<ChainCheckpoint[]> {
  const verifier = parseVkey(key.vkey);
  return splitNotes(await readFile(file, 'utf8')).map(({ note }) => {
    const opened = openNote(note, verifier);
    assert.ok(opened.ok, JSON.stringify(opened));
    return parseCheckpointText(opened.text);
  });
}

describe('audit/checkpoint-publisher: signed checkpoints over the durable chain head', () => {
  let dir: string;
  let path: string;
  let key: CheckpointKey;
  let sink: FileChainSink;
  let published: string[];
  const start = (intervalMs = 3_600_000): Promise<CheckpointPublisher> =>
    CheckpointPublisher.start({
      source: sink,
      key,
      origin: ORIGIN,
      notesFile: checkpointsFile(path),
      everyRecords: 3,
      intervalMs,
      fsync: true,
      publish: (note) => published.push(note),
      logger: silent,
    });
  const write = async (n: number): Promise<AuditRecord[]> => {
    const out: AuditRecord[] = [];
    for (let i = 0; i < n; i++) out.push(await sink.write({ type: 'credential.issued', agent: '', n: i }));
    return out;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svid-broker-ckpt-'));
    path = join(dir, 'audit.jsonl');
    key = await loadCheckpointKey(join(dir, 'key.pem'), ORIGIN);
    sink = await FileChainSink.open(path);
    published = [];
  });

  afterEach(async () => {
    await sink.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('signs the head at start, every N records, and the last head at close; each note is saved, then published', async () => {
    const publisher = await start();
    const records = await write(7);
    await eventually(() => published.length === 3);
    await publisher.close(() => sink.close());
    const notes = await notesIn(checkpointsFile(path), key);
    assert.deepEqual(
      notes.map((n) => n.size),
      [0, 3, 6, 7],
    );
    for (const note of notes.slice(1))
      assert.equal(note.hash, records[note.size - 1]?.hash, `seq ${note.size}`);
    assert.equal(notes[0]?.origin, ORIGIN);
    assert.equal(published.length, 4);
    assert.equal(publisher.latest(), published.at(-1));
  });

  it('signs on the interval when the head moved, and only then', async () => {
    const publisher = await start(10);
    const [record] = await write(1);
    await eventually(() => published.length === 2);
    assert.equal(parseCheckpointText(published[1]?.split('\n\n')[0] + '\n').hash, record?.hash);
    await publisher.checkpoint(); // what the timer calls
    assert.equal(published.length, 2, 'the head did not move: no new note');
    await publisher.close(() => sink.close());
  });

  it('a restart serves the latest note from the file without signing the same head again', async () => {
    const first = await start();
    await write(2);
    await first.close(() => sink.close());
    const before = await readFile(checkpointsFile(path), 'utf8');
    sink = await FileChainSink.open(path);
    const second = await start();
    assert.equal(second.latest(), splitNotes(before).at(-1)?.note);
    assert.equal(await readFile(checkpointsFile(path), 'utf8'), before);
    await second.close(() => sink.close());
  });

  it('the ops listener serves the latest note and the verifier key', async () => {
    const publisher = await start();
    await write(3);
    await eventually(() => published.length === 2);
    const ops: RunningOpsHttp = await startOpsHttp(
      {
        jwks: () => ({ keys: [] }),
        revoked: { page: async () => ({ entries: [], next: null }) as never },
        readiness: async () => ({ ready: true, dependencies: [] }) as never,
        logger: pino({ level: 'silent' }),
        checkpoints: publisher,
      },
      '127.0.0.1:0',
    );
    try {
      const noteRes = await fetch(`http://127.0.0.1:${ops.port}/v1/audit/checkpoint`);
      assert.equal(noteRes.status, 200);
      assert.match(noteRes.headers.get('content-type') ?? '', /^text\/plain/);
      const note = await noteRes.text();
      assert.equal(note, publisher.latest());
      const keyRes = await fetch(`http://127.0.0.1:${ops.port}/v1/audit/checkpoint-key`);
      const vkey = (await keyRes.text()).trim();
      assert.equal(vkey, key.vkey);
      const opened = openNote(note, parseVkey(vkey));
      assert.ok(opened.ok);
      assert.equal(parseCheckpointText(opened.text).size, 3);
    } finally {
      await ops.close();
      await publisher.close(() => sink.close());
    }
  });

  it('without checkpoints the endpoints are 404', async () => {
    const ops = await startOpsHttp(
      {
        jwks: () => ({ keys: [] }),
        revoked: { page: async () => ({}) as never },
        readiness: async () => ({ ready: true, dependencies: [] }) as never,
        logger: pino({ level: 'silent' }),
      },
      '127.0.0.1:0',
    );
    try {
      for (const p of ['/v1/audit/checkpoint', '/v1/audit/checkpoint-key']) {
        assert.equal((await fetch(`http://127.0.0.1:${ops.port}${p}`)).status, 404, p);
      }
    } finally {
      await ops.close();
    }
  });
});
