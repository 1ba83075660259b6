/**
 * The SSF transmitter in a whole broker: a lease revoked (task end, an admin revoke) or an agent
 * quarantined reaches an SSF receiver as a CAEP SET it verifies against the broker's JWKS, fetched
 * over HTTP from the ops listener that also serves the transmitter metadata.
 */
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { CREDENTIAL_CHANGE, SESSION_REVOKED } from '../../src/audit/sinks/ssf-events.js';
import { DEMO_AGENT, eventually, startHarness, type Harness } from '../support/broker-harness.js';
import { HttpReceiverStub, type ReceivedPost } from '../support/http-receiver.js';

const AUDIENCE = 'https://rp.example.org/ssf';

describe('audit SSF transmitter (integration)', function () {
  this.timeout(30_000);
  let dir: string;
  let receiver: HttpReceiverStub;
  let h: Harness;
  let issuer: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-ssf-it-'));
    receiver = await HttpReceiverStub.start();
    receiver.answer = () => 202;
    writeFileSync(join(dir, 'rp.token'), 'rp-bearer-token-0001\n');
    h = await startHarness({
      config: {
        audit: {
          file: join(dir, 'audit.jsonl'),
          sinks: [
            {
              type: 'ssf',
              receivers: [
                { url: receiver.url, audience: AUDIENCE, authorizationFile: join(dir, 'rp.token') },
              ],
            },
          ],
        },
      },
    });
    issuer = h.httpBase;
  });
  after(async () => {
    await h?.close();
    await receiver?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Verifies a pushed SET as a receiver would: the JWKS named by the transmitter metadata. */
  async function verifySet(post: ReceivedPost): Promise<JWTPayload> {
    assert.equal(post.headers['content-type'], 'application/secevent+jwt');
    assert.equal(post.headers.authorization, 'Bearer rp-bearer-token-0001');
    const metadata = (await h.httpJson('/.well-known/ssf-configuration')).body as { jwks_uri: string };
    const { payload } = await jwtVerify(post.body, createRemoteJWKSet(new URL(metadata.jwks_uri)), {
      issuer,
      audience: AUDIENCE,
      typ: 'secevent+jwt',
      algorithms: ['ES256'],
    });
    return payload;
  }

  /** The SETs received about `lease`, verified, waiting until `count` arrived. */
  async function setsAbout(lease: string, count: number): Promise<JWTPayload[]> {
    const about = async (): Promise<JWTPayload[]> =>
      (await Promise.all(receiver.accepted.map(verifySet))).filter(
        (p) => (p.sub_id as { session?: { id: string } }).session?.id === lease,
      );
    await eventually(async () => (await about()).length >= count);
    return about();
  }

  it('serves the transmitter metadata on the ops listener', async () => {
    const res = await h.httpJson('/.well-known/ssf-configuration');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      spec_version: '1_0',
      issuer,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      delivery_methods_supported: ['urn:ietf:rfc:8935'],
    });
  });

  it('a lease revoked by its task ending is pushed as session-revoked and credential-change SETs', async () => {
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'ssf' });
    const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    await client.endTask({ task_id: task.task_id });

    const sets = await setsAbout(issued.lease_id, 2);
    assert.deepEqual(
      sets.map((p) => Object.keys(p.events as object)),
      [[SESSION_REVOKED], [CREDENTIAL_CHANGE]],
    );
    for (const p of sets) {
      assert.deepEqual((p.sub_id as { user: unknown }).user, { format: 'uri', uri: DEMO_AGENT });
      assert.equal(p.txn, sets[0]?.txn, 'both SETs come from the one lease.revoked record');
    }
    const change = (sets[1]?.events as Record<string, Record<string, unknown>>)[CREDENTIAL_CHANGE];
    assert.equal(change?.change_type, 'revoke');
    assert.equal(change?.credential_type, 'svid-broker:token');
    // Never the credential itself.
    const token = issued.credential?.token ?? '';
    assert.ok(token.length > 20);
    for (const post of receiver.received) assert.ok(!post.body.includes(token.split('.')[2] as string));
  });

  it('a lease revoked through the admin revoke path is pushed too', async () => {
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'ssf admin' });
    const issued = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const admin = await h.adminClient('security');
    const report = await admin.revokeLeases({ selector: { lease_id: issued.lease_id }, reason: 'INC-42' });
    assert.equal(report.revoked, 1);
    const sets = await setsAbout(issued.lease_id, 2);
    const revoked = (sets[0]?.events as Record<string, Record<string, unknown>>)[SESSION_REVOKED];
    assert.equal(revoked?.initiating_entity, 'admin');
    assert.match(JSON.stringify(revoked?.reason_admin), /INC-42/);
    assert.deepEqual((sets[0]?.sub_id as { user: unknown }).user, { format: 'uri', uri: DEMO_AGENT });
  });

  it('the receiver token appears in no log line and no audit record', async () => {
    const { readFile } = await import('node:fs/promises');
    assert.ok(receiver.accepted.length > 0);
    assert.doesNotMatch(h.logs.text(), /rp-bearer-token-0001/);
    assert.doesNotMatch(await readFile(join(dir, 'audit.jsonl'), 'utf8'), /rp-bearer-token-0001/);
  });

  it('a quarantined agent is pushed as session-revoked for its SPIFFE ID', async () => {
    const admin = await h.adminClient('security');
    await admin.quarantine({ agent: DEMO_AGENT, reason: 'INC-43 odd behaviour' });
    await eventually(async () => {
      const payloads = await Promise.all(receiver.accepted.map(verifySet));
      return payloads.find(
        (p) => JSON.stringify(p.sub_id) === JSON.stringify({ format: 'uri', uri: DEMO_AGENT }),
      );
    }).then((p) => {
      const event = (p.events as Record<string, Record<string, unknown>>)[SESSION_REVOKED];
      assert.equal(event?.initiating_entity, 'admin');
      assert.deepEqual(event?.reason_admin, { en: 'INC-43 odd behaviour' });
    });
  });
});
