import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK, SignJWT } from 'jose';
import type { IssueRequest, RoleDefinition } from '../../../src/credentials/backend.js';
import { SigningKeyRing } from '../../../src/credentials/token/signing-keys.js';
import { createTokenBackend } from '../../../src/credentials/token/token-backend.js';
import { verifyAccessToken } from '../../../src/credentials/token/verify-access-token.js';
import { isBrokerError } from '../../../src/errors.js';

const ISSUER = 'spiffe://example.org/svid-broker';
const AUDIENCE = 'https://api.example.org';
const OVERLAP = 3600;
const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

function role(settings: Record<string, unknown>, maxTtlSeconds = 900): RoleDefinition {
  return {
    name: 'token/reader',
    backend: 'token',
    maxTtlSeconds,
    sensitivity: 'internal',
    environments: [],
    description: 'read access',
    settings,
  };
}

const reader = role({ audience: AUDIENCE, scope: ['read:a', 'read:b'] });

function request(now: number, overrides: Partial<IssueRequest> = {}): IssueRequest {
  return {
    leaseId: 'lease-0001',
    agent: 'spiffe://example.org/agent/summariser',
    taskId: 'task-42',
    environment: 'staging',
    role: reader,
    ttlSeconds: 300,
    notAfter: now + 3_600_000,
    now,
    ...overrides,
  };
}

