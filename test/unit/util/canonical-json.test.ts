/** RFC 8785 canonical JSON (src/util/canonical-json.ts), shared by the audit chain and the approval digest. */
import { strict as assert } from 'node:assert';
import { canonicalJson, tryCanonicalJson } from '../../../src/util/canonical-json.js';

describe('canonicalJson', () => {
  it('orders members by key and drops insignificant whitespace', () => {
    assert.equal(canonicalJson({ b: [2, { d: 1, c: 'x' }], a: 1e21 }), '{"a":1e+21,"b":[2,{"c":"x","d":1}]}');
  });

  it('gives equal texts for objects that differ only in key order', () => {
    assert.equal(
      canonicalJson({ x: 1, y: { p: true, q: null } }),
      canonicalJson({ y: { q: null, p: true }, x: 1 }),
    );
  });

  it('throws (canonicalJson) or answers undefined (tryCanonicalJson) for a value JSON cannot represent', () => {
    assert.equal(tryCanonicalJson(undefined), undefined);
    assert.throws(() => canonicalJson(undefined), /no JSON representation/);
  });
});
