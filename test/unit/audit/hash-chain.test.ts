import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import canonicalizeExport from 'canonicalize';
import {
  computeRecordHash,
  GENESIS_HASH,
  sealRecord,
  verifyChain,
  type RecordWithoutHash,
} from '../../../src/audit/hash-chain.js';
import type { AuditEventInput } from '../../../src/audit/types.js';

const canonicalize = (
  typeof canonicalizeExport === 'function' ? canonicalizeExport : canonicalizeExport.default
) as (input: unknown) => string | undefined;

function buildChain(n: number): string[] {
  const lines: string[] = [];
  let prev = GENESIS_HASH;
  for (let i = 0; i < n; i += 1) {
    const event: AuditEventInput = {
      type: 'credential.issued',
      agent: `spiffe://example.org/agent/${i}`,
      n: i,
    };
    const record = sealRecord(prev, event, {
      id: `id-${i}`,
      time: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(),
      seq: i + 1,
      source: 'spiffe://example.org/broker',
    });
    prev = record.hash;
    lines.push(JSON.stringify(record));
  }
  return lines;
}

const META = { id: 'id', time: 't', seq: 1, source: 'svid-broker' };

describe('audit/hash-chain', () => {
  it('GENESIS_HASH is 64 zeros', () => {
    assert.equal(GENESIS_HASH, '0000000000000000000000000000000000000000000000000000000000000000');
  });

  it('known answer: sha256(prev_hash || RFC 8785 JSON of the record without hash)', () => {
    const record: RecordWithoutHash = {
      type: 'credential.issued',
      agent: 'spiffe://example.org/agent/a',
      time: '2025-01-02T03:04:05.678Z',
      id: '0194254d-b4ae-7000-8000-000000000000',
      lease_id: 'lease-1',
      ttl_seconds: 300,
      nested: { z: 'é', a: [1, 2.5, true, null] },
      source: 'spiffe://example.org/broker',
      seq: 7,
      prev_hash: GENESIS_HASH,
    };
    // Written out by hand: keys sorted by code unit at every level, no whitespace, UTF-8 as is.
    const canonical =
      '{"agent":"spiffe://example.org/agent/a","id":"0194254d-b4ae-7000-8000-000000000000",' +
      '"lease_id":"lease-1","nested":{"a":[1,2.5,true,null],"z":"é"},' +
      `"prev_hash":"${GENESIS_HASH}","seq":7,"source":"spiffe://example.org/broker",` +
      '"time":"2025-01-02T03:04:05.678Z","ttl_seconds":300,"type":"credential.issued"}';
    assert.equal(canonicalize(record), canonical);
    const expected = createHash('sha256')
      .update(GENESIS_HASH + canonical, 'utf8')
      .digest('hex');
    assert.equal(computeRecordHash(GENESIS_HASH, record), expected);
    // Pinned so a change of library or algorithm cannot pass silently.
    assert.equal(expected, '4bd7e55cac9f397aec153c3348ad3a9f024222f7796aa5a5fd2324ce0bb39753');
  });

  it('the first record links to the genesis hash', () => {
    const record = sealRecord(
      GENESIS_HASH,
      { type: 'policy.reloaded', agent: '' },
      { id: 'id-0', time: '2025-01-01T00:00:00.000Z', seq: 1, source: 'svid-broker' },
    );
    assert.equal(record.prev_hash, GENESIS_HASH);
    assert.match(record.hash, /^[0-9a-f]{64}$/);
  });

  it('a chain of N records verifies', () => {
    const lines = buildChain(50);
    const result = verifyChain(lines);
    assert.deepEqual(result, {
      ok: true,
      count: 50,
      lastHash: JSON.parse(lines[49] ?? '').hash,
      lastSeq: 50,
    });
  });

  it('an empty chain verifies with the genesis hash', () => {
    assert.deepEqual(verifyChain([]), { ok: true, count: 0, lastHash: GENESIS_HASH });
  });

  it('a trailing empty line (file split on newline) is tolerated; an inner one is not', () => {
    const lines = buildChain(3);
    assert.equal(verifyChain([...lines, '']).ok, true);
    const inner = verifyChain([lines[0] ?? '', '', lines[1] ?? '']);
    assert.deepEqual(inner, { ok: false, count: 1, line: 2, error: 'unparseable json' });
  });

  it('a tampered field in the middle is reported at that line', () => {
    const lines = buildChain(10);
    const record = JSON.parse(lines[4] ?? '') as Record<string, unknown>;
    record.agent = 'spiffe://example.org/someone-else';
    lines[4] = JSON.stringify(record);
    assert.deepEqual(verifyChain(lines), {
      ok: false,
      count: 4,
      line: 5,
      id: 'id-4',
      error: 'hash mismatch',
    });
  });

  it('a tampered hash is reported (at that line as hash mismatch)', () => {
    const lines = buildChain(5);
    const record = JSON.parse(lines[2] ?? '') as Record<string, unknown>;
    record.hash = 'f'.repeat(64);
    lines[2] = JSON.stringify(record);
    const result = verifyChain(lines);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.line, 3);
    assert.equal(!result.ok && result.error, 'hash mismatch');
  });

  it('a deleted line shows as prev_hash mismatch at the next record', () => {
    const lines = buildChain(10);
    lines.splice(6, 1);
    assert.deepEqual(verifyChain(lines), {
      ok: false,
      count: 6,
      line: 7,
      id: 'id-7',
      error: 'prev_hash mismatch',
    });
  });

  it('reordered lines break the chain', () => {
    const lines = buildChain(10);
    const [a, b] = [lines[3] ?? '', lines[4] ?? ''];
    lines[3] = b;
    lines[4] = a;
    assert.deepEqual(verifyChain(lines), {
      ok: false,
      count: 3,
      line: 4,
      id: 'id-4',
      error: 'prev_hash mismatch',
    });
  });

  it('unparseable json, non-objects and missing fields are named', () => {
    const lines = buildChain(2);
    assert.deepEqual(verifyChain([lines[0] ?? '', '{"id":']), {
      ok: false,
      count: 1,
      line: 2,
      error: 'unparseable json',
    });
    assert.equal((verifyChain(['[1,2]']) as { error: string }).error, 'not a json object');
    const record = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    delete record.time;
    assert.deepEqual(verifyChain([JSON.stringify(record)]), {
      ok: false,
      count: 0,
      line: 1,
      id: 'id-0',
      error: 'missing field time',
    });
  });

  it('sealRecord refuses reserved fields and non-JSON values without advancing', () => {
    for (const field of ['id', 'time', 'source', 'seq', 'prev_hash', 'hash']) {
      assert.throws(
        () => sealRecord(GENESIS_HASH, { type: 'task.begun', agent: '', [field]: 'x' }, META),
        /reserved field/,
      );
    }
    assert.throws(() => sealRecord(GENESIS_HASH, { type: 'task.begun', agent: '', n: 1n }, META), /JSON/);
  });

  it('the hash covers what the line shows: undefined members are dropped before hashing', () => {
    const record = sealRecord(GENESIS_HASH, { type: 'task.begun', agent: '', gone: undefined }, META);
    assert.equal(Object.hasOwn(record, 'gone'), false);
    assert.equal(verifyChain([JSON.stringify(record)]).ok, true);
  });

  it('seq must follow its predecessor: a gap, a repeat or a missing seq breaks the chain', () => {
    const lines = buildChain(3);
    const reseq = (line: string, seq: number | undefined, prev: string): string => {
      const { hash: _drop, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const unsealed = { ...rest, prev_hash: prev } as Record<string, unknown>;
      if (seq === undefined) delete unsealed.seq;
      else unsealed.seq = seq;
      return JSON.stringify({ ...unsealed, hash: computeRecordHash(prev, unsealed as RecordWithoutHash) });
    };
    const first = JSON.parse(lines[0] as string) as { hash: string };
    const gap = reseq(lines[1] as string, 5, first.hash);
    assert.deepEqual(verifyChain([lines[0] as string, gap]), {
      ok: false,
      count: 1,
      line: 2,
      id: 'id-1',
      error: 'seq 5 does not follow 1',
    });
    const missing = reseq(lines[1] as string, undefined, first.hash);
    const result = verifyChain([lines[0] as string, missing]);
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.error, 'missing field seq');
    assert.deepEqual(verifyChain(lines), {
      ok: true,
      count: 3,
      lastHash: JSON.parse(lines[2] as string).hash,
      lastSeq: 3,
    });
  });
});
