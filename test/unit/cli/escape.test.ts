import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { main } from '../../../src/cli/cli.js';
import { table } from '../../../src/cli/output.js';
import { printable, safeJson } from '../../../src/cli/escape.js';

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
/** Text with a fair share of the characters an agent would use to forge output. */
const hostile = fc.string({
  unit: fc.oneof(
    fc.constantFrom('\n', '\r', '\t', '\u001b', '\u0085', '\u009b', '\u202e', '\u2066', '\u2028', '\\', '|'),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 40,
});

describe('CLI output escaping', () => {
  it('an approvals table keeps one line per row whatever an agent wrote', () => {
    // What an agent would send to draw a second, approved-looking row under its own.
    const forged = 'routine\n0190aaaa  pending  spiffe://example.org/agents/ci  token/admin  prod';
    const out = table(
      ['APPROVAL', 'JUSTIFICATION'],
      [
        ['0190', forged],
        ['0191', 'rtl \u202enimda/nekot\u202c'],
      ],
    );
    const lines = out.split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[1] ?? '', /routine\\n0190aaaa/);
    assert.match(lines[2] ?? '', /rtl \\u\{202e\}nimda\/nekot\\u\{202c\}/);
    fc.assert(
      fc.property(fc.array(fc.tuple(hostile, hostile), { maxLength: 5 }), (rows) => {
        const text = table(['A', 'B'], rows);
        assert.equal(text.split('\n').length, rows.length + 1);
        assert.doesNotMatch(text.replaceAll('\n', ''), UNSAFE);
      }),
    );
  });

  it('printable is unambiguous: a typed backslash cannot pass for an escape', () => {
    assert.equal(printable('a\\nb'), 'a\\\\nb');
    assert.equal(printable('a\nb'), 'a\\nb');
    assert.equal(printable('plain text, déjà vu 🚀'), 'plain text, déjà vu 🚀');
    fc.assert(fc.property(hostile, hostile, (a, b) => assert.ok(a === b || printable(a) !== printable(b))));
  });

  it('--json output is the same value with C1 and bidi characters escaped', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(hostile, hostile), { maxLength: 4 }), (value) => {
        const text = safeJson(value);
        assert.deepEqual(JSON.parse(text), value);
        assert.doesNotMatch(text.replaceAll('\n', ''), UNSAFE);
      }),
    );
  });

  it('audit verify escapes the id of a broken record: the file is what it doubts', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'audit-esc-')), 'audit.jsonl');
    writeFileSync(file, `${JSON.stringify({ id: 'x\u001b]0;owned\u0007\u001b[2J' })}\n`);
    const { error } = console;
    let err = '';
    console.error = (...a: unknown[]) => void (err += `${a.map(String).join(' ')}\n`);
    try {
      assert.equal(await main(['audit', 'verify', file]), 1);
    } finally {
      console.error = error;
    }
    assert.match(err, /BROKEN at line 1 \(record x\\u\{1b\}\]0;owned\\u\{7\}\\u\{1b\}\[2J\)/);
    assert.doesNotMatch(err.replaceAll('\n', ''), UNSAFE);
  });
});
