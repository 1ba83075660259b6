/**
 * The broker as wired by main.ts: the chain file rotates, checkpoints are signed and served on the
 * ops listener, and after shutdown `audit verify FILE... --checkpoints` accepts the whole trail.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listChainFiles } from '../../src/audit/chain-files.js';
import { openNote, parseVkey } from '../../src/audit/signed-note.js';
import { parseCheckpointText } from '../../src/audit/tlog-checkpoint.js';
import { verifyTrail } from '../../src/audit/verify-trail.js';
import { startHarness, type Harness } from '../support/broker-harness.js';

describe('integration: audit rotation and signed checkpoints', () => {
  let h: Harness | undefined;
  let dir: string;
  let file: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'svb-audit-ckpt-'));
    file = join(dir, 'audit.jsonl');
    h = await startHarness({
      store: 'memory',
      config: { audit: { file, fsync: true, rotate: { maxBytes: 3000 }, checkpoints: { everyRecords: 4 } } },
    });
  });
  after(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves signed notes of the head, and the whole rotated trail verifies against them after shutdown', async () => {
    const harness = h as Harness;
    const client = await harness.client('demo');
    for (let i = 0; i < 6; i++) {
      const task = await client.beginTask({ environment: 'dev', intent: `ckpt ${i}` });
      await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    }
    const base = `http://127.0.0.1:${harness.broker.httpPort}`;
    const vkey = (await (await fetch(`${base}/v1/audit/checkpoint-key`)).text()).trim();
    assert.match(vkey, /^svid-broker\/example\.org\/broker\+[0-9a-f]{8}\+/);
    const noteRes = await fetch(`${base}/v1/audit/checkpoint`);
    assert.equal(noteRes.status, 200);
    const opened = openNote(await noteRes.text(), parseVkey(vkey));
    assert.ok(opened.ok, JSON.stringify(opened));
    assert.ok(parseCheckpointText(opened.text).size >= 4, 'a note signed after records were written');
    // The signing key is a secret: not in the logs, not in what the ops listener serves.
    const pem = await readFile(`${file}.checkpoint-key`, 'utf8');
    const keyBody = pem.split('\n')[1] as string;
    assert.ok(keyBody.length > 40);
    const served = [vkey, ...harness.logs.lines].join('\n');
    assert.ok(!served.includes(keyBody), 'the private key leaked');

    await harness.close();
    h = undefined;
    const files = await listChainFiles(file);
    assert.ok(files.length >= 2, 'the file rotated');
    const notes = `${file}.checkpoints`;
    const result = await verifyTrail(files, {
      path: notes,
      text: await readFile(notes, 'utf8'),
      verifier: parseVkey(vkey),
    });
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(
      result.checkpoints?.latest,
      result.lastSeq,
      'the last note, signed at shutdown, covers the whole trail',
    );
  });
});
