import 'reflect-metadata';
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { BundleSet } from '../../../src/identity/bundle-set.js';
import {
  derToPem,
  pemToDer,
  splitConcatenatedDer,
  verifyX509Svid,
  type VerifyX509SvidOptions,
} from '../../../src/identity/x509-verify.js';
import { expectBrokerError, expectBrokerRejection } from './expect-broker-error.js';

const HOUR_MS = 3600_000;

/** The CAs every row can draw on; each is its own trust domain unless noted. */
interface Fixture {
  a: LocalCa;
  /** Same trust domain as `a`, same subject names, different keys, not in the bundle. */
  aImpostor: LocalCa;
  withIntermediate: LocalCa;
  /** A federated domain: its bundle is in the set. */
  federated: LocalCa;
  expiredIntermediate: LocalCa;
  notYetValidIntermediate: LocalCa;
  intermediateNotCa: LocalCa;
  intermediateWithoutBasicConstraints: LocalCa;
  intermediateWithoutKeyCertSign: LocalCa;
  /** Not in the bundle set at all. */
  unknown: LocalCa;
  bundles: BundleSet;
}

async function makeFixture(): Promise<Fixture> {
  const past = new Date(Date.now() - 48 * HOUR_MS);
  const [a, aImpostor, withIntermediate, federated, expiredIntermediate, notYetValidIntermediate] =
    await Promise.all([
      LocalCa.create('a.test'),
      LocalCa.create('a.test'),
      LocalCa.create('int.test', { intermediate: true }),
      LocalCa.create('federated.test'),
      LocalCa.create('expired-int.test', {
        intermediate: { notBefore: past, notAfter: new Date(Date.now() - HOUR_MS) },
      }),
      LocalCa.create('future-int.test', {
        intermediate: {
          notBefore: new Date(Date.now() + HOUR_MS),
          notAfter: new Date(Date.now() + 48 * HOUR_MS),
        },
      }),
    ]);
  const [intermediateNotCa, intermediateWithoutBasicConstraints, intermediateWithoutKeyCertSign, unknown] =
    await Promise.all([
      LocalCa.create('int-not-ca.test', { intermediate: { isCa: false } }),
      LocalCa.create('int-no-bc.test', { intermediate: { omitBasicConstraints: true } }),
      LocalCa.create('int-no-certsign.test', { intermediate: { keyUsage: KeyUsageFlags.cRLSign } }),
      LocalCa.create('unknown.test'),
    ]);
  const bundles = new BundleSet([
    a.x509Bundle(),
    withIntermediate.x509Bundle(),
    federated.x509Bundle(),
    expiredIntermediate.x509Bundle(),
    notYetValidIntermediate.x509Bundle(),
    intermediateNotCa.x509Bundle(),
    intermediateWithoutBasicConstraints.x509Bundle(),
    intermediateWithoutKeyCertSign.x509Bundle(),
  ]);
  return {
    a,
    aImpostor,
    withIntermediate,
    federated,
    expiredIntermediate,
    notYetValidIntermediate,
    intermediateNotCa,
    intermediateWithoutBasicConstraints,
    intermediateWithoutKeyCertSign,
    unknown,
    bundles,
  };
}

async function chainOf(ca: LocalCa, id: string, opts: Parameters<LocalCa['issueX509Svid']>[1] = {}) {
  return (await ca.issueX509Svid(id, opts)).certChain.slice();
}

/** Flips one byte inside the DER (a copy), at `offsetFromEnd` bytes from its end. */
function flipByte(der: Uint8Array, offsetFromEnd: number): Uint8Array {
  const copy = der.slice();
  const i = copy.length - offsetFromEnd;
  copy[i] = (copy[i] as number) ^ 0x01;
  return copy;
}

