/** RFC 8785 canonical JSON (src/util/canonical-json.ts), shared by the audit chain and the approval digest. */
import { strict as assert } from 'node:assert';
import canonicalizeModule from 'canonicalize';
import fc from 'fast-check';
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

describe('canonicalJson fast path (plain JSON data)', () => {
  const byPackage: (v: unknown) => string | undefined = (() => {
    const mod = canonicalizeModule as unknown as { default?: unknown };
    return (typeof mod === 'function' ? mod : mod.default) as (v: unknown) => string | undefined;
  })();

  it('writes the same text as the canonicalize package for any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        assert.equal(tryCanonicalJson(value), byPackage(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('writes the same text for values JSON.parse gives back, unicode and odd keys included', () => {
    fc.assert(
      fc.property(fc.json({ depthSize: 'medium' }), (text) => {
        const value: unknown = JSON.parse(text);
        assert.equal(tryCanonicalJson(value), byPackage(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('orders array-index keys as JCS does (code units), not as JavaScript does (numerically)', () => {
    const value = { 10: 'a', 9: 'b', x: { 2: true, 11: false } };
    assert.equal(canonicalJson(value), '{"10":"a","9":"b","x":{"11":false,"2":true}}');
    assert.equal(canonicalJson(value), byPackage(value));
  });

  it('keeps a __proto__ member (JSON.parse makes it an own property) as a member', () => {
    const value: unknown = JSON.parse('{"b":1,"__proto__":{"x":1},"a":2}');
    assert.equal(canonicalJson(value), '{"__proto__":{"x":1},"a":2,"b":1}');
  });

  it('hands anything that is not plain JSON data to the package, with its semantics', () => {
    const when = new Date(0);
    const cases: unknown[] = [
      { a: undefined, b: 1 },
      [1, undefined, 3],
      { at: when },
      { nested: { toJSON: () => 'replaced' } },
      Object.defineProperty({ a: 1 }, 'toJSON', { value: () => ({ z: 1 }), enumerable: false }),
      [1, , 3],
    ];
    for (const value of cases) assert.equal(tryCanonicalJson(value), byPackage(value));
    assert.throws(() => canonicalJson({ n: Number.NaN }), /NaN/);
    assert.throws(() => canonicalJson([Number.POSITIVE_INFINITY]), /Infinity/);
  });
});
