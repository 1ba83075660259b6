/**
 * `svid-broker dev --console`: the dev stack serves the web console with a certificate from its
 * own CA for localhost, and people sign in at a real OpenID provider (oidc-provider).
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevStack, type DevStack } from '../../src/dev/dev-stack.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { createLogger, startBroker, type RunningBroker } from '../../src/main.js';
import { ConsoleClient } from '../support/console-client.js';
import { PEOPLE, freePort } from '../support/console-harness.js';
import { startTestIdp, type TestIdp } from '../support/test-idp.js';

describe('integration: dev stack with --console', function () {
  this.timeout(60_000);
  let dir: string;
  let idp: TestIdp;
  let stack: DevStack;
  let broker: RunningBroker;
  let base: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-dev-console-'));
    const port = await freePort();
    base = `https://localhost:${port}`;
    idp = await startTestIdp(`${base}/auth/callback`, Object.values(PEOPLE));
    writeFileSync(join(dir, 'secret'), idp.clientSecret);
    const logger = createLogger('silent');
    stack = await startDevStack({
      dir: join(dir, 'dev'),
      logger,
      store: 'memory',
      listen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
      console: {
        listen: `localhost:${port}`,
        issuer: idp.issuer,
        clientId: idp.clientId,
        clientSecretFile: join(dir, 'secret'),
      },
    });
    broker = await startBroker({ config: stack.config, logger });
  });
  after(async () => {
    await broker?.close();
    await stack?.close();
    await idp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the console over TLS from the dev CA, with in-memory sessions, and people sign in', async () => {
    assert.equal(broker.consolePort, Number(new URL(base).port));
    const client = new ConsoleClient(
      stack.ca
        .authorities()
        .map((der) => derToPem(der))
        .join(''),
    );
    const page = await client.signIn(base, 'alice');
    assert.equal(page.status, 200);
    assert.match(page.body, /Pending approvals/);
  });
});