/** Replaces the first occurrence of `from` with `to` (same length) in the DER bytes. */
function replaceAscii(der: Uint8Array, from: string, to: string): Uint8Array {
  assert.equal(from.length, to.length);
  const buf = Buffer.from(der);
  const at = buf.indexOf(from, 0, 'latin1');
  assert.ok(at >= 0, `${from} not found`);
  buf.write(to, at, 'latin1');
  return new Uint8Array(buf);
}

type Want = { ok: string; chainLength?: number } | { reason: string };

interface Row {
  name: string;
  chain: (f: Fixture) => Promise<Uint8Array[]>;
  opts?: VerifyX509SvidOptions;
  want: Want;
}

const rows: Row[] = [
  {
    name: 'valid leaf signed by the root',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent'),
    want: { ok: 'spiffe://a.test/agent', chainLength: 2 },
  },
  {
    name: 'valid leaf via an intermediate',
    chain: (f) => chainOf(f.withIntermediate, 'spiffe://int.test/agent'),
    want: { ok: 'spiffe://int.test/agent', chainLength: 3 },
  },
  {
    name: 'chain that also carries the root',
    chain: async (f) => [
      ...(await chainOf(f.withIntermediate, 'spiffe://int.test/agent')),
      f.withIntermediate.rootDer,
    ],
    want: { ok: 'spiffe://int.test/agent', chainLength: 3 },
  },
  {
    name: 'intermediate presented several times',
    chain: async (f) => {
      const [leaf, intermediate] = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      return [leaf as Uint8Array, ...Array.from({ length: 5 }, () => intermediate as Uint8Array)];
    },
    want: { ok: 'spiffe://int.test/agent', chainLength: 3 },
  },
  {
    name: 'intermediates of a rotated-out root presented before the right one',
    chain: async (f) => {
      const ca = await LocalCa.create('int.test', { intermediate: true });
      const [leaf, intermediate] = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      return [leaf as Uint8Array, ca.intermediateDer as Uint8Array, intermediate as Uint8Array];
    },
    want: { ok: 'spiffe://int.test/agent', chainLength: 3 },
  },
  {
    name: 'DNS SANs next to the SPIFFE ID are allowed',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { dnsNames: ['agent.a.test'] }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'expired leaf',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        notBefore: new Date(Date.now() - 2 * HOUR_MS),
        notAfter: new Date(Date.now() - HOUR_MS),
      }),
    want: { reason: 'svid_expired' },
  },
  {
    name: 'not-yet-valid leaf',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        notBefore: new Date(Date.now() + HOUR_MS),
        notAfter: new Date(Date.now() + 2 * HOUR_MS),
      }),
    want: { reason: 'svid_not_yet_valid' },
  },
  {
    name: 'leaf checked against an explicit `now` after its expiry',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { ttlSeconds: 60 }),
    opts: { now: new Date(Date.now() + 2 * 60_000) },
    want: { reason: 'svid_expired' },
  },
  {
    name: 'expired intermediate',
    // The leaf itself is in date, so only the intermediate can be at fault.
    chain: (f) =>
      chainOf(f.expiredIntermediate, 'spiffe://expired-int.test/agent', {
        notAfter: new Date(Date.now() + HOUR_MS),
      }),
    want: { reason: 'ca_expired' },
  },
  {
    name: 'not-yet-valid intermediate',
    chain: (f) => chainOf(f.notYetValidIntermediate, 'spiffe://future-int.test/agent'),
    want: { reason: 'ca_not_yet_valid' },
  },
  {
    name: 'two URI SANs',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extraUriSans: ['spiffe://a.test/other'] }),
    want: { reason: 'multiple_uri_sans' },
  },
  {
    name: 'SPIFFE ID plus a non-SPIFFE URI SAN',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extraUriSans: ['https://a.test/'] }),
    want: { reason: 'multiple_uri_sans' },
  },
  {
    name: 'no URI SAN (DNS only)',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { uriSans: [], dnsNames: ['agent.a.test'] }),
    want: { reason: 'no_uri_san' },
  },
  {
    name: 'no SAN extension at all',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { uriSans: [] }),
    want: { reason: 'no_uri_san' },
  },
  {
    name: 'non-spiffe URI SAN',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { uriSans: ['https://a.test/agent'] }),
    want: { reason: 'invalid_spiffe_id' },
  },
  {
    name: 'malformed SPIFFE ID in URI SAN (uppercase trust domain)',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { uriSans: ['spiffe://A.test/agent'] }),
    want: { reason: 'invalid_spiffe_id' },
  },
  {
    name: 'SPIFFE ID without path',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { uriSans: ['spiffe://a.test'] }),
    want: { reason: 'not_workload_id' },
  },
  {
    name: 'leaf with cA=true',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { isCa: true }),
    want: { reason: 'leaf_is_ca' },
  },
  {
    name: 'leaf without basicConstraints (cA defaults to false)',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { omitBasicConstraints: true }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'missing keyUsage',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { omitKeyUsage: true }),
    want: { reason: 'missing_key_usage' },
  },
  {
    name: 'non-critical keyUsage',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { keyUsageCritical: false }),
    want: { reason: 'bad_key_usage' },
  },
  {
    name: 'keyCertSign on the leaf',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign,
      }),
    want: { reason: 'bad_key_usage' },
  },
  {
    name: 'cRLSign on the leaf',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign,
      }),
    want: { reason: 'bad_key_usage' },
  },
  {
    name: 'no digitalSignature',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { keyUsage: KeyUsageFlags.keyEncipherment }),
    want: { reason: 'bad_key_usage' },
  },
  {
    name: 'extra harmless key usages (keyEncipherment, keyAgreement), as SPIRE sets',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment | KeyUsageFlags.keyAgreement,
      }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'extKeyUsage serverAuth only, clientAuth required',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extKeyUsage: [ExtendedKeyUsage.serverAuth] }),
    want: { reason: 'bad_ext_key_usage' },
  },
  {
    name: 'extKeyUsage serverAuth only, clientAuth not required',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extKeyUsage: [ExtendedKeyUsage.serverAuth] }),
    opts: { requireClientAuth: false },
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'extKeyUsage clientAuth only',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extKeyUsage: [ExtendedKeyUsage.clientAuth] }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'no extKeyUsage (any purpose)',
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { extKeyUsage: [] }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'unknown critical extension on the leaf',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        extraExtensions: [new Extension('1.3.6.1.4.1.55555.1', true, new Uint8Array([0x05, 0x00]))],
      }),
    want: { reason: 'unsupported_critical_extension' },
  },
  {
    name: 'unknown non-critical extension on the leaf is ignored',
    chain: (f) =>
      chainOf(f.a, 'spiffe://a.test/agent', {
        extraExtensions: [new Extension('1.3.6.1.4.1.55555.1', false, new Uint8Array([0x05, 0x00]))],
      }),
    want: { ok: 'spiffe://a.test/agent' },
  },
  {
    name: 'intermediate with cA=false',
    chain: (f) => chainOf(f.intermediateNotCa, 'spiffe://int-not-ca.test/agent'),
    want: { reason: 'issuer_not_ca' },
  },
  {
    name: 'intermediate without basicConstraints',
    chain: (f) => chainOf(f.intermediateWithoutBasicConstraints, 'spiffe://int-no-bc.test/agent'),
    want: { reason: 'issuer_not_ca' },
  },
  {
    name: 'intermediate without keyCertSign',
    chain: (f) => chainOf(f.intermediateWithoutKeyCertSign, 'spiffe://int-no-certsign.test/agent'),
    want: { reason: 'issuer_bad_key_usage' },
  },
  {
    name: 'intermediate missing from the presented chain',
    chain: (f) => chainOf(f.withIntermediate, 'spiffe://int.test/agent', { includeIntermediate: false }),
    want: { reason: 'untrusted_chain' },
  },
  {
    name: "federated domain's CA minting an ID of this domain (its bundle is trusted, for its own IDs only)",
    chain: (f) => chainOf(f.a, 'spiffe://a.test/agent', { signWith: f.federated }),
    want: { reason: 'untrusted_chain' },
  },
  {
    name: 'CA of the same trust domain name that is not in the bundle (same subject names)',
    chain: (f) => chainOf(f.aImpostor, 'spiffe://a.test/agent'),
    want: { reason: 'bad_signature' },
  },
  {
    name: 'federated domain leaf verifies against its own bundle',
    chain: (f) => chainOf(f.federated, 'spiffe://federated.test/agent'),
    want: { ok: 'spiffe://federated.test/agent' },
  },
  {
    name: 'unknown trust domain',
    chain: (f) => chainOf(f.unknown, 'spiffe://unknown.test/agent'),
    want: { reason: 'untrusted_domain' },
  },
  {
    name: 'tampered signature',
    chain: async (f) => {
      const [leaf, ...rest] = await chainOf(f.a, 'spiffe://a.test/agent');
      return [flipByte(leaf as Uint8Array, 1), ...rest];
    },
    want: { reason: 'bad_signature' },
  },
  {
    name: 'tampered SPIFFE ID (to-be-signed bytes changed)',
    chain: async (f) => {
      const [leaf, ...rest] = await chainOf(f.a, 'spiffe://a.test/agent');
      return [replaceAscii(leaf as Uint8Array, 'a.test/agent', 'a.test/admin'), ...rest];
    },
    want: { reason: 'bad_signature' },
  },
  {
    name: 'empty chain',
    chain: () => Promise.resolve([]),
    want: { reason: 'no_certificate' },
  },
  {
    name: 'garbage instead of a certificate',
    chain: () => Promise.resolve([new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])]),
    want: { reason: 'malformed_certificate' },
  },
  {
    name: 'chain longer than 10 certificates',
    chain: async (f) => {
      const chain = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      return [...chain, ...Array.from({ length: 9 }, () => chain[1] as Uint8Array)];
    },
    want: { reason: 'chain_too_long' },
  },
];

