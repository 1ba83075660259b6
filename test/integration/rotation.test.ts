/**
 * Rotation without restart: the broker's own SVID, the trust bundle (a root rotation), SPIRE-style
 * rotation at half-life, and the per-connection auth cache dropping verdicts when bundles change.
 */
// @peculiar/x509 needs reflect-metadata loaded before it is evaluated; keep this import first.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { connect } from 'node:tls';
import { status } from '@grpc/grpc-js';
import { X509Certificate } from '@peculiar/x509';
import type { BrokerClient } from '../../src/client/broker-client.js';
import type { CaWorkloadIdentity } from '../../src/dev/ca-workload-identity.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';

const PARTNER_AGENT = 'spiffe://partner.test/agents/demo';
const PARTNER_POLICIES = `
@id("partner-begin-task-dev")
permit (
  principal == Agent::"${PARTNER_AGENT}",
  action == Action::"BeginTask",
  resource == Environment::"dev"
);
`;

interface ServedCert {
  fingerprint256: string;
  serialNumber: string;
  uri: string;
  validTo: number;
  raw: Buffer;
}

/** The certificate a fresh TLS handshake with the broker sees (no client certificate offered). */
function servedCertificate(port: number): Promise<ServedCert> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      {
        host: '127.0.0.1',
        port,
        ALPNProtocols: ['h2'],
        servername: 'svid-broker',
        rejectUnauthorized: false,
      },
      () => {
        const cert = socket.getPeerCertificate();
        socket.destroy();
        resolve({
          fingerprint256: cert.fingerprint256,
          serialNumber: cert.serialNumber,
          uri: (cert.subjectaltname ?? '').replace(/^URI:/, ''),
          validTo: Date.parse(cert.valid_to),
          raw: cert.raw,
        });
      },
    );
    socket.setTimeout(5000, () => socket.destroy(new Error('TLS handshake timed out')));
    socket.once('error', reject);
  });
}

/** A harness workload's identity (the Workload API side), by name. */
function identity(h: Harness, name: string): CaWorkloadIdentity {
  const found = h.identities[name];
  if (!found) throw new Error(`no workload ${name}`);
  return found;
}

const fingerprintOf = (der: Uint8Array): string => new NodeX509(der).fingerprint256;

/** True when `der` carries a valid signature by the certificate `issuerDer`. */
async function signedBy(der: Uint8Array, issuerDer: Uint8Array): Promise<boolean> {
  const issuer = new X509Certificate(issuerDer);
  return new X509Certificate(der).verify({ publicKey: issuer.publicKey, signatureOnly: true });
}

async function beginAndIssue(client: BrokerClient): Promise<string> {
  const task = await client.beginTask({ environment: 'dev', intent: 'rotation' });
  const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
  assert.ok(issued.credential?.token);
  return issued.lease_id;
}

