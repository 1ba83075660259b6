import assert from 'node:assert/strict';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import { expectVaultError, obj, vaultClient, type VaultClient } from './helpers.js';

const BROKER_ID = 'spiffe://example.org/svid-broker';
const AUDIENCE = 'vault';

describe('vault-emulator: JWT auth with JWT-SVIDs', () => {
  let ca: LocalCa;
  let otherCa: LocalCa;
  let emu: VaultEmulator;
  let anonymous: VaultClient;

  before(async () => {
    ca = await LocalCa.create('example.org');
    otherCa = await LocalCa.create('example.org');
  });

  beforeEach(async () => {
    emu = await startVaultEmulator();
    emu.setPolicy('broker', { 'database/creds/*': ['read'] });
    emu.configureDatabaseRole('readonly', { default_ttl: '1h' });
    emu.configureJwtAuth({
      jwks: () => ca.jwks(),
      roles: {
        broker: {
          bound_audiences: [AUDIENCE],
          bound_subject: BROKER_ID,
          user_claim: 'sub',
          token_policies: ['broker'],
          token_ttl: 900,
        },
      },
    });
    anonymous = vaultClient(emu, undefined);
  });

  afterEach(() => emu.close());

  const login = (jwt: string, role = 'broker'): Promise<unknown> =>
    anonymous.write('auth/jwt/login', { role, jwt });

  it('logs in with a JWT-SVID and returns an orphan token with the role policies', async () => {
    const res = obj(await login(await ca.mintJwtSvid(BROKER_ID, AUDIENCE)));
    assert.equal(res.data, null);
    const auth = obj(res.auth);
    assert.match(String(auth.client_token), /^hvs\./);
    assert.match(String(auth.entity_id), /^[0-9a-f-]{36}$/);
    assert.deepEqual(
      { ...auth, client_token: '', accessor: '', entity_id: '' },
      {
        client_token: '',
        accessor: '',
        entity_id: '',
        policies: ['broker', 'default'],
        token_policies: ['broker', 'default'],
        metadata: { role: 'broker' },
        lease_duration: 900,
        renewable: true,
        token_type: 'service',
        orphan: true,
        num_uses: 0,
      },
    );
    const client = vaultClient(emu, String(auth.client_token));
    assert.ok(obj(await client.read('database/creds/readonly')).lease_id);
    const self = obj(obj(await client.read('auth/token/lookup-self')).data);
    assert.equal(self.path, 'auth/jwt/login');
    assert.equal(emu.tokenByAccessor(String(auth.accessor))?.orphan, true);
    const again = obj(obj(await login(await ca.mintJwtSvid(BROKER_ID, [AUDIENCE, 'other']))).auth);
    assert.equal(again.entity_id, auth.entity_id, 'the same SPIFFE ID maps to the same entity');
  });

  it('ignores a stale client token on login, so a revoked broker can log in again', async () => {
    const first = obj(obj(await login(await ca.mintJwtSvid(BROKER_ID, AUDIENCE))).auth);
    const client = vaultClient(emu, String(first.client_token));
    emu.revokeToken(String(first.client_token));
    await expectVaultError(client.read('database/creds/readonly'), 403, 'invalid token');
    const second = obj(
      await client.write('auth/jwt/login', {
        role: 'broker',
        jwt: await ca.mintJwtSvid(BROKER_ID, AUDIENCE),
      }),
    );
    assert.ok(obj(second.auth).client_token);
  });

  it('rejects a JWT signed by a key outside the JWKS', async () => {
    await expectVaultError(
      login(await ca.mintJwtSvid(BROKER_ID, AUDIENCE, { signWith: otherCa })),
      400,
      'error validating token: failed to verify id token signature',
    );
    await expectVaultError(
      login(await ca.mintJwtSvid(BROKER_ID, AUDIENCE, { alg: 'none' })),
      400,
      'error validating token: token signed with unsupported algorithm "none"',
    );
    await expectVaultError(login('not.a.jwt'), 400, 'error validating token');
  });

  it('rejects a wrong audience and a wrong subject', async () => {
    await expectVaultError(
      login(await ca.mintJwtSvid(BROKER_ID, 'someone-else')),
      400,
      'error validating token: invalid audience (aud) claim',
    );
    await expectVaultError(
      login(await ca.mintJwtSvid('spiffe://example.org/agent', AUDIENCE)),
      400,
      'error validating token: invalid subject (sub) claim',
    );
  });

  it("rejects an expired JWT, after Vault's default leeways", async () => {
    const expiredLongAgo = await ca.mintJwtSvid(BROKER_ID, AUDIENCE, {
      issuedAt: new Date(Date.now() - 3600_000),
      ttlSeconds: 300,
    });
    await expectVaultError(
      login(expiredLongAgo),
      400,
      'invalid expiration time (exp) claim: token is expired',
    );
    // Expired a minute ago: inside the 60 s clock skew + 150 s expiration leeway Vault allows.
    const justExpired = await ca.mintJwtSvid(BROKER_ID, AUDIENCE, {
      issuedAt: new Date(Date.now() - 360_000),
      ttlSeconds: 300,
    });
    assert.ok(obj(obj(await login(justExpired)).auth).client_token);
  });

  it('rejects unknown and missing roles and a missing JWT', async () => {
    const jwt = await ca.mintJwtSvid(BROKER_ID, AUDIENCE);
    await expectVaultError(login(jwt, 'nope'), 400, 'role "nope" could not be found');
    await expectVaultError(anonymous.write('auth/jwt/login', { jwt }), 400, 'missing role');
    await expectVaultError(anonymous.write('auth/jwt/login', { role: 'broker' }), 400, 'missing token');
  });

  it('reads the JWKS at each login, so key rotation works', async () => {
    const rotating = await LocalCa.create('example.org');
    emu.configureJwtAuth({
      mount: 'spiffe',
      jwks: () => rotating.jwks(),
      roles: { broker: { bound_audiences: [AUDIENCE], token_policies: ['broker'] } },
    });
    const viaMount = (jwt: string): Promise<unknown> =>
      anonymous.write('auth/spiffe/login', { role: 'broker', jwt });
    const oldJwt = await rotating.mintJwtSvid(BROKER_ID, AUDIENCE);
    await rotating.rotateJwtKey();
    assert.ok(obj(await viaMount(await rotating.mintJwtSvid(BROKER_ID, AUDIENCE))).auth);
    assert.ok(obj(await viaMount(oldJwt)).auth, 'old keys stay valid until retired');
    rotating.retireOldJwtKeys();
    await expectVaultError(viaMount(oldJwt), 400, 'failed to verify id token signature');
  });

  it('refuses audiences on a role that binds none, and roles without any binding', async () => {
    emu.configureJwtAuth({
      jwks: () => ca.jwks(),
      roles: { subject_only: { bound_audiences: [], bound_subject: BROKER_ID, token_policies: ['broker'] } },
    });
    await expectVaultError(
      login(await ca.mintJwtSvid(BROKER_ID, AUDIENCE), 'subject_only'),
      400,
      'audience claim found in JWT but no audiences bound to the role',
    );
    assert.throws(
      () =>
        emu.configureJwtAuth({
          jwks: () => ca.jwks(),
          roles: { loose: { bound_audiences: [], token_policies: [] } },
        }),
      /at least one bound constraint/,
    );
  });
});
