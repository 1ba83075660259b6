import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { CompactEncrypt, exportJWK, FlattenedSign, generateKeyPair, importJWK, type JWK } from 'jose';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { BundleSet } from '../../../src/identity/bundle-set.js';
import { verifyJwtSvid, type VerifyJwtSvidOptions } from '../../../src/identity/jwt-verify.js';
import { expectBrokerRejection } from './expect-broker-error.js';

type CryptoKey = webcrypto.CryptoKey;

const AUD = 'spiffe://a.test/broker';
const ID = 'spiffe://a.test/agent';

interface Fixture {
  a: LocalCa;
  federated: LocalCa;
  unknown: LocalCa;
  /** Bundle carries a.test's key only with use x509-svid. */
  x509UseOnly: LocalCa;
  /** Bundle carries its key without any use member. */
  noUse: LocalCa;
  /** Bundle also holds an Ed25519 and an RSA key with use jwt-svid. */
  extraKeys: LocalCa;
  edKey: CryptoKey;
  rsaKey: CryptoKey;
  /** The same RSA private key, imported for RSA-PSS signing. */
  rsaPssKey: CryptoKey;
  /** An attacker's ES256 and ES384 keys, in no bundle. */
  attackerKey: CryptoKey;
  attackerPublicJwk: JWK;
  attackerP384: CryptoKey;
  bundles: BundleSet;
}

async function makeFixture(): Promise<Fixture> {
  const [a, federated, unknown, x509UseOnly, noUse, extraKeys] = await Promise.all([
    LocalCa.create('a.test'),
    LocalCa.create('federated.test'),
    LocalCa.create('unknown.test'),
    LocalCa.create('x509-use.test'),
    LocalCa.create('no-use.test'),
    LocalCa.create('extra-keys.test'),
  ]);
  const [ed, rsa, attacker, attackerP384] = await Promise.all([
    generateKeyPair('EdDSA'),
    generateKeyPair('RS256', { modulusLength: 2048, extractable: true }),
    generateKeyPair('ES256'),
    generateKeyPair('ES384'),
  ]);
  const edJwk = { ...(await exportJWK(ed.publicKey)), use: 'jwt-svid', kid: 'ed-1' };
  // No alg member, so the same RSA key may verify RS256 and PS256.
  const rsaJwk = { ...(await exportJWK(rsa.publicKey)), use: 'jwt-svid', kid: 'rsa-1' };

  const bundles = new BundleSet(
    [],
    [
      a.jwtBundle(),
      federated.jwtBundle(),
      {
        trustDomain: 'x509-use.test',
        jwks: { keys: x509UseOnly.jwks().keys.map((k) => ({ ...k, use: 'x509-svid' })) },
      },
      {
        trustDomain: 'no-use.test',
        jwks: {
          keys: noUse.jwks().keys.map((k) => {
            const { use: _use, ...rest } = k;
            return rest;
          }),
        },
      },
      { trustDomain: 'extra-keys.test', jwks: { keys: [...extraKeys.jwks().keys, edJwk, rsaJwk] } },
    ],
  );
  return {
    a,
    federated,
    unknown,
    x509UseOnly,
    noUse,
    extraKeys,
    edKey: ed.privateKey as CryptoKey,
    rsaKey: rsa.privateKey as CryptoKey,
    rsaPssKey: (await importJWK(await exportJWK(rsa.privateKey), 'PS256')) as CryptoKey,
    attackerKey: attacker.privateKey as CryptoKey,
    attackerPublicJwk: await exportJWK(attacker.publicKey),
    attackerP384: attackerP384.privateKey as CryptoKey,
    bundles,
  };
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Re-encodes the payload of a signed token, keeping header and signature. */
function tamperPayload(token: string, change: (claims: Record<string, unknown>) => void): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  change(claims);
  return `${h}.${b64url(claims)}.${s}`;
}

type Want = { ok: string; trustDomain?: string } | { reason: string; code?: 'UNAUTHENTICATED' | 'INTERNAL' };

interface Row {
  name: string;
  token: (f: Fixture) => Promise<string>;
  audience?: string | string[];
  opts?: VerifyJwtSvidOptions;
  want: Want;
}

const nowSec = (): number => Math.floor(Date.now() / 1000);

