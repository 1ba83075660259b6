import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import { expectVaultError, obj, rawRequest, vaultClient } from './helpers.js';

describe('vault-emulator: namespaces', () => {
  let emu: VaultEmulator;

  beforeEach(async () => {
    emu = await startVaultEmulator({ namespaces: ['ns1', 'ns2'] });
    emu.configureDatabaseRole('readonly', { default_ttl: '1h', namespace: 'ns1' });
    emu.setPolicy(
      'reader',
      { 'database/creds/readonly': ['read'], 'sys/leases/revoke': ['update'] },
      { namespace: 'ns1' },
    );
  });

  afterEach(() => emu.close());

  it('mounts engines per namespace and suffixes ids minted inside one', async () => {
    const ns1 = vaultClient(emu, emu.rootToken, { namespace: 'ns1' });
    const res = obj(await ns1.read('database/creds/readonly'));
    assert.match(String(res.lease_id), /^database\/creds\/readonly\/[A-Za-z0-9]{24}\.[A-Za-z0-9]{5}$/);
    assert.equal(emu.leases()[0]?.namespace, 'ns1/');
    await expectVaultError(
      vaultClient(emu, emu.rootToken).read('database/creds/readonly'),
      404,
      'no handler for route "database/creds/readonly"',
    );
    // The namespace may also lead the path.
    const inPath = await rawRequest(emu, 'GET', 'ns1/database/creds/readonly', { token: emu.rootToken });
    assert.equal(inPath.status, 200);
    assert.equal(emu.requests.at(-1)?.namespace, 'ns1/');
    assert.equal(emu.requests.at(-1)?.path, 'database/creds/readonly');
  });

  it('keeps tokens in the namespace that made them', async () => {
    const ns1Root = vaultClient(emu, emu.rootToken, { namespace: 'ns1/' });
    const created = obj(obj(await ns1Root.write('auth/token/create', { policies: ['reader'] })).auth);
    assert.match(String(created.client_token), /^hvs\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{5}$/);
    assert.equal(emu.tokenByAccessor(String(created.accessor))?.namespace, 'ns1/');

    const inNs1 = vaultClient(emu, String(created.client_token), { namespace: 'ns1' });
    const creds = obj(await inNs1.read('database/creds/readonly'));
    await inNs1.write('sys/leases/revoke', { lease_id: creds.lease_id });
    assert.deepEqual(emu.leases(), []);

    const inRoot = vaultClient(emu, String(created.client_token));
    await expectVaultError(inRoot.read('auth/token/lookup-self'), 403, 'invalid token');
    const inNs2 = vaultClient(emu, String(created.client_token), { namespace: 'ns2' });
    await expectVaultError(inNs2.read('auth/token/lookup-self'), 403, 'invalid token');
  });

  it('applies a parent-namespace policy to child paths prefixed by the namespace', async () => {
    emu.setPolicy('ns1-reader', { 'ns1/database/creds/*': ['read'] });
    const token = emu.createToken({ policies: ['ns1-reader'] }).token;
    assert.ok(
      obj(await vaultClient(emu, token, { namespace: 'ns1' }).read('database/creds/readonly')).lease_id,
    );
    const plain = emu.createToken({ policies: ['reader'] }).token;
    await expectVaultError(
      vaultClient(emu, plain, { namespace: 'ns1' }).read('database/creds/readonly'),
      403,
      'permission denied',
    );
  });

  it('answers an unknown namespace with 404 to a valid token and 403 without one', async () => {
    await expectVaultError(
      vaultClient(emu, emu.rootToken, { namespace: 'nope' }).read('auth/token/lookup-self'),
      404,
      'no handler for route',
    );
    const anonymous = await rawRequest(emu, 'POST', 'auth/jwt/login', {
      body: { role: 'x', jwt: 'y' },
      headers: { 'X-Vault-Namespace': 'nope/' },
    });
    assert.equal(anonymous.status, 403);
    assert.equal(emu.requests.at(-1)?.namespace, 'nope/');
  });
});
