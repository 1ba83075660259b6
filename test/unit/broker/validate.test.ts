import assert from 'node:assert/strict';
import fc from 'fast-check';
import { boundedText, validLabels } from '../../../src/broker/validate.js';
import { expectBrokerError } from '../identity/expect-broker-error.js';

/** Every character an agent may not put in free text (C0, DEL, C1, separators, bidi controls). */
const UNSAFE_CHARS = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i),
  0x200e,
  0x200f,
  0x2028,
  0x2029,
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e,
  0x2066,
  0x2067,
  0x2068,
  0x2069,
].map((cp) => String.fromCodePoint(cp));
const UNSAFE = new Set(UNSAFE_CHARS);

const safeText = fc
  .string({ unit: 'grapheme', maxLength: 40 })
  .filter((s) => ![...s].some((c) => UNSAFE.has(c)));

describe('boundedText', () => {
  it('refuses any text with a control, C1 or bidi character, naming the field', () => {
    fc.assert(
      fc.property(safeText, fc.constantFrom(...UNSAFE_CHARS), safeText, (before, bad, after) => {
        const err = expectBrokerError(
          () => boundedText(before + bad + after, 'justification', 1024),
          'INVALID_ARGUMENT',
          'invalid_argument',
        );
        assert.equal(err.field, 'justification');
        const code = (bad.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
        assert.equal(
          err.message,
          `justification: must not contain control or bidi characters (found U+${code})`,
        );
      }),
    );
  });

  it('passes other text unchanged, any script and emoji included', () => {
    fc.assert(fc.property(safeText, (text) => assert.equal(boundedText(text, 'intent', 1024), text)));
    assert.equal(boundedText('déployer 发布 🚀 עברית', 'intent', 1024), 'déployer 发布 🚀 עברית');
  });

  it('names the label whose value is unsafe', () => {
    const err = expectBrokerError(
      () => validLabels({ team: 'infra', ticket: 'INC-1\u202e' }),
      'INVALID_ARGUMENT',
      'invalid_argument',
    );
    assert.equal(err.field, 'labels.ticket');
  });
});