const rows: Row[] = [
  { name: 'valid ES256 token', token: (f) => f.a.mintJwtSvid(ID, [AUD]), want: { ok: ID } },
  { name: 'aud as a single string', token: (f) => f.a.mintJwtSvid(ID, AUD), want: { ok: ID } },
  {
    name: 'aud array containing ours among others',
    token: (f) => f.a.mintJwtSvid(ID, ['spiffe://a.test/other', AUD, 'x']),
    want: { ok: ID },
  },
  {
    name: 'verifier accepting several audiences',
    token: (f) => f.a.mintJwtSvid(ID, ['second']),
    audience: [AUD, 'second'],
    want: { ok: ID },
  },
  { name: 'typ JOSE', token: (f) => f.a.mintJwtSvid(ID, [AUD], { typ: 'JOSE' }), want: { ok: ID } },
  { name: 'no typ', token: (f) => f.a.mintJwtSvid(ID, [AUD], { typ: null }), want: { ok: ID } },
  {
    name: 'RS256 with an RSA bundle key',
    token: (f) =>
      f.extraKeys.mintJwtSvid('spiffe://extra-keys.test/agent', [AUD], {
        alg: 'RS256',
        signingKey: f.rsaKey,
        kid: 'rsa-1',
      }),
    want: { ok: 'spiffe://extra-keys.test/agent' },
  },
  {
    name: 'PS256 with an RSA bundle key',
    token: (f) =>
      f.extraKeys.mintJwtSvid('spiffe://extra-keys.test/agent', [AUD], {
        alg: 'PS256',
        signingKey: f.rsaPssKey,
        kid: 'rsa-1',
      }),
    want: { ok: 'spiffe://extra-keys.test/agent' },
  },
  {
    name: 'alg none',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { alg: 'none' }),
    want: { reason: 'unsupported_alg' },
  },
  {
    name: 'HS256 with the public key bytes as secret (alg confusion)',
    token: async (f) => {
      const secret = new TextEncoder().encode(JSON.stringify(f.a.jwks().keys[0]));
      return f.a.mintJwtSvid(ID, [AUD], { alg: 'HS256', signingKey: secret, kid: f.a.jwtKid });
    },
    want: { reason: 'unsupported_alg' },
  },
  {
    name: 'EdDSA, even with a matching jwt-svid key in the bundle',
    token: (f) =>
      f.extraKeys.mintJwtSvid('spiffe://extra-keys.test/agent', [AUD], {
        alg: 'EdDSA',
        signingKey: f.edKey,
        kid: 'ed-1',
      }),
    want: { reason: 'unsupported_alg' },
  },
  {
    name: 'typ other than JWT/JOSE',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { typ: 'at+jwt' }),
    want: { reason: 'bad_typ' },
  },
  {
    name: 'typ in lowercase',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { typ: 'jwt' }),
    want: { reason: 'bad_typ' },
  },
  {
    name: 'missing kid',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { kid: null }),
    want: { reason: 'missing_kid' },
  },
  {
    name: 'unknown kid',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { kid: 'nope' }),
    want: { reason: 'unknown_kid' },
  },
  {
    name: 'bundle key with use x509-svid only',
    token: (f) => f.x509UseOnly.mintJwtSvid('spiffe://x509-use.test/agent', [AUD]),
    want: { reason: 'unknown_kid' },
  },
  {
    name: 'bundle key without a use member',
    token: (f) => f.noUse.mintJwtSvid('spiffe://no-use.test/agent', [AUD]),
    want: { reason: 'unknown_kid' },
  },
  {
    name: "key (and kid) of another trust domain signing this domain's ID",
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { signWith: f.federated }),
    want: { reason: 'unknown_kid' },
  },
  {
    name: "another trust domain's key under this domain's kid",
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { signWith: f.federated, kid: f.a.jwtKid }),
    want: { reason: 'bad_signature' },
  },
  {
    name: "federated ID signed with our key: only the federated domain's JWKS is consulted",
    token: (f) => f.federated.mintJwtSvid('spiffe://federated.test/agent', [AUD], { signWith: f.a }),
    want: { reason: 'unknown_kid' },
  },
  {
    name: 'federated domain token verifies against its own JWKS',
    token: (f) => f.federated.mintJwtSvid('spiffe://federated.test/agent', [AUD]),
    want: { ok: 'spiffe://federated.test/agent', trustDomain: 'federated.test' },
  },
  {
    name: 'unknown trust domain',
    token: (f) => f.unknown.mintJwtSvid('spiffe://unknown.test/agent', [AUD]),
    want: { reason: 'untrusted_domain' },
  },
  {
    name: 'jku header pointing elsewhere is ignored (valid token still verifies)',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { extraHeader: { jku: 'https://evil.example/jwks.json' } }),
    want: { ok: ID },
  },
  {
    name: 'x5u header pointing elsewhere is ignored',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { extraHeader: { x5u: 'https://evil.example/cert.pem' } }),
    want: { ok: ID },
  },
  {
    name: 'embedded jwk header is not trusted',
    token: (f) =>
      f.a.mintJwtSvid(ID, [AUD], {
        signingKey: f.attackerKey,
        kid: f.a.jwtKid,
        extraHeader: { jwk: f.attackerPublicJwk },
      }),
    want: { reason: 'bad_signature' },
  },
  {
    name: 'jku header with an attacker key and kid is not fetched',
    token: (f) =>
      f.a.mintJwtSvid(ID, [AUD], {
        signingKey: f.attackerKey,
        kid: 'attacker-1',
        extraHeader: { jku: 'https://evil.example/jwks.json' },
      }),
    want: { reason: 'unknown_kid' },
  },
  {
    name: "header alg differs from the bundle key's alg",
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { alg: 'ES384', signingKey: f.attackerP384, kid: f.a.jwtKid }),
    want: { reason: 'key_mismatch' },
  },
  {
    name: 'missing aud',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { omitAud: true }),
    want: { reason: 'missing_aud' },
  },
  {
    name: 'wrong aud',
    token: (f) => f.a.mintJwtSvid(ID, ['spiffe://a.test/other']),
    want: { reason: 'bad_audience' },
  },
  {
    name: 'empty aud array',
    token: (f) => f.a.mintJwtSvid(ID, []),
    want: { reason: 'bad_audience' },
  },
  {
    name: 'aud of the wrong type',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { aud: 42 } }),
    want: { reason: 'bad_audience' },
  },
  {
    name: 'missing exp',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { omitExp: true }),
    want: { reason: 'missing_exp' },
  },
  {
    name: 'expired',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { issuedAt: new Date(Date.now() - 600_000), ttlSeconds: 300 }),
    want: { reason: 'svid_expired' },
  },
  {
    name: 'expired 10 s ago, within the default 30 s leeway',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { exp: nowSec() - 10 } }),
    want: { ok: ID },
  },
  {
    name: 'expired 10 s ago, leeway 0',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { exp: nowSec() - 10 } }),
    opts: { leewaySeconds: 0 },
    want: { reason: 'svid_expired' },
  },
  {
    name: 'expired 60 s ago, beyond the default leeway',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { exp: nowSec() - 60 } }),
    want: { reason: 'svid_expired' },
  },
  {
    name: 'checked against an explicit `now` after exp',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { ttlSeconds: 60 }),
    // Read when the test runs, not when this file loads: a suite that reaches this row more than a
    // minute after loading would otherwise check a `now` before the token's exp.
    get opts() {
      return { now: new Date(Date.now() + 120_000) };
    },
    want: { reason: 'svid_expired' },
  },
  {
    name: 'exp that is not a number',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { exp: 'tomorrow' } }),
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'nbf in the future',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { nbf: nowSec() + 600 } }),
    want: { reason: 'svid_not_yet_valid' },
  },
  {
    name: 'malformed sub',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { sub: 'spiffe://A.test/agent' } }),
    want: { reason: 'invalid_sub' },
  },
  {
    name: 'sub that is not a SPIFFE ID at all',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { sub: 'agent@a.test' } }),
    want: { reason: 'invalid_sub' },
  },
  {
    name: 'sub without a path',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { sub: 'spiffe://a.test' } }),
    want: { reason: 'not_workload_id' },
  },
  {
    name: 'missing sub',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { sub: undefined } }),
    want: { reason: 'missing_sub' },
  },
  {
    name: 'payload tampered after signing',
    token: async (f) =>
      tamperPayload(await f.a.mintJwtSvid(ID, [AUD]), (c) => {
        c.sub = 'spiffe://a.test/admin';
      }),
    want: { reason: 'bad_signature' },
  },
  {
    name: 'signature stripped',
    token: async (f) => `${(await f.a.mintJwtSvid(ID, [AUD])).split('.').slice(0, 2).join('.')}.`,
    want: { reason: 'bad_signature' },
  },
  {
    name: 'JWS JSON serialization',
    token: async (f) => {
      const compact = await f.a.mintJwtSvid(ID, [AUD]);
      const payload = Buffer.from(compact.split('.')[1] as string, 'base64url');
      const flattened = await new FlattenedSign(payload)
        .setProtectedHeader({ alg: 'ES256', kid: f.a.jwtKid })
        .sign(f.attackerKey);
      return JSON.stringify(flattened);
    },
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'JWE (5 parts)',
    token: async () => {
      const secret = new Uint8Array(32).fill(7);
      return new CompactEncrypt(new TextEncoder().encode(JSON.stringify({ sub: ID, aud: AUD })))
        .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: 'x' })
        .encrypt(secret);
    },
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'two parts',
    token: () => Promise.resolve(`${b64url({ alg: 'ES256' })}.${b64url({})}`),
    want: { reason: 'malformed_jwt' },
  },
  { name: 'four parts', token: () => Promise.resolve('a.b.c.d'), want: { reason: 'malformed_jwt' } },
  { name: 'empty token', token: () => Promise.resolve(''), want: { reason: 'malformed_jwt' } },
  {
    name: 'header not JSON',
    token: () => Promise.resolve('bm90IGpzb24.e30.c2ln'),
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'parts that are not base64url',
    token: () => Promise.resolve(`${b64url({ alg: 'ES256', kid: 'k' })}.e3+/.c2ln`),
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'oversized token',
    token: (f) => f.a.mintJwtSvid(ID, [AUD], { claims: { pad: 'x'.repeat(20_000) } }),
    want: { reason: 'malformed_jwt' },
  },
  {
    name: 'verifier without an expected audience fails closed',
    token: (f) => f.a.mintJwtSvid(ID, [AUD]),
    audience: [],
    want: { reason: 'no_expected_audience', code: 'INTERNAL' },
  },
];