describe('integration: rotation', function () {
  this.timeout(20_000);

  describe('on a long-lived SVID', () => {
    let h: Harness;
    beforeEach(async () => {
      h = await startHarness();
    });
    afterEach(async () => h?.close());

    it('serves a rotated broker SVID to new handshakes while connected clients keep working', async () => {
      const connected = await h.client('demo');
      const task = await connected.beginTask({ environment: 'dev', intent: 'before rotation' });
      const before = await servedCertificate(h.broker.grpcPort);
      assert.equal(before.uri, BROKER_ID);
      const firstSvid = identity(h, 'broker').current().svids[0];
      assert.equal(before.fingerprint256, fingerprintOf(firstSvid?.certChain[0] as Uint8Array));

      await identity(h, 'broker').rotate();
      const rotated = identity(h, 'broker').current().svids[0]?.certChain[0] as Uint8Array;
      const after = await eventually(async () => {
        const cert = await servedCertificate(h.broker.grpcPort);
        return cert.fingerprint256 !== before.fingerprint256 ? cert : undefined;
      });
      assert.equal(after.fingerprint256, fingerprintOf(rotated), 'the broker serves exactly the new SVID');
      assert.notEqual(after.serialNumber, before.serialNumber);
      assert.equal(after.uri, BROKER_ID);

      // The connection opened before the rotation still works...
      const issued = await connected.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.ok(issued.credential?.token);
      // ...and a client that connects now handshakes against the new certificate.
      const fresh = await h.client('demo');
      await beginAndIssue(fresh);
      assert.equal(
        (await servedCertificate(h.broker.grpcPort)).fingerprint256,
        after.fingerprint256,
        'no restart and no flip-back',
      );
    });

    it('accepts SVIDs from a rotated root, then drops the old root when it is retired', async () => {
      const oldRoot = h.ca.rootDer;
      const oldClient = await h.client('demo');
      await beginAndIssue(oldClient);

      await h.ca.rotateRoot();
      const newRoot = h.ca.rootDer;
      assert.notEqual(fingerprintOf(newRoot), fingerprintOf(oldRoot));
      await identity(h, 'demo').rotate();
      await identity(h, 'broker').rotate();

      const demoLeaf = identity(h, 'demo').current().svids[0]?.certChain[0] as Uint8Array;
      assert.ok(await signedBy(demoLeaf, newRoot), 'the re-issued agent SVID chains to the new root');
      assert.ok(!(await signedBy(demoLeaf, oldRoot)));
      // The broker picked up its new SVID (and, with it, the two-root bundle).
      const brokerLeaf = identity(h, 'broker').current().svids[0]?.certChain[0] as Uint8Array;
      await eventually(
        async () => (await servedCertificate(h.broker.grpcPort)).fingerprint256 === fingerprintOf(brokerLeaf),
      );
      assert.ok(await signedBy(brokerLeaf, newRoot));

      // An agent with the new SVID is accepted...
      const newClient = await h.client('demo');
      await beginAndIssue(newClient);
      // ...and during the overlap one still holding an old-root SVID is too.
      await beginAndIssue(oldClient);

      // Retiring the old root is a bundle change: the old client's cached verdict must go.
      h.ca.retireOldRoots();
      identity(h, 'broker').notify();
      const refused = await eventually(async () => {
        const err = await grpcError(oldClient.beginTask({ environment: 'dev' })).catch(() => undefined);
        return err?.code === status.UNAUTHENTICATED ? err : undefined;
      });
      // Old and new roots share a subject name (as SPIRE's do), so the old leaf names a bundle
      // authority whose signature does not verify.
      assert.equal(refused.metadata['x-svid-broker-reason'], 'bad_signature');
      // The new-root agent is unaffected, on its existing connection and on a new one.
      await beginAndIssue(newClient);
      await beginAndIssue(await h.client('demo'));
    });
  });

  describe('with short-lived SVIDs', () => {
    let h: Harness;
    before(async () => {
      h = await startHarness({ svidTtlSeconds: 4 });
    });
    after(async () => h?.close());

    it('rotates the broker SVID at half-life on its own and keeps serving past the first expiry', async () => {
      const first = await servedCertificate(h.broker.grpcPort);
      assert.ok(first.validTo - Date.now() <= 4000, 'the broker SVID lives 4 s');
      await beginAndIssue(await h.client('demo'));

      const rotated = await eventually(async () => {
        const cert = await servedCertificate(h.broker.grpcPort);
        return cert.fingerprint256 !== first.fingerprint256 ? cert : undefined;
      }, 4000);
      assert.ok(rotated.validTo > first.validTo);

      // Past the first SVID's expiry a TLS client that checks validity would have refused it; the
      // broker now serves a current one and agents with current SVIDs still get credentials.
      const wait = first.validTo + 300 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const now = await servedCertificate(h.broker.grpcPort);
      assert.ok(now.validTo > Date.now(), 'the served certificate is unexpired');
      await beginAndIssue(await h.client('demo'));
      await beginAndIssue(await h.jwtClient('demo'));
    });
  });

  describe('auth cache and federated bundles', () => {
    let partnerCa: LocalCa;
    let brokerFederation: LocalCa[];
    const partnerFederation: LocalCa[] = [];
    let h: Harness;
    before(async () => {
      partnerCa = await LocalCa.create('partner.test');
      brokerFederation = [partnerCa];
      h = await startHarness({
        brokerFederatesWith: brokerFederation,
        workloads: { partner: { spiffeId: PARTNER_AGENT, ca: partnerCa, federatesWith: partnerFederation } },
        extraPolicies: PARTNER_POLICIES,
      });
      // The partner needs the harness bundle to verify the broker; the harness CA only exists now.
      partnerFederation.push(h.ca);
      identity(h, 'partner').notify();
    });
    after(async () => h?.close());

    it('refuses a connected client of a trust domain once its bundle is removed', async () => {
      const partner = await h.client('partner');
      const partnerJwt = await h.jwtClient('partner');
      const demo = await h.client('demo');
      assert.equal((await partner.beginTask({ environment: 'dev' })).agent, PARTNER_AGENT);
      assert.equal((await partnerJwt.beginTask({ environment: 'dev' })).agent, PARTNER_AGENT);
      // The verdict is cached for this connection: calls keep succeeding while nothing changes.
      assert.equal((await partner.beginTask({ environment: 'dev' })).agent, PARTNER_AGENT);

      // The broker stops federating with partner.test.
      brokerFederation.splice(0);
      identity(h, 'broker').notify();

      const refused = await eventually(async () => {
        const err = await grpcError(partner.beginTask({ environment: 'dev' })).catch(() => undefined);
        return err?.code === status.UNAUTHENTICATED ? err : undefined;
      });
      assert.equal(refused.metadata['x-svid-broker-reason'], 'untrusted_domain');
      // Not a blip: the next call on that connection is refused too.
      assert.equal((await grpcError(partner.beginTask({ environment: 'dev' }))).code, status.UNAUTHENTICATED);
      const jwtRefused = await eventually(async () => {
        const err = await grpcError(partnerJwt.beginTask({ environment: 'dev' })).catch(() => undefined);
        return err?.code === status.UNAUTHENTICATED ? err : undefined;
      });
      assert.equal(jwtRefused.metadata['x-svid-broker-reason'], 'untrusted_domain');

      const denials = (await readAudit(h.auditFile)).filter((r) => r.type === 'auth.denied');
      assert.ok(denials.some((r) => r.reason === 'untrusted_domain'));
      // The broker's own domain is unaffected.
      assert.equal((await demo.beginTask({ environment: 'dev' })).agent, DEMO_AGENT);
    });
  });
});
