import assert from 'node:assert/strict';
import { startVaultEmulator, type VaultEmulator } from '../../support/vault-emulator/index.js';
import { ENVELOPE_KEYS, expectVaultError, obj, rawRequest, vaultClient } from './helpers.js';

describe('vault-emulator: envelope, errors and authentication', () => {
  let emu: VaultEmulator;

  before(async () => {
    emu = await startVaultEmulator();
    emu.configureDatabaseRole('readonly', { default_ttl: '1h' });
    emu.setPolicy('reader', { 'database/creds/readonly': ['read'] });
  });

  after(() => emu.close());

  it('answers every JSON body with exactly the eight envelope fields', async () => {
    const res = obj(await vaultClient(emu, emu.rootToken).read('auth/token/lookup-self'));
    assert.deepEqual(Object.keys(res).sort(), ENVELOPE_KEYS);
    assert.match(String(res.request_id), /^[0-9a-f-]{36}$/);
    assert.equal(res.lease_id, '');
    assert.equal(res.renewable, false);
    assert.equal(res.lease_duration, 0);
    assert.equal(res.wrap_info, null);
    assert.equal(res.warnings, null);
    assert.equal(res.auth, null);
    assert.equal(obj(res.data).id, emu.rootToken);
  });

  it('answers 204 with an empty body when there is nothing to say', async () => {
    const res = await rawRequest(emu, 'PUT', 'sys/leases/revoke', {
      token: emu.rootToken,
      body: { lease_id: 'database/creds/readonly/unknown' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.text, '');
  });

  it('ignores unknown parameters with a warning, turning a 204 into a 200', async () => {
    const res = await rawRequest(emu, 'PUT', 'sys/leases/revoke', {
      token: emu.rootToken,
      body: { lease_id: 'database/creds/readonly/unknown', bogus: 1, also: 'x' },
    });
    assert.equal(res.status, 200);
    const body = obj(res.body);
    assert.deepEqual(Object.keys(body).sort(), ENVELOPE_KEYS);
    assert.deepEqual(body.warnings, ['Endpoint ignored these unrecognized parameters: [also bogus]']);
    assert.equal(body.data, null);

    const created = obj(
      await vaultClient(emu, emu.rootToken).write('auth/token/create', { ttl: 60, colour: 'red' }),
    );
    assert.deepEqual(created.warnings, ['Endpoint ignored these unrecognized parameters: [colour]']);
    assert.equal(obj(created.auth).lease_duration, 60);
  });

  it('shapes errors as {"errors": [...]} with the right status', async () => {
    const res = await rawRequest(emu, 'POST', 'auth/token/lookup-accessor', {
      token: emu.rootToken,
      body: { accessor: 'nope' },
    });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, { errors: ['invalid accessor'] });
    assert.equal(res.headers.get('content-type'), 'application/json');
  });

  it('denies a missing token with 403 permission denied', async () => {
    const res = await rawRequest(emu, 'GET', 'auth/token/lookup-self');
    assert.equal(res.status, 403);
    assert.deepEqual(res.body, { errors: ['permission denied'] });
  });

  it('denies a made-up token with 403 permission denied and invalid token', async () => {
    const err = await expectVaultError(
      vaultClient(emu, 'hvs.madeup').read('auth/token/lookup-self'),
      403,
      'permission denied',
    );
    assert.equal(err.message, 'permission denied');
    assert.deepEqual(err.response?.body.errors, ['permission denied', 'invalid token']);
  });

  it('accepts the token as Authorization: Bearer', async () => {
    const res = await rawRequest(emu, 'GET', 'auth/token/lookup-self', {
      headers: { Authorization: `Bearer ${emu.rootToken}` },
    });
    assert.equal(res.status, 200);
    assert.equal(obj(obj(res.body).data).id, emu.rootToken);
  });

  it('answers unknown routes 404 to root and 403 to tokens without a policy for them', async () => {
    const res = await rawRequest(emu, 'GET', 'nothing/here', { token: emu.rootToken });
    assert.equal(res.status, 404);
    assert.deepEqual(res.body, { errors: ['no handler for route "nothing/here". route entry not found.'] });
    const reader = emu.createToken({ policies: ['reader'] }).token;
    assert.equal((await rawRequest(emu, 'GET', 'nothing/here', { token: reader })).status, 403);
    assert.equal((await fetch(`${emu.url}/v2/sys/health`)).status, 404);
  });

  it('answers 405 for an operation the path does not support', async () => {
    const res = await rawRequest(emu, 'POST', 'database/creds/readonly', { token: emu.rootToken, body: {} });
    assert.equal(res.status, 405);
    assert.deepEqual(res.body, { errors: ['unsupported operation'] });
  });

  it('rejects malformed JSON and mistyped parameters with 400', async () => {
    const bad = await rawRequest(emu, 'POST', 'auth/token/create', {
      token: emu.rootToken,
      rawBody: '{nope',
    });
    assert.equal(bad.status, 400);
    assert.match(String((obj(bad.body).errors as string[])[0]), /^failed to parse JSON input/);
    await expectVaultError(
      vaultClient(emu, emu.rootToken).write('auth/token/create', { ttl: 'soon' }),
      400,
      'error converting input "soon" for field "ttl"',
    );
  });

  it('keeps a request log without token values', async () => {
    emu.requests.length = 0;
    const reader = emu.createToken({ policies: ['reader'] }).token;
    await vaultClient(emu, reader).read('database/creds/readonly');
    await rawRequest(emu, 'GET', 'sys/health');
    assert.deepEqual(
      emu.requests.map((r) => [r.method, r.path, r.namespace, r.hadToken, r.status]),
      [
        ['GET', 'database/creds/readonly', '', true, 200],
        ['GET', 'sys/health', '', false, 200],
      ],
    );
    const log = JSON.stringify(emu.requests);
    assert.ok(!log.includes(reader) && !log.includes(emu.rootToken));
  });

  it('leaves the client token alone when tokens are minted with write(), unlike node-vault tokenCreate', async () => {
    const client = vaultClient(emu, emu.rootToken);
    await client.write('auth/token/create', { policies: ['reader'] });
    assert.equal(client.token, emu.rootToken);
    await client.tokenCreate({ policies: ['reader'] });
    assert.notEqual(
      client.token,
      emu.rootToken,
      'node-vault tokenCreate overwrites the client token (spec §9)',
    );
  });
});