describe('credentials/token', () => {
  let clock: number;
  let keys: SigningKeyRing;

  beforeEach(async () => {
    clock = T0;
    keys = await SigningKeyRing.create({ overlapSeconds: OVERLAP, now: () => clock });
  });

  afterEach(() => keys.stop());

  const verify = (token: string, at = clock, revokedJtis?: Set<string>) =>
    verifyAccessToken(token, {
      jwks: keys.jwks(),
      issuer: ISSUER,
      audience: AUDIENCE,
      currentDate: new Date(at),
      ...(revokedJtis ? { revokedJtis } : {}),
    });

  it('issues an RFC 9068 token that verifies against the JWKS, with exactly the specified claims', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    assert.equal(backend.name, 'token');
    const issued = await backend.issue(request(T0));
    const kid = keys.current().kid;
    const iat = Math.floor(T0 / 1000);

    assert.deepEqual(decodeProtectedHeader(issued.credential.token), { alg: 'ES256', kid, typ: 'at+jwt' });
    assert.deepEqual(decodeJwt(issued.credential.token), {
      iss: ISSUER,
      sub: 'spiffe://example.org/agent/summariser',
      client_id: 'spiffe://example.org/agent/summariser',
      aud: AUDIENCE,
      scope: 'read:a read:b',
      task: 'task-42',
      env: 'staging',
      role: 'token/reader',
      jti: 'lease-0001',
      iat,
      nbf: iat,
      exp: Math.floor((T0 + 300_000) / 1000),
    });
    assert.deepEqual(
      { ...issued, credential: { ...issued.credential, token: '<token>' } },
      {
        credential: {
          kind: 'jwt',
          token: '<token>',
          data: {},
          metadata: { token_type: 'Bearer', aud: AUDIENCE, scope: 'read:a read:b', kid },
        },
        backendRef: 'lease-0001',
        expiresAt: Math.floor((T0 + 300_000) / 1000) * 1000,
        renewable: false,
      },
    );

    const { claims, kid: verifiedKid } = await verify(issued.credential.token);
    assert.equal(claims.jti, 'lease-0001');
    assert.equal(claims.client_id, 'spiffe://example.org/agent/summariser');
    assert.equal(verifiedKid, kid);
  });

  it('takes the issuer from a function at issue time (the SVID can rotate)', async () => {
    let id = ISSUER;
    const backend = createTokenBackend({ issuer: () => id, keys });
    id = 'spiffe://example.org/svid-broker/b';
    const issued = await backend.issue(request(T0));
    assert.equal(decodeJwt(issued.credential.token).iss, 'spiffe://example.org/svid-broker/b');
  });

  it('supports an audience list and a space-separated scope string', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    const multi = role({ audience: [AUDIENCE, 'https://other.example.org'], scope: 'write  read' });
    const issued = await backend.issue(request(T0, { role: multi }));
    assert.deepEqual(decodeJwt(issued.credential.token).aud, [AUDIENCE, 'https://other.example.org']);
    assert.equal(decodeJwt(issued.credential.token).scope, 'write read');
    assert.equal(issued.credential.metadata.aud, `${AUDIENCE} https://other.example.org`);
    await verify(issued.credential.token);
  });

  it('clamps exp by notAfter and by the TTL', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    const byNotAfter = await backend.issue(request(T0, { ttlSeconds: 900, notAfter: T0 + 60_500 }));
    assert.equal(decodeJwt(byNotAfter.credential.token).exp, Math.floor((T0 + 60_500) / 1000));
    assert.equal(byNotAfter.expiresAt, Math.floor((T0 + 60_500) / 1000) * 1000);
    const byTtl = await backend.issue(request(T0, { ttlSeconds: 120, notAfter: T0 + 3_600_000 }));
    assert.equal(decodeJwt(byTtl.credential.token).exp, Math.floor((T0 + 120_000) / 1000));
  });

  it('exp is never later than notAfter nor now + ttl (property)', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
        fc.integer({ min: 1, max: 900 }),
        fc.integer({ min: 1_001, max: 2_000_000 }),
        async (now, ttlSeconds, window) => {
          const issued = await backend.issue(request(now, { ttlSeconds, notAfter: now + window }));
          const { exp, iat } = decodeJwt(issued.credential.token);
          assert.ok(exp !== undefined && iat !== undefined);
          assert.ok(exp * 1000 <= now + window, 'exp <= notAfter');
          assert.ok(exp * 1000 <= now + ttlSeconds * 1000, 'exp <= now + ttl');
          assert.ok(exp > iat, 'exp after iat');
          assert.equal(issued.expiresAt, exp * 1000);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses to issue when notAfter leaves no whole second', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    const now = Math.floor(T0 / 1000) * 1000 + 100;
    await assert.rejects(backend.issue(request(now, { notAfter: now + 500 })), (err: unknown) => {
      assert.ok(isBrokerError(err));
      assert.equal(err.code, 'FAILED_PRECONDITION');
      return true;
    });
  });

  it('rotation: old tokens verify during the overlap, new tokens use the new kid, old kid leaves after it', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    const oldKid = keys.current().kid;
    const before = await backend.issue(request(clock));

    clock += 10_000;
    await keys.rotate();
    const newKid = keys.current().kid;
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(
      keys.jwks().keys.map((k) => k.kid),
      [oldKid, newKid],
    );
    const after = await backend.issue(request(clock));
    assert.equal(decodeProtectedHeader(after.credential.token).kid, newKid);
    assert.equal((await verify(before.credential.token)).kid, oldKid);
    await verify(after.credential.token);

    clock += OVERLAP * 1000 - 1;
    assert.equal(keys.jwks().keys.length, 2, 'still published one ms before the overlap ends');
    clock += 1;
    assert.deepEqual(
      keys.jwks().keys.map((k) => k.kid),
      [newKid],
    );
    // Verified as of its own lifetime, the old token now fails for want of its key alone.
    await assert.rejects(verify(before.credential.token, T0), (err: unknown) => {
      assert.ok(isBrokerError(err));
      assert.equal(err.reason, 'token_invalid');
      assert.match(err.message, /ERR_JWKS_NO_MATCHING_KEY/);
      return true;
    });
  });

  it('auto-rotation replaces the current key until stopped', async () => {
    const first = keys.current().kid;
    keys.startAutoRotation(0.02);
    await new Promise((resolve) => setTimeout(resolve, 120));
    keys.stop();
    // A rotation already generating its key when stop() ran may still land; let it.
    await new Promise((resolve) => setTimeout(resolve, 30));
    const stopped = keys.current().kid;
    assert.notEqual(stopped, first);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(keys.current().kid, stopped);
    assert.throws(() => keys.startAutoRotation(0), /positive/);
  });

  it('kid is the RFC 7638 thumbprint and JWKS entries carry only public members', async () => {
    const { keys: published } = keys.jwks();
    assert.equal(published.length, 1);
    const jwk = published[0];
    assert.ok(jwk);
    assert.deepEqual(Object.keys(jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(jwk.kid, keys.current().kid);
    assert.match(jwk.kid, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }), jwk.kid);
  });

  it('never reveals the private key: not in JSON, not in inspect, not in the JWKS, not exportable', async () => {
    await keys.rotate();
    const json = JSON.stringify(keys);
    assert.doesNotMatch(json, /"d"/);
    assert.doesNotMatch(json, /privateKey/);
    assert.deepEqual(Object.keys(JSON.parse(json) as object).sort(), ['keys', 'overlapSeconds']);
    assert.doesNotMatch(inspect(keys, { depth: 10, showHidden: true }), /"d"|\bd:/);
    for (const jwk of keys.jwks().keys) assert.equal(Object.hasOwn(jwk, 'd'), false);
    await assert.rejects(exportJWK(keys.current().privateKey), /not extractable|extractable/i);
  });

  it('the JWKS handed out is a copy', () => {
    const jwks = keys.jwks();
    (jwks.keys[0] as { kid: string }).kid = 'mutated';
    assert.notEqual(keys.jwks().keys[0]?.kid, 'mutated');
  });

  it('rejects an invalid overlap', async () => {
    await assert.rejects(SigningKeyRing.create({ overlapSeconds: 0 }), /positive/);
  });

  describe('validateRole', () => {
    const backend = () => createTokenBackend({ issuer: ISSUER, keys });

    it('accepts a valid role', () => {
      assert.deepEqual(backend().validateRole(reader), []);
      assert.deepEqual(backend().validateRole(role({ audience: [AUDIENCE], scope: 'a b' })), []);
    });

    it('lists every problem at once', () => {
      const problems = backend().validateRole(role({ scope: 42, ttl: 5, audiences: ['x'] }));
      assert.equal(problems.length, 4, problems.join('\n'));
      assert.ok(problems.some((p) => /settings\.audience: required/.test(p)));
      assert.ok(
        problems.some((p) => /settings\.scope: must be a string or an array of strings, got number/.test(p)),
      );
      assert.ok(problems.some((p) => /settings\.ttl: unknown setting/.test(p)));
      assert.ok(problems.some((p) => /settings\.audiences: unknown setting/.test(p)));
    });

    it('rejects empty or malformed audience and scope', () => {
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ audience: '', scope: 'a' }, /audience: must not be empty/],
        [{ audience: [], scope: 'a' }, /audience: must not be an empty array/],
        [{ audience: [AUDIENCE, 7], scope: 'a' }, /audience: every entry/],
        [{ audience: AUDIENCE, scope: '' }, /scope: must name at least one/],
        [{ audience: AUDIENCE, scope: [] }, /scope: must name at least one/],
        [{ audience: AUDIENCE, scope: ['ok', 'has space', 3] }, /invalid scope token\(s\) "has space", 3/],
        [{ audience: AUDIENCE, scope: 'quote"d' }, /invalid scope token/],
      ];
      for (const [settings, expected] of cases) {
        const problems = backend().validateRole(role(settings));
        assert.equal(problems.length, 1, `${JSON.stringify(settings)}: ${problems.join('; ')}`);
        assert.match(problems[0] ?? '', expected);
      }
    });

    it('flags a max TTL (plus clock skew) longer than the key overlap', () => {
      assert.match(
        backend().validateRole(role(reader.settings, OVERLAP + 1))[0] ?? '',
        /exceeds the signing key overlap/,
      );
      const skewed = createTokenBackend({ issuer: ISSUER, keys, clockSkewSeconds: 60 });
      assert.equal(skewed.validateRole(role(reader.settings, OVERLAP - 30)).length, 1);
      assert.equal(skewed.validateRole(role(reader.settings, OVERLAP - 60)).length, 0);
    });
  });

  describe('verifyAccessToken', () => {
    it('rejects a revoked jti with a clear reason', async () => {
      const issued = await createTokenBackend({ issuer: ISSUER, keys }).issue(request(T0));
      await assert.rejects(verify(issued.credential.token, T0, new Set(['lease-0001'])), (err: unknown) => {
        assert.ok(isBrokerError(err));
        assert.equal(err.code, 'UNAUTHENTICATED');
        assert.equal(err.reason, 'token_revoked');
        assert.match(err.message, /lease-0001 has been revoked/);
        return true;
      });
      await verify(issued.credential.token, T0, new Set(['another-lease']));
    });

    it('rejects wrong audience, wrong issuer, expiry and a non-at+jwt type', async () => {
      const issued = await createTokenBackend({ issuer: ISSUER, keys }).issue(request(T0));
      const token = issued.credential.token;
      const base = { jwks: keys.jwks(), issuer: ISSUER, audience: AUDIENCE, currentDate: new Date(T0) };
      const rejectsWith = (p: Promise<unknown>, code: RegExp) =>
        assert.rejects(
          p,
          (err: unknown) => isBrokerError(err) && err.reason === 'token_invalid' && code.test(err.message),
        );
      await rejectsWith(
        verifyAccessToken(token, { ...base, audience: 'https://elsewhere' }),
        /ERR_JWT_CLAIM_VALIDATION_FAILED/,
      );
      await rejectsWith(
        verifyAccessToken(token, { ...base, issuer: 'spiffe://evil.org/x' }),
        /ERR_JWT_CLAIM_VALIDATION_FAILED/,
      );
      await rejectsWith(
        verifyAccessToken(token, { ...base, currentDate: new Date(issued.expiresAt + 1000) }),
        /ERR_JWT_EXPIRED/,
      );
      const key = keys.current();
      /** A token signed with the broker's key, valid for a minute, with these claims and `typ`. */
      const signed = (claims: Record<string, string>, typ: string): Promise<string> =>
        new SignJWT(claims)
          .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setIssuedAt(Math.floor(T0 / 1000))
          .setNotBefore(Math.floor(T0 / 1000))
          .setExpirationTime(Math.floor(T0 / 1000) + 60)
          .sign(key.privateKey);
      const idToken = await signed({ sub: 'x', scope: 'a', jti: 'j' }, 'JWT');
      await rejectsWith(verifyAccessToken(idToken, base), /typ/);
      // RFC 9068 requires client_id: an at+jwt without it is not one of ours.
      const noClient = await signed(
        { sub: 'x', scope: 'a', jti: 'j', task: 't', env: 'e', role: 'r' },
        'at+jwt',
      );
      await rejectsWith(verifyAccessToken(noClient, base), /client_id/);
    });
  });

  it('revoke is an idempotent no-op that succeeds', async () => {
    const backend = createTokenBackend({ issuer: ISSUER, keys });
    const target = { leaseId: 'lease-0001', backendRef: 'lease-0001', expiresAt: T0 + 300_000 };
    await backend.revoke(target);
    await backend.revoke(target);
  });
});
