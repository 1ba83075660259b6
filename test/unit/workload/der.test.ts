import assert from 'node:assert/strict';

import { concatDer, splitConcatenatedDer } from '../../../src/identity/der.js';
import { isBrokerError } from '../../../src/errors.js';
import { createQuickCa, issueQuickSvid } from '../../support/quick-svid.js';

describe('splitConcatenatedDer', () => {
  let certs: Uint8Array[];

  before(async () => {
    const ca = await createQuickCa('example.org');
    const a = await issueQuickSvid(ca, 'spiffe://example.org/a');
    const b = await issueQuickSvid(ca, 'spiffe://example.org/b');
    certs = [a.certChain[0]!, b.certChain[0]!, ca.cert];
  });

  for (const n of [1, 2, 3]) {
    it(`splits ${n} concatenated certificate(s) back into the originals`, () => {
      const parts = certs.slice(0, n);
      const split = splitConcatenatedDer(concatDer(parts));
      assert.equal(split.length, n);
      split.forEach((der, i) => assert.deepEqual(Buffer.from(der), Buffer.from(parts[i]!)));
    });
  }

  it('returns copies, not views into the input', () => {
    const joined = Buffer.from(concatDer(certs));
    const [first] = splitConcatenatedDer(joined);
    joined.fill(0);
    assert.equal(first![0], 0x30);
  });

  it('returns an empty list for empty input', () => {
    assert.deepEqual(splitConcatenatedDer(new Uint8Array()), []);
  });

  it('decodes short and long length forms', () => {
    const short = Uint8Array.from([0x30, 0x02, 0x05, 0x00]);
    const long = Uint8Array.from([0x30, 0x81, 0x02, 0x05, 0x00]);
    assert.deepEqual(
      splitConcatenatedDer(concatDer([short, long])).map((d) => d.length),
      [4, 5],
    );
  });

  const garbage: Array<[string, Uint8Array]> = [
    ['a non-SEQUENCE tag', Uint8Array.from([0x04, 0x01, 0x00])],
    ['a truncated element', Uint8Array.from([0x30, 0x05, 0x00, 0x00])],
    ['a missing length', Uint8Array.from([0x30])],
    ['a truncated long length', Uint8Array.from([0x30, 0x82, 0x01])],
    ['the indefinite length form', Uint8Array.from([0x30, 0x80, 0x00, 0x00])],
    ['an oversized length of length', Uint8Array.from([0x30, 0x85, 0, 0, 0, 0, 1])],
    ['text', new TextEncoder().encode('-----BEGIN CERTIFICATE-----')],
  ];
  for (const [what, bytes] of garbage) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => splitConcatenatedDer(bytes),
        (err: unknown) =>
          isBrokerError(err) && err.reason === 'malformed_der' && err.message.startsWith('der: '),
      );
    });
  }

  it('rejects trailing garbage after valid certificates', () => {
    const bytes = concatDer([certs[0]!, Uint8Array.from([0xff])]);
    assert.throws(() => splitConcatenatedDer(bytes), /der: expected SEQUENCE/);
  });
});
