/**
 * A broker with its web console, signed in through a real OpenID provider (test-idp.ts): the
 * console on https://localhost:<port> with a certificate from a test CA of its own, the IdP's
 * client registered with that callback, and the people given as the IdP's accounts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devAgents } from '../../src/dev/dev-stack.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { startHarness, type Harness, type HarnessOptions } from './broker-harness.js';
import { startTestIdp, type TestIdp, type TestPerson } from './test-idp.js';

export interface ConsoleHarness {
  h: Harness;
  idp: TestIdp;
  /** https://localhost:<port> */
  base: string;
  /** The console CA's certificate (PEM), for clients. */
  caPem: string;
  close(): Promise<void>;
}

export const PEOPLE = {
  alice: { sub: 'alice', email: 'alice@example.org', groups: ['security'] },
  bob: { sub: 'bob', email: 'bob@example.org', groups: ['security'] },
  carol: { sub: 'carol', email: 'Carol@Example.org', groups: ['security'] },
  dave: { sub: 'dave', email: 'dave@example.org', groups: ['engineering'] },
  /** May decide approvals (APPROVERS_POLICY), nothing else. */
  erin: { sub: 'erin', email: 'erin@example.org', groups: ['approvers'] },
} satisfies Record<string, TestPerson>;

/** A group that decides approvals and holds no admin action (added beside the shipped policies). */
export const APPROVERS_POLICY = `@id("approvers-decide")
permit (principal in HumanGroup::"approvers", action == Action::"DecideApproval", resource is Role);
`;

/** The demo agent's owner in the catalog: carol (by email, compared case-insensitively). */
export const DEMO_OWNER = 'carol@example.org';

export async function startConsoleHarness(opts: HarnessOptions = {}): Promise<ConsoleHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'svb-console-'));
  const closers: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const fn of closers.splice(0).reverse()) await Promise.resolve(fn()).catch(() => undefined);
  };
  try {
    const port = await freePort();
    const base = `https://localhost:${port}`;
    const idp = await startTestIdp(`${base}/auth/callback`, Object.values(PEOPLE));
    closers.push(() => idp.close());
    const tls = await consoleCertificate(dir);
    writeFileSync(join(dir, 'client-secret'), `${idp.clientSecret}\n`);
    const agents = devAgents().map((a) =>
      a.pattern.endsWith('/agents/demo') ? { ...a, owner: DEMO_OWNER } : a,
    );
    const h = await startHarness({
      extraPolicies: APPROVERS_POLICY,
      ...opts,
      config: {
        approvals: { ttlSeconds: 900, pollMs: 50 },
        ...opts.config,
        agents,
        humans: {
          oidc: {
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecretFile: join(dir, 'client-secret'),
            redirectUrl: `${base}/auth/callback`,
            scopes: ['openid', 'email', 'groups'],
            stepUpMaxAgeSeconds: 300,
          },
          console: { listen: `localhost:${port}`, certFile: tls.certFile, keyFile: tls.keyFile },
        },
      },
    });
    closers.push(() => h.close());
    return { h, idp, base, caPem: tls.caPem, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function consoleCertificate(
  dir: string,
): Promise<{ certFile: string; keyFile: string; caPem: string }> {
  const ca = await LocalCa.create('console.test');
  const leaf = await ca.issueX509Svid('spiffe://console.test/console', { dnsNames: ['localhost'] });
  const certFile = join(dir, 'console.crt');
  const keyFile = join(dir, 'console.key');
  writeFileSync(certFile, leaf.certChain.map((der) => derToPem(der)).join(''));
  writeFileSync(keyFile, derToPem(leaf.privateKey, 'PRIVATE KEY'));
  return {
    certFile,
    keyFile,
    caPem: ca
      .authorities()
      .map((der) => derToPem(der))
      .join(''),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, 'localhost', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
