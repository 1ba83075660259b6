/**
 * The watch's own rules, without a server: history spans rotated files, a client that falls more
 * than the bound behind is ended RESOURCE_EXHAUSTED naming the last record it was handed.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { rotatedFileName } from '../../../src/audit/chain-files.js';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import type { AuditRecord } from '../../../src/audit/types.js';
import { AuditWatch } from '../../../src/broker/audit-watch.js';
import { isBrokerError } from '../../../src/errors.js';
import type { Caller } from '../../../src/identity/types.js';
import type { PolicyEngine } from '../../../src/policy/types.js';
import { eventually } from '../../support/eventually.js';

const CALLER: Caller = {
  spiffeId: 'spiffe://example.org/security/oncall',
  trustDomain: 'example.org',
  path: '/security/oncall',
  authMethod: 'x509',
} as Caller;
const allow = {
  authorize: () => ({ decision: 'allow', policyIds: ['p'], reasons: [], errors: [], policyDigest: 'd' }),
} as unknown as PolicyEngine;

const lines = (records: readonly AuditRecord[]): string =>
  records.map((r) => `${JSON.stringify(r)}\n`).join('');

describe('AuditWatch', () => {
  let dir: string;
  let keeper: MemoryAuditSink;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'svb-watch-'));
    keeper = new MemoryAuditSink();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function watcher(maxBuffered?: number): AuditWatch {
    return new AuditWatch({
      source: keeper,
      auditFile: join(dir, 'audit.jsonl'),
      policy: () => allow,
      audit: keeper,
      logger: pino({ level: 'silent' }),
      ...(maxBuffered === undefined ? {} : { maxBuffered }),
    });
  }

  async function writeN(n: number): Promise<void> {
    for (let i = 0; i < n; i++) await keeper.write({ type: 'task.begun', agent: 'spiffe://example.org/a' });
  }

  it('replays history across rotated files, then live records, each seq once', async () => {
    await writeN(6);
    const file = join(dir, 'audit.jsonl');
    // Records 1-3 rotated away, 4-6 in the active file.
    writeFileSync(rotatedFileName(file, 1, 3), lines(keeper.records.slice(0, 3)));
    writeFileSync(file, lines(keeper.records.slice(3)));
    const seen: number[] = [];
    const abort = new AbortController();
    const done = watcher().watch(
      CALLER,
      { fromId: (keeper.records[1] as AuditRecord).id, types: [], agent: '' },
      async (r) => {
        seen.push(r.seq);
      },
      abort.signal,
    );
    // The admin.read (seq 7) is live; the history runs 3..6 first.
    await eventually(() => seen.includes(7));
    await writeN(1);
    await eventually(() => seen.includes(8));
    abort.abort();
    await done;
    assert.deepEqual(seen, [3, 4, 5, 6, 7, 8]);
  });

  it('ends RESOURCE_EXHAUSTED naming the last id sent when the client falls too far behind', async () => {
    writeFileSync(join(dir, 'audit.jsonl'), '');
    const sent: AuditRecord[] = [];
    let release: () => void = () => undefined;
    const stuck = new Promise<void>((resolve) => (release = resolve));
    const abort = new AbortController();
    const done = watcher(5).watch(
      CALLER,
      { fromId: '', types: [], agent: '' },
      async (r) => {
        sent.push(r);
        if (sent.length === 2) await stuck; // the client stops reading
      },
      abort.signal,
    );
    await eventually(() => sent.length === 1); // its own admin.read
    await writeN(1);
    await eventually(() => sent.length === 2);
    await writeN(10); // more than 5 wait
    release();
    await assert.rejects(done, (err: unknown) => {
      assert.ok(isBrokerError(err));
      assert.equal(err.code, 'RESOURCE_EXHAUSTED');
      assert.ok(err.message.includes((sent[1] as AuditRecord).id), err.message);
      return true;
    });
    assert.equal(sent.length, 2, 'nothing after the overflow was sent');
  });
});
