/**
 * Federation: an agent of another trust domain (partner.test) whose bundle the broker holds gets
 * credentials over mTLS and JWT-SVID, while the partner's keys can never mint identities of the
 * broker's own domain, and `auth.trustDomains` can shut a federated domain out entirely.
 */
// @peculiar/x509 needs reflect-metadata loaded before it is evaluated; keep this import first.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { BrokerClient } from '../../src/client/broker-client.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import type { X509Svid } from '../../src/identity/types.js';
import { fetchJwtSvid } from '../../src/identity/workload-api.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
  type HarnessOptions,
} from '../support/broker-harness.js';

const PARTNER_TD = 'partner.test';
const PARTNER_AGENT = `spiffe://${PARTNER_TD}/agents/demo`;
const PARTNER_POLICIES = `
@id("partner-begin-task-dev")
permit (
  principal == Agent::"${PARTNER_AGENT}",
  action == Action::"BeginTask",
  resource == Environment::"dev"
);

@id("partner-token-demo-dev")
permit (
  principal == Agent::"${PARTNER_AGENT}",
  action == Action::"IssueCredential",
  resource == Role::"token/demo"
)
when { context.environment == "dev" };
`;

/**
 * A harness whose broker federates with `partnerCa` and which runs a `partner` workload issued by
 * it; the partner federates back with the harness CA (which only exists once the harness runs).
 */
async function federatedHarness(partnerCa: LocalCa, extra: HarnessOptions = {}): Promise<Harness> {
  const partnerFederation: LocalCa[] = [];
  const h = await startHarness({
    brokerFederatesWith: [partnerCa],
    workloads: { partner: { spiffeId: PARTNER_AGENT, ca: partnerCa, federatesWith: partnerFederation } },
    extraPolicies: PARTNER_POLICIES,
    ...extra,
  });
  partnerFederation.push(h.ca);
  h.identities.partner?.notify();
  return h;
}

