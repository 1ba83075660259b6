/** A real trail on disk for verifier tests: rotated files, the active one, signed checkpoints, the vkey. */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpointKey } from '../../../src/audit/checkpoint-key.js';
import { CheckpointPublisher, checkpointsFile } from '../../../src/audit/checkpoint-publisher.js';
import { listChainFiles } from '../../../src/audit/chain-files.js';
import { FileChainSink } from '../../../src/audit/file-chain-sink.js';

export interface TrailFixture {
  dir: string;
  /** Every file of the chain, in chain order (the active file last). */
  files: string[];
  notesFile: string;
  vkey: string;
}

const silent = { error: () => undefined, warn: () => undefined, info: () => undefined };

/** `records` records in files of about `maxBytes`, a checkpoint every `everyRecords` and at the end. */
export async function buildTrail(records = 40, maxBytes = 2500, everyRecords = 7): Promise<TrailFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'svid-broker-trail-'));
  const path = join(dir, 'audit.jsonl');
  const origin = 'svid-broker/example.org/broker';
  const key = await loadCheckpointKey(join(dir, 'checkpoint-key.pem'), origin);
  const sink = await FileChainSink.open(path, {
    rotate: { maxBytes },
    source: 'spiffe://example.org/broker',
  });
  const publisher = await CheckpointPublisher.start({
    source: sink,
    key,
    origin,
    notesFile: checkpointsFile(path),
    everyRecords,
    intervalMs: 3_600_000,
    fsync: false,
    publish: () => undefined,
    logger: silent,
  });
  for (let n = 1; n <= records; n++) {
    await sink.write({
      type: 'credential.issued',
      agent: 'spiffe://example.org/agent/a',
      lease_id: `lease-${n}`,
    });
  }
  await publisher.close(() => sink.close());
  return { dir, files: await listChainFiles(path), notesFile: checkpointsFile(path), vkey: key.vkey };
}

/** Rewrites a file's lines with `edit` (which gets them without the final empty one). */
export async function editLines(file: string, edit: (lines: string[]) => string[]): Promise<void> {
  const lines = (await readFile(file, 'utf8')).split('\n').slice(0, -1);
  const out = edit(lines);
  await writeFile(file, out.length ? `${out.join('\n')}\n` : '');
}
