/**
 * What the emulator (plain HTTP) cannot show: TLS to Vault verified against a CA file, and cert
 * auth, where the broker logs in over mTLS with its X.509-SVID as the client certificate. A small
 * HTTPS server plays Vault's `auth/cert/login`, with certificates from the LocalCa.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { VaultAuth } from '../../../src/credentials/vault/vault-auth.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import { LocalCa } from '../../../src/dev/local-ca.js';
import type { X509Svid } from '../../../src/identity/types.js';
import { isBrokerError } from '../../../src/errors.js';

const BROKER_ID = 'spiffe://example.org/svid-broker';

function pem(label: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

describe('Vault over TLS: CA file and cert auth with the X.509-SVID', () => {
  let ca: LocalCa;
  let server: Server;
  let url: string;
  let dir: string;
  let caFile: string;
  let brokerSvid: X509Svid;
  const logins: Array<{ peer: string; body: string }> = [];

  before(async () => {
    ca = await LocalCa.create('example.org');
    const serverSvid = await ca.issueX509Svid('spiffe://example.org/vault', { dnsNames: ['localhost'] });
    brokerSvid = await ca.issueX509Svid(BROKER_ID);
    dir = mkdtempSync(join(tmpdir(), 'svb-vault-tls-'));
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, pem('CERTIFICATE', ca.rootDer));

    server = createServer(
      {
        cert: serverSvid.certChain.map((d) => pem('CERTIFICATE', d)).join(''),
        key: pem('PRIVATE KEY', serverSvid.privateKey),
        ca: pem('CERTIFICATE', ca.rootDer),
        requestCert: true,
        rejectUnauthorized: false, // answer unauthenticated clients with 400, as Vault does
      },
      (req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => (body += chunk.toString()));
        req.on('end', () => {
          const socket = req.socket as TLSSocket;
          const raw = socket.getPeerCertificate().raw;
          const peer =
            socket.authorized && raw
              ? (new X509Certificate(raw).subjectAltName ?? '').replace(/^URI:/, '')
              : '';
          logins.push({ peer, body });
          res.setHeader('content-type', 'application/json');
          if (req.url !== '/v1/auth/cert/login' || peer !== BROKER_ID) {
            res.statusCode = 400;
            res.end(JSON.stringify({ errors: ['invalid certificate or no client certificate supplied'] }));
            return;
          }
          res.end(
            JSON.stringify({
              request_id: 'r',
              lease_id: '',
              renewable: false,
              lease_duration: 0,
              data: null,
              wrap_info: null,
              warnings: null,
              auth: {
                client_token: 'hvs.cert-login-token',
                accessor: 'acc',
                policies: ['broker'],
                token_policies: ['broker'],
                metadata: {},
                lease_duration: 3600,
                renewable: true,
                orphan: true,
              },
            }),
          );
        });
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    url = `https://localhost:${address.port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    logins.length = 0;
  });

  it('logs in with the X.509-SVID as client certificate, verifying Vault against the CA file', async () => {
    const client = new VaultClient({ endpoint: url, caFile, timeoutMs: 2000 });
    const auth = new VaultAuth({
      client,
      method: { method: 'cert', name: 'svid-broker' },
      svid: () => brokerSvid,
    });
    assert.equal(await auth.token(), 'hvs.cert-login-token');
    assert.deepEqual(logins, [{ peer: BROKER_ID, body: JSON.stringify({ name: 'svid-broker' }) }]);
    assert.equal(auth.state.loggedIn, true);
  });

  it('refuses a Vault whose certificate the CA file does not vouch for', async () => {
    const other = await LocalCa.create('other.org');
    const otherCa = join(dir, 'other.pem');
    writeFileSync(otherCa, pem('CERTIFICATE', other.rootDer));
    const client = new VaultClient({ endpoint: url, caFile: otherCa, timeoutMs: 2000 });
    const auth = new VaultAuth({ client, method: { method: 'cert' }, svid: () => brokerSvid });
    await assert.rejects(auth.token(), (err: unknown) => {
      assert.ok(isBrokerError(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.reason, 'vault_unavailable');
      return true;
    });
    assert.deepEqual(logins, [], 'no request reaches a Vault the CA file does not vouch for');
  });

  it('reports a certificate Vault refuses as a clear, non-secret login rejection', async () => {
    const stranger = await ca.issueX509Svid('spiffe://example.org/someone-else');
    const client = new VaultClient({ endpoint: url, caFile, timeoutMs: 2000 });
    const auth = new VaultAuth({ client, method: { method: 'cert' }, svid: () => stranger });
    await assert.rejects(auth.token(), (err: unknown) => {
      assert.ok(isBrokerError(err));
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.reason, 'vault_login_rejected');
      assert.match(err.message, /cert login \(auth\/cert\/login\).*400.*invalid certificate/);
      assert.doesNotMatch(err.message, /PRIVATE KEY|BEGIN/);
      return true;
    });
  });

  it('fails without an SVID rather than logging in anonymously', async () => {
    const client = new VaultClient({ endpoint: url, caFile, timeoutMs: 2000 });
    const auth = new VaultAuth({ client, method: { method: 'cert' }, svid: () => undefined });
    await assert.rejects(auth.token(), /no X\.509-SVID available/);
    assert.deepEqual(logins, []);
  });

  it('refuses an unreadable CA file at construction, naming it', () => {
    assert.throws(
      () => new VaultClient({ endpoint: url, caFile: join(dir, 'missing.pem') }),
      /cannot read caFile .*missing\.pem/,
    );
  });
});