describe('integration: federation', function () {
  this.timeout(20_000);
  let partnerCa: LocalCa;
  before(async () => {
    partnerCa = await LocalCa.create(PARTNER_TD);
  });

  describe('with partner.test federated', () => {
    let h: Harness;
    const opened: BrokerClient[] = [];
    before(async () => {
      h = await federatedHarness(partnerCa);
    });
    after(async () => {
      for (const c of opened) c.close();
      await h?.close();
    });

    const clientWithSvid = (svid: X509Svid): BrokerClient => {
      const client = new BrokerClient({
        address: h.address,
        svid,
        serverBundle: h.ca.x509Bundle(),
        brokerId: BROKER_ID,
      });
      opened.push(client);
      return client;
    };
    const bearerClient = (token: string): Promise<BrokerClient> =>
      h.client('demo', { auth: { kind: 'jwt', token: () => token } });

    it('issues credentials to the partner agent over mTLS', async () => {
      const client = await h.client('partner');
      const task = await client.beginTask({ environment: 'dev', intent: 'federated' });
      assert.equal(task.agent, PARTNER_AGENT);
      const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.deepEqual(issued.policy_ids, ['partner-token-demo-dev']);
      const claims = decodeJwt(issued.credential?.token as string);
      assert.equal(claims.sub, PARTNER_AGENT);
      assert.equal(claims.iss, BROKER_ID);
      assert.equal(claims.jti, issued.lease_id);

      const begun = (await readAudit(h.auditFile)).find(
        (r) => r.type === 'task.begun' && r.task === task.task_id,
      );
      assert.equal(begun?.agent, PARTNER_AGENT);
      assert.equal(begun?.auth_method, 'x509');
    });

    it('issues credentials to the partner agent over a JWT-SVID checked against the partner JWKS', async () => {
      const token = (await fetchJwtSvid(h.endpoints.partner as string, [BROKER_ID])).token;
      assert.equal(decodeProtectedHeader(token).kid, partnerCa.jwtKid, 'signed with the partner JWT key');
      assert.equal(decodeJwt(token).sub, PARTNER_AGENT);
      const client = await h.client('partner', { auth: { kind: 'jwt', token: () => token } });
      const task = await client.beginTask({ environment: 'dev', intent: 'federated jwt' });
      assert.equal(task.agent, PARTNER_AGENT);
      const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
      assert.equal(decodeJwt(issued.credential?.token as string).sub, PARTNER_AGENT);

      const begun = (await readAudit(h.auditFile)).find(
        (r) => r.type === 'task.begun' && r.task === task.task_id,
      );
      assert.equal(begun?.auth_method, 'jwt');

      // The same token with its partner kid swapped for an example.org kid does not verify.
      const [head, body, sig] = token.split('.') as [string, string, string];
      const header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8')) as Record<string, unknown>;
      const swapped = `${Buffer.from(JSON.stringify({ ...header, kid: h.ca.jwtKid })).toString('base64url')}.${body}.${sig}`;
      const err = await grpcError((await bearerClient(swapped)).beginTask({ environment: 'dev' }));
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.equal(err.metadata['x-svid-broker-reason'], 'unknown_kid');
    });

    it('keeps the partner agent inside its own grants', async () => {
      const client = await h.client('partner');
      // base.cedar lets example.org agents work in staging; nothing lets partner.test agents.
      const err = await grpcError(client.beginTask({ environment: 'staging' }));
      assert.equal(err.code, status.PERMISSION_DENIED);
    });

    it('refuses an X.509-SVID of example.org signed by the partner CA', async () => {
      const forged = await h.ca.issueX509Svid(DEMO_AGENT, { signWith: partnerCa });
      assert.equal(forged.spiffeId, DEMO_AGENT);
      const err = await grpcError(clientWithSvid(forged).beginTask({ environment: 'dev' }));
      assert.equal(err.code, status.UNAUTHENTICATED);
      assert.equal(err.metadata['x-svid-broker-reason'], 'untrusted_chain');

      // Presenting the partner root in the chain changes nothing: roots come only from the
      // bundle of the leaf's own trust domain.
      const withRoot = { ...forged, certChain: [...forged.certChain, partnerCa.rootDer] };
      const err2 = await grpcError(clientWithSvid(withRoot).beginTask({ environment: 'dev' }));
      assert.equal(err2.code, status.UNAUTHENTICATED);

      // Through an intermediate of the partner CA, too.
      const partnerWithIntermediate = await LocalCa.create(PARTNER_TD, { intermediate: true });
      const viaIntermediate = await h.ca.issueX509Svid(DEMO_AGENT, { signWith: partnerWithIntermediate });
      assert.equal(viaIntermediate.certChain.length, 2);
      const err3 = await grpcError(clientWithSvid(viaIntermediate).beginTask({ environment: 'dev' }));
      assert.equal(err3.code, status.UNAUTHENTICATED);

      // One full record per peer address and reason per window; the repeats are counted at its end.
      const denials = (await readAudit(h.auditFile)).filter((r) => r.type === 'auth.denied');
      assert.ok(denials.some((r) => r.reason === 'untrusted_chain'));
      assert.ok(
        denials.every((r) => r.agent === ''),
        'no forged identity is recorded as an agent',
      );
      // No task was begun under the forged identity.
      const tasks = (await readAudit(h.auditFile)).filter(
        (r) => r.type === 'task.begun' && r.agent === DEMO_AGENT,
      );
      assert.equal(tasks.length, 0);
    });

    it('refuses a JWT-SVID of example.org signed by the partner JWT key', async () => {
      // The partner's own kid: example.org's bundle has no such key.
      const partnerKid = await h.ca.mintJwtSvid(DEMO_AGENT, BROKER_ID, { signWith: partnerCa });
      const e1 = await grpcError((await bearerClient(partnerKid)).beginTask({ environment: 'dev' }));
      assert.equal(e1.code, status.UNAUTHENTICATED);
      assert.equal(e1.metadata['x-svid-broker-reason'], 'unknown_kid');

      // The example.org kid on a partner signature.
      const borrowedKid = await h.ca.mintJwtSvid(DEMO_AGENT, BROKER_ID, {
        signWith: partnerCa,
        kid: h.ca.jwtKid,
      });
      const e2 = await grpcError((await bearerClient(borrowedKid)).beginTask({ environment: 'dev' }));
      assert.equal(e2.code, status.UNAUTHENTICATED);
      assert.equal(e2.metadata['x-svid-broker-reason'], 'bad_signature');

      // A genuine example.org JWT-SVID still works: the refusals were about the signer.
      const genuine = await h.ca.mintJwtSvid(DEMO_AGENT, BROKER_ID);
      assert.equal((await (await bearerClient(genuine)).beginTask({ environment: 'dev' })).agent, DEMO_AGENT);
    });
  });

  describe('with auth.trustDomains limited to example.org', () => {
    let h: Harness;
    before(async () => {
      h = await federatedHarness(partnerCa, { config: { auth: { trustDomains: ['example.org'] } } });
    });
    after(async () => h?.close());

    it('refuses the partner agent with trust_domain_not_allowed, over mTLS and JWT', async () => {
      for (const client of [await h.client('partner'), await h.jwtClient('partner')]) {
        const err = await grpcError(client.beginTask({ environment: 'dev' }));
        assert.equal(err.code, status.UNAUTHENTICATED);
        assert.equal(err.metadata['x-svid-broker-reason'], 'trust_domain_not_allowed');
        assert.match(err.details, /partner\.test/);
      }
      // Both from 127.0.0.1 with one reason: the first in full, the second counted at the window's end.
      const denials = (await readAudit(h.auditFile)).filter(
        (r) => r.type === 'auth.denied' && r.reason === 'trust_domain_not_allowed',
      );
      assert.equal(denials.length, 1);
      // The broker's own domain is still served.
      assert.equal((await (await h.client('demo')).beginTask({ environment: 'dev' })).agent, DEMO_AGENT);
    });
  });
});
