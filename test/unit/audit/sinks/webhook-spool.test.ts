import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebhookSpool } from '../../../../src/audit/sinks/webhook-spool.js';
import type { AuditRecord } from '../../../../src/audit/types.js';

function records(from: number, count: number): AuditRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    type: 'task.begun',
    agent: 'spiffe://example.org/agents/demo',
    id: `rec-${from + i}`,
    time: '2026-12-04T10:00:00.000Z',
    source: 'spiffe://example.org/broker',
    seq: from + i,
    prev_hash: '',
    hash: '',
  }));
}

describe('audit/sinks/webhook-spool', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'svb-spool-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const lines = (): number =>
    readFileSync(join(dir, 'spool.jsonl'), 'utf8').split('\n').filter(Boolean).length;

  it('removes acknowledged records in bulk: rewritten once 1000 are acknowledged, emptied at the next start', () => {
    const spool = new WebhookSpool(dir);
    assert.deepEqual(spool.open().records, []);
    spool.append(records(1, 1200));
    spool.acknowledge(999);
    assert.equal(lines(), 1200, 'a few acknowledged records stay until there are enough of them');
    spool.acknowledge(1000);
    assert.equal(lines(), 200, 'rewritten with what is still owed');
    assert.equal(spool.size, 200);
    spool.acknowledge(1100);
    spool.close();

    const reopened = new WebhookSpool(dir);
    assert.deepEqual(
      reopened.open().records.map((r) => r.seq),
      Array.from({ length: 100 }, (_, i) => 1101 + i),
      'a restart replays exactly what was not acknowledged, in order',
    );
    assert.equal(lines(), 100);
    reopened.acknowledge(1200);
    reopened.close();
    assert.deepEqual(new WebhookSpool(dir).open().records, []);
    assert.equal(lines(), 0);
  });
});