describe('identity/x509-verify', () => {
  let f: Fixture;
  before(async () => {
    f = await makeFixture();
  });

  describe('verifyX509Svid', () => {
    for (const row of rows) {
      it(row.name, async () => {
        const chain = await row.chain(f);
        if ('ok' in row.want) {
          const got = await verifyX509Svid(chain, f.bundles, row.opts);
          const id = new URL(row.want.ok);
          assert.equal(got.spiffeId, row.want.ok);
          assert.equal(got.trustDomain, id.host);
          assert.equal(got.path, id.pathname);
          assert.deepEqual(got.verifiedChain[0], chain[0]);
          if (row.want.chainLength !== undefined)
            assert.equal(got.verifiedChain.length, row.want.chainLength);
        } else {
          const err = await expectBrokerRejection(
            verifyX509Svid(chain, f.bundles, row.opts),
            'UNAUTHENTICATED',
            row.want.reason,
          );
          assert.doesNotMatch(err.message, /PRIVATE KEY|BEGIN/);
        }
      });
    }

    it('the forged cross-domain leaf really is signed by the federated root (union of bundles would accept it)', async () => {
      const [leafDer] = await chainOf(f.a, 'spiffe://a.test/agent', { signWith: f.federated });
      const leaf = new X509Certificate(leafDer as Uint8Array);
      const federatedRoot = new X509Certificate(f.federated.rootDer);
      assert.ok(await leaf.verify({ publicKey: federatedRoot.publicKey, signatureOnly: true }));
      assert.ok(f.bundles.getX509BundleForTrustDomain('federated.test'));
    });

    it('ends the verified chain at the bundle authority', async () => {
      const chain = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      const got = await verifyX509Svid(chain, f.bundles);
      assert.deepEqual(got.verifiedChain[2], f.withIntermediate.rootDer);
    });
  });

  describe('bundle problems', () => {
    it('skips an unparseable authority and still verifies against the good one', async () => {
      const chain = await chainOf(f.a, 'spiffe://a.test/agent');
      const bundles = new BundleSet([
        { trustDomain: 'a.test', authorities: [new Uint8Array([1, 2, 3]), f.a.rootDer] },
      ]);
      assert.equal((await verifyX509Svid(chain, bundles)).spiffeId, 'spiffe://a.test/agent');
    });

    it('treats a bundle without usable authorities as an untrusted domain', async () => {
      const chain = await chainOf(f.a, 'spiffe://a.test/agent');
      const empty = new BundleSet([{ trustDomain: 'a.test', authorities: [] }]);
      await expectBrokerRejection(verifyX509Svid(chain, empty), 'UNAUTHENTICATED', 'untrusted_domain');
      const junk = new BundleSet([{ trustDomain: 'a.test', authorities: [new Uint8Array([0x30, 0x00])] }]);
      await expectBrokerRejection(verifyX509Svid(chain, junk), 'UNAUTHENTICATED', 'untrusted_domain');
    });

    it('gives up quickly on a hostile chain of same-name CAs that all sign each other', async () => {
      const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
        'sign',
        'verify',
      ]);
      const issue = (extensions: Extension[]) =>
        X509CertificateGenerator.create({
          subject: 'CN=loop',
          issuer: 'CN=loop',
          publicKey: keys.publicKey,
          signingKey: keys.privateKey,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
          extensions,
        });
      const cas = await Promise.all(
        Array.from({ length: 9 }, () =>
          issue([
            new BasicConstraintsExtension(true, undefined, true),
            new KeyUsagesExtension(KeyUsageFlags.keyCertSign, true),
          ]),
        ),
      );
      const [goodLeaf] = await chainOf(f.a, 'spiffe://a.test/agent');
      // Keep the real SAN and key usage, but make the leaf chain into the loop.
      const template = new X509Certificate(goodLeaf as Uint8Array);
      const leaf = await X509CertificateGenerator.create({
        subject: template.subjectName,
        issuer: 'CN=loop',
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: template.extensions,
      });
      const started = Date.now();
      await expectBrokerRejection(
        verifyX509Svid(
          [new Uint8Array(leaf.rawData), ...cas.map((c) => new Uint8Array(c.rawData))],
          f.bundles,
        ),
        'UNAUTHENTICATED',
        'untrusted_chain',
      );
      assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
    });

    it('a leaf certificate placed in the bundle cannot act as a root', async () => {
      const chain = await chainOf(f.a, 'spiffe://a.test/agent');
      const other = await chainOf(f.a, 'spiffe://a.test/other');
      const bundles = new BundleSet([{ trustDomain: 'a.test', authorities: [other[0] as Uint8Array] }]);
      await expectBrokerRejection(verifyX509Svid(chain, bundles), 'UNAUTHENTICATED', 'untrusted_chain');
    });
  });

  describe('root rotation', () => {
    it('keeps certificates from the old root valid while the old root stays in the bundle', async () => {
      const ca = await LocalCa.create('rotate.test', { intermediate: true });
      const oldChain = await chainOf(ca, 'spiffe://rotate.test/old');
      await ca.rotateRoot();
      const newChain = await chainOf(ca, 'spiffe://rotate.test/new');
      assert.equal(ca.authorities().length, 2);

      const during = new BundleSet([ca.x509Bundle()]);
      assert.equal((await verifyX509Svid(oldChain, during)).spiffeId, 'spiffe://rotate.test/old');
      assert.equal((await verifyX509Svid(newChain, during)).spiffeId, 'spiffe://rotate.test/new');

      ca.retireOldRoots();
      const after = new BundleSet([ca.x509Bundle()]);
      assert.equal((await verifyX509Svid(newChain, after)).spiffeId, 'spiffe://rotate.test/new');
      // Old and new roots share a subject name, so the old chain fails on the signature.
      await expectBrokerRejection(verifyX509Svid(oldChain, after), 'UNAUTHENTICATED', 'bad_signature');
    });

    it('finds the right root by signature when several share a subject name (no intermediate)', async () => {
      const ca = await LocalCa.create('rotate2.test');
      const oldChain = await chainOf(ca, 'spiffe://rotate2.test/old');
      await ca.rotateRoot();
      await ca.rotateRoot();
      const bundle = new BundleSet([ca.x509Bundle()]);
      const got = await verifyX509Svid(oldChain, bundle);
      assert.deepEqual(got.verifiedChain[1], ca.authorities()[2]);
    });
  });

  describe('DER and PEM helpers', () => {
    it('splitConcatenatedDer splits a Workload API chain', async () => {
      const chain = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      const joined = Buffer.concat(chain);
      const split = splitConcatenatedDer(new Uint8Array(joined));
      assert.equal(split.length, 2);
      assert.deepEqual(split, chain);
    });

    it('splitConcatenatedDer returns nothing for empty input', () => {
      assert.deepEqual(splitConcatenatedDer(new Uint8Array()), []);
    });

    it('splitConcatenatedDer handles short-form lengths', () => {
      const bytes = new Uint8Array([0x30, 0x01, 0x05, 0x30, 0x00]);
      assert.deepEqual(splitConcatenatedDer(bytes), [
        new Uint8Array([0x30, 0x01, 0x05]),
        new Uint8Array([0x30, 0x00]),
      ]);
    });

    const malformed: Array<[string, number[]]> = [
      ['not a SEQUENCE', [0x04, 0x01, 0x00]],
      ['truncated header', [0x30]],
      ['truncated long-form length', [0x30, 0x82, 0x01]],
      ['content runs past the end', [0x30, 0x05, 0x00]],
      ['indefinite length (BER)', [0x30, 0x80, 0x00, 0x00]],
      ['length of more than 4 bytes', [0x30, 0x85, 0, 0, 0, 0, 1, 0]],
    ];
    for (const [name, bytes] of malformed) {
      it(`splitConcatenatedDer rejects ${name}`, () => {
        expectBrokerError(
          () => splitConcatenatedDer(new Uint8Array(bytes)),
          'INVALID_ARGUMENT',
          'malformed_der',
        );
      });
    }

    it('derToPem output is accepted by Node and round-trips through pemToDer', async () => {
      const chain = await chainOf(f.withIntermediate, 'spiffe://int.test/agent');
      const pem = derToPem(chain);
      assert.match(pem, /^-----BEGIN CERTIFICATE-----\n/);
      assert.ok(pem.split('\n').every((line) => line.length <= 64));
      const node = new NodeX509Certificate(derToPem(chain[0] as Uint8Array));
      assert.match(node.subjectAltName ?? '', /URI:spiffe:\/\/int\.test\/agent/);
      assert.deepEqual(pemToDer(pem), chain);
    });

    it('pemToDer filters by label and rejects input without blocks', () => {
      const key = derToPem(new Uint8Array([1, 2, 3]), 'PRIVATE KEY');
      const cert = derToPem(new Uint8Array([4, 5]));
      assert.deepEqual(pemToDer(key + cert, 'CERTIFICATE'), [new Uint8Array([4, 5])]);
      assert.deepEqual(pemToDer(key + cert, 'PRIVATE KEY'), [new Uint8Array([1, 2, 3])]);
      expectBrokerError(() => pemToDer('no pem here'), 'INVALID_ARGUMENT', 'malformed_pem');
      expectBrokerError(() => pemToDer(cert, 'PRIVATE KEY'), 'INVALID_ARGUMENT', 'malformed_pem');
      expectBrokerError(
        () => pemToDer('-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n'),
        'INVALID_ARGUMENT',
        'malformed_pem',
      );
    });
  });
});
