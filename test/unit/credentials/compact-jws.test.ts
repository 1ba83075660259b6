/**
 * Tokens signed with node's crypto and the cached KeyObject are standard JWS: jose verifies them
 * against the published JWKS, and they carry the same header and claims as jose's own signing.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import type { IssueRequest } from '../../../src/credentials/backend.js';
import { signCompactJws } from '../../../src/credentials/token/compact-jws.js';
import { SigningKeyRing } from '../../../src/credentials/token/signing-keys.js';
import { createTokenBackend } from '../../../src/credentials/token/token-backend.js';

const ISSUER = 'spiffe://example.org/svid-broker';
const AUDIENCE = 'https://api.example.org';

function request(now: number): IssueRequest {
  return {
    leaseId: 'lease-jws-1',
    agent: 'spiffe://example.org/agents/ünïcode',
    taskId: 'task-1',
    environment: 'dev',
    role: {
      name: 'token/reader',
      backend: 'token',
      maxTtlSeconds: 900,
      sensitivity: 'internal',
      environments: [],
      description: '',
      settings: { audience: AUDIENCE, scope: 'read:a' },
    },
    ttlSeconds: 300,
    notAfter: now + 3_600_000,
    now,
  };
}

describe('credentials/token: ES256 with node crypto', () => {
  let keys: SigningKeyRing;
  beforeEach(async () => {
    keys = await SigningKeyRing.create({ overlapSeconds: 3600 });
  });

  it('signCompactJws makes a JWS that jose verifies against the JWKS', async () => {
    const key = keys.current();
    const now = Math.floor(Date.now() / 1000);
    const jws = signCompactJws(
      { alg: 'ES256', kid: key.kid, typ: 'at+jwt' },
      { sub: 'spiffe://example.org/agents/ü', iat: now, exp: now + 60 },
      key.sign,
    );
    const { payload, protectedHeader } = await jwtVerify(jws, createLocalJWKSet(keys.jwks()), {
      algorithms: ['ES256'],
      typ: 'at+jwt',
    });
    assert.deepEqual(protectedHeader, { alg: 'ES256', kid: key.kid, typ: 'at+jwt' });
    assert.equal(payload.sub, 'spiffe://example.org/agents/ü');
  });

  it('the token backend signs the same header and claims as through jose, and both verify', async () => {
    const now = Date.now();
    const node = await createTokenBackend({ issuer: ISSUER, keys }).issue(request(now));
    const jose = await createTokenBackend({ issuer: ISSUER, keys, signer: 'jose' }).issue(request(now));
    const nodeToken = node.credential.token as string;
    const joseToken = jose.credential.token as string;
    assert.deepEqual(decodeProtectedHeader(nodeToken), decodeProtectedHeader(joseToken));
    assert.deepEqual(decodeJwt(nodeToken), decodeJwt(joseToken));
    for (const token of [nodeToken, joseToken]) {
      const { payload } = await jwtVerify(token, createLocalJWKSet(keys.jwks()), {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['ES256'],
      });
      assert.equal(payload.jti, 'lease-jws-1');
    }
  });

  it('a signature over other bytes does not verify', async () => {
    const key = keys.current();
    const jws = signCompactJws({ alg: 'ES256', kid: key.kid }, { sub: 'a' }, key.sign);
    const [h, , s] = jws.split('.');
    const forged = `${h}.${Buffer.from('{"sub":"b"}').toString('base64url')}.${s}`;
    await assert.rejects(jwtVerify(forged, createLocalJWKSet(keys.jwks())));
  });

  it('no serialisation of the key reveals its private part', () => {
    const key = keys.current();
    const jwk = keys.jwks().keys[0] as Record<string, unknown>;
    assert.equal(jwk['d'], undefined);
    for (const text of [JSON.stringify(key), inspect(key, { depth: 5, showHidden: true })]) {
      assert.doesNotMatch(text, /"d"|\bd:/);
      assert.doesNotMatch(text, /PRIVATE KEY/);
    }
  });
});
