import assert from 'node:assert/strict';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { BundleSet, type JwtBundleInput } from '../../../src/identity/bundle-set.js';
import { expectBrokerError } from './expect-broker-error.js';

describe('identity/bundle-set', () => {
  let a: LocalCa;
  let b: LocalCa;
  before(async () => {
    [a, b] = await Promise.all([LocalCa.create('a.test'), LocalCa.create('b.test')]);
    await a.rotateRoot();
  });

  it('fromMaps normalises spiffe://<td> keys and splits concatenated DER', () => {
    const set = BundleSet.fromMaps(
      new Map<string, Uint8Array | Uint8Array[]>([
        ['spiffe://a.test', new Uint8Array(Buffer.concat(a.authorities()))],
        ['b.test', b.authorities()],
      ]),
      new Map<string, JwtBundleInput>([
        ['spiffe://a.test', new TextEncoder().encode(JSON.stringify(a.jwks()))],
        ['spiffe://b.test', b.jwks()],
      ]),
    );
    assert.deepEqual(set.trustDomains(), ['a.test', 'b.test']);
    assert.deepEqual(set.getX509BundleForTrustDomain('a.test')?.authorities, a.authorities());
    assert.equal(set.getX509BundleForTrustDomain('a.test')?.trustDomain, 'a.test');
    assert.deepEqual(set.getX509BundleForTrustDomain('b.test')?.authorities, b.authorities());
    assert.deepEqual(set.getJwtBundleForTrustDomain('a.test')?.jwks.keys, a.jwks().keys);
    assert.deepEqual(set.getJwtBundleForTrustDomain('b.test')?.jwks.keys, b.jwks().keys);
  });

  it('returns exactly the requested trust domain, never another one', () => {
    const set = new BundleSet([a.x509Bundle()], [a.jwtBundle()]);
    assert.equal(set.getX509BundleForTrustDomain('b.test'), undefined);
    assert.equal(set.getJwtBundleForTrustDomain('b.test'), undefined);
    assert.equal(set.getX509BundleForTrustDomain('spiffe://a.test'), undefined, 'lookups take bare names');
  });

  it('copies its input, so later changes by the caller do not leak in', () => {
    const roots = a.authorities();
    const set = BundleSet.fromMaps(new Map([['a.test', roots]]));
    const first = roots[0] as Uint8Array;
    first[10] = (first[10] as number) ^ 0xff;
    roots.pop();
    assert.deepEqual(set.getX509BundleForTrustDomain('a.test')?.authorities, a.authorities());
  });

  it('replaces and removes bundles', () => {
    const set = new BundleSet([a.x509Bundle()], [a.jwtBundle()]);
    set.setX509Bundle('spiffe://a.test', b.authorities());
    assert.deepEqual(set.getX509BundleForTrustDomain('a.test')?.authorities, b.authorities());
    assert.ok(set.removeX509Bundle('a.test'));
    assert.ok(set.removeJwtBundle('spiffe://a.test'));
    assert.deepEqual(set.trustDomains(), []);
  });

  it('keeps a JWKS document with optional SPIFFE members and drops non-object keys', () => {
    const set = BundleSet.fromMaps(
      new Map(),
      new Map([['a.test', JSON.stringify({ keys: [a.jwks().keys[0], 'junk', null], spiffe_sequence: 3 })]]),
    );
    const jwks = set.getJwtBundleForTrustDomain('a.test')?.jwks;
    assert.equal(jwks?.keys.length, 1);
    assert.equal((jwks as { spiffe_sequence?: number }).spiffe_sequence, 3);
  });

  const badInputs: Array<[string, () => unknown, string]> = [
    [
      'a key with a path',
      () => BundleSet.fromMaps(new Map([['spiffe://a.test/x', []]])),
      'invalid_trust_domain',
    ],
    ['an uppercase key', () => BundleSet.fromMaps(new Map([['A.test', []]])), 'invalid_trust_domain'],
    [
      'a JWKS that is not JSON',
      () => BundleSet.fromMaps(new Map(), new Map([['a.test', '{']])),
      'malformed_bundle',
    ],
    [
      'a JWKS without keys',
      () => BundleSet.fromMaps(new Map(), new Map([['a.test', '{"spiffe_sequence":1}']])),
      'malformed_bundle',
    ],
    [
      'concatenated DER that is truncated',
      () => BundleSet.fromMaps(new Map([['a.test', new Uint8Array([0x30, 0x05, 0x00])]])),
      'malformed_der',
    ],
  ];
  for (const [name, build, reason] of badInputs) {
    it(`rejects ${name}`, () => {
      expectBrokerError(build, 'INVALID_ARGUMENT', reason);
    });
  }
});