describe('identity/jwt-verify', () => {
  let f: Fixture;
  before(async () => {
    f = await makeFixture();
  });

  describe('verifyJwtSvid', () => {
    for (const row of rows) {
      it(row.name, async () => {
        const token = await row.token(f);
        const audience = row.audience ?? AUD;
        if ('ok' in row.want) {
          const got = await verifyJwtSvid(token, f.bundles, audience, row.opts);
          assert.equal(got.spiffeId, row.want.ok);
          assert.equal(got.claims.sub, row.want.ok);
          assert.equal(got.trustDomain, row.want.trustDomain ?? new URL(row.want.ok).host);
          assert.equal(got.path, new URL(row.want.ok).pathname);
          assert.equal(got.expiresAt.getTime(), (got.claims.exp as number) * 1000);
        } else {
          await expectBrokerRejection(
            verifyJwtSvid(token, f.bundles, audience, row.opts),
            row.want.code ?? 'UNAUTHENTICATED',
            row.want.reason,
          );
        }
      });
    }

    it('default JWT-SVID lifetime is 5 minutes', async () => {
      const got = await verifyJwtSvid(await f.a.mintJwtSvid(ID, [AUD]), f.bundles, AUD);
      assert.equal((got.claims.exp as number) - (got.claims.iat as number), 300);
    });
  });

  describe('JWT key rotation', () => {
    it('accepts tokens of the old key while it is published, and only then', async () => {
      const ca = await LocalCa.create('rotate.test');
      const id = 'spiffe://rotate.test/agent';
      const oldToken = await ca.mintJwtSvid(id, [AUD]);
      await ca.rotateJwtKey();
      const newToken = await ca.mintJwtSvid(id, [AUD]);
      assert.equal(ca.jwks().keys.length, 2);

      const during = new BundleSet([], [ca.jwtBundle()]);
      assert.equal((await verifyJwtSvid(oldToken, during, AUD)).spiffeId, id);
      assert.equal((await verifyJwtSvid(newToken, during, AUD)).spiffeId, id);

      ca.retireOldJwtKeys();
      const after = new BundleSet([], [ca.jwtBundle()]);
      assert.equal((await verifyJwtSvid(newToken, after, AUD)).spiffeId, id);
      await expectBrokerRejection(verifyJwtSvid(oldToken, after, AUD), 'UNAUTHENTICATED', 'unknown_kid');
    });
  });
});
