import assert from 'node:assert/strict';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import { MemoryAuditSink } from '../../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../../src/audit/pipeline.js';
import { buildFollowers, buildSsfTransmitters } from '../../../../src/audit/sinks/build-followers.js';
import {
  CREDENTIAL_CHANGE,
  SESSION_REVOKED,
  securityEventsFor,
} from '../../../../src/audit/sinks/ssf-events.js';
import { SsfMetadata } from '../../../../src/audit/sinks/ssf-metadata.js';
import {
  SsfTransmitter,
  ssfConfigurationPath,
  type SsfTransmitterOptions,
} from '../../../../src/audit/sinks/ssf-transmitter.js';
import type { AuditEventInput, AuditRecord } from '../../../../src/audit/types.js';
import { auditConfigSchema } from '../../../../src/config/audit-schema.js';
import { SigningKeyRing } from '../../../../src/credentials/token/signing-keys.js';
import { eventually } from '../../../support/eventually.js';
import { HttpReceiverStub, type ReceivedPost } from '../../../support/http-receiver.js';

const AGENT = 'spiffe://example.org/agents/demo';
const ISSUER = 'https://broker.example.org';
const TIME = '2026-12-04T10:00:00.000Z';

function record(fields: AuditEventInput, seq = 1): AuditRecord {
  return {
    id: `rec-${seq}`,
    time: TIME,
    source: 'spiffe://example.org/broker',
    seq,
    prev_hash: '',
    hash: '',
    ...fields,
  };
}

const revoked: AuditEventInput = {
  type: 'lease.revoked',
  agent: AGENT,
  lease: 'lease-1',
  task: 'task-1',
  role: 'token/demo',
  backend: 'token',
  environment: 'dev',
  reason: 'task_ended',
};

describe('audit/sinks/ssf-events', () => {
  it('a revoked lease is session-revoked and credential-change (revoke), subject agent + lease', () => {
    const events = securityEventsFor(record(revoked));
    assert.deepEqual(
      events.map((e) => e.type),
      [SESSION_REVOKED, CREDENTIAL_CHANGE],
    );
    const subject = {
      format: 'complex',
      user: { format: 'uri', uri: AGENT },
      session: { format: 'opaque', id: 'lease-1' },
    };
    assert.deepEqual(events[0], {
      type: SESSION_REVOKED,
      subject,
      claims: {
        event_timestamp: Date.parse(TIME) / 1000,
        initiating_entity: 'user',
        reason_admin: { en: 'task_ended' },
      },
    });
    assert.deepEqual(events[1]?.claims, {
      event_timestamp: Date.parse(TIME) / 1000,
      initiating_entity: 'user',
      reason_admin: { en: 'task_ended' },
      credential_type: 'svid-broker:token',
      change_type: 'revoke',
      friendly_name: 'token/demo',
    });
  });

  it('a lease that stays valid at its source (not revocable, queued) is session-revoked only', () => {
    for (const type of ['lease.not_revocable', 'lease.revoke_queued'] as const) {
      const events = securityEventsFor(record({ ...revoked, type, reason: 'admin: INC-7' }));
      assert.deepEqual(
        events.map((e) => [e.type, e.claims.initiating_entity]),
        [[SESSION_REVOKED, 'admin']],
      );
    }
    const orphan = record({
      ...revoked,
      type: 'lease.orphaned',
      outcome: 'not_revocable',
      reason: 'orphaned',
    });
    assert.deepEqual(
      securityEventsFor(orphan).map((e) => [e.type, e.claims.initiating_entity]),
      [[SESSION_REVOKED, 'system']],
    );
  });

  it('a quarantine is session-revoked for the agent (uri) or the pattern (complex group)', () => {
    const exact = securityEventsFor(
      record({
        type: 'quarantine.set',
        agent: 'spiffe://example.org/security/oncall',
        pattern: AGENT,
        reason: 'INC-1',
        trigger: 'manual',
      }),
    );
    assert.deepEqual(exact[0]?.subject, { format: 'uri', uri: AGENT });
    assert.equal(exact[0]?.claims.initiating_entity, 'admin');
    const pattern = securityEventsFor(
      record({
        type: 'quarantine.set',
        agent: 'broker',
        pattern: 'spiffe://example.org/agents/*',
        trigger: 'denials',
      }),
    );
    assert.deepEqual(pattern[0]?.subject, {
      format: 'complex',
      group: { format: 'uri', uri: 'spiffe://example.org/agents/*' },
    });
    assert.equal(pattern[0]?.claims.initiating_entity, 'policy');
  });

  it('summaries and every other record become no SET (each lease has its own record)', () => {
    for (const type of [
      'task.ended',
      'admin.revoke',
      'credential.issued',
      'lease.expired',
      'lease.revoke_failed',
    ] as const) {
      assert.deepEqual(securityEventsFor(record({ ...revoked, type })), [], type);
    }
  });
});

describe('audit/sinks/ssf-transmitter', () => {
  let receiver: HttpReceiverStub;
  let second: HttpReceiverStub;
  let keys: SigningKeyRing;
  const closers: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    receiver = await HttpReceiverStub.start();
    second = await HttpReceiverStub.start();
    receiver.answer = () => 202;
    second.answer = () => 202;
    keys = await SigningKeyRing.create({ overlapSeconds: 600 });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await receiver.stop();
    await second.stop();
  });

  function transmitter(opts: Partial<SsfTransmitterOptions> = {}) {
    const t = new SsfTransmitter({
      name: 'ssf',
      mode: 'best_effort',
      issuer: ISSUER,
      receivers: [
        {
          receiver: { url: new URL(receiver.url) },
          audience: 'https://rp-one.example',
          bearerToken: 'rp-one-token',
        },
        { receiver: { url: new URL(second.url) }, audience: 'https://rp-two.example' },
      ],
      signer: keys,
      timeoutMs: 2000,
      retry: { baseDelayMs: 10, maxDelayMs: 50 },
      closeTimeoutMs: 200,
      ...opts,
    });
    const keeper = new MemoryAuditSink();
    const pipeline = new AuditPipeline(keeper, [t]);
    closers.push(() => pipeline.close());
    return { t, keeper };
  }

  async function verify(post: ReceivedPost, audience: string): Promise<JWTPayload> {
    assert.equal(post.headers['content-type'], 'application/secevent+jwt');
    const { payload, protectedHeader } = await jwtVerify(post.body, createLocalJWKSet(keys.jwks()), {
      issuer: ISSUER,
      audience,
      typ: 'secevent+jwt',
      algorithms: ['ES256'],
    });
    assert.equal(protectedHeader.kid, keys.current().kid);
    assert.equal(payload.sub, undefined, 'SSF: no sub claim');
    assert.equal(payload.exp, undefined, 'SSF: no exp claim');
    return payload;
  }

  it('pushes one signed SET per event to every receiver, each with its own aud and a stable jti', async () => {
    const { keeper } = transmitter();
    // Not a revocation: acknowledged in place, never sent (and the revocation right after it is).
    await keeper.write({ type: 'credential.issued', agent: AGENT, lease: 'lease-1' });
    const rec = await keeper.write(revoked);
    await eventually(() => receiver.accepted.length === 2 && second.accepted.length === 2);

    const one = await Promise.all(receiver.accepted.map((p) => verify(p, 'https://rp-one.example')));
    const two = await Promise.all(second.accepted.map((p) => verify(p, 'https://rp-two.example')));
    assert.deepEqual(
      one.map((p) => Object.keys(p.events as object)),
      [[SESSION_REVOKED], [CREDENTIAL_CHANGE]],
    );
    for (const p of [...one, ...two]) {
      assert.equal(p.txn, rec.id, 'txn: the audit record both SETs came from');
      assert.equal(p.iat, Math.floor(Date.parse(rec.time) / 1000));
      assert.deepEqual(p.sub_id, {
        format: 'complex',
        user: { format: 'uri', uri: AGENT },
        session: { format: 'opaque', id: 'lease-1' },
      });
    }
    assert.equal(new Set([...one, ...two].map((p) => p.jti)).size, 4, 'one jti per SET');
    assert.equal(receiver.accepted[0]?.headers.authorization, 'Bearer rp-one-token');
    assert.equal(second.accepted[0]?.headers.authorization, undefined);
  });

  it('a receiver that refuses (400 invalid_key) is retried, names the error, and the other is not sent to twice', async () => {
    let answers = 0;
    second.answer = () =>
      ++answers <= 2
        ? { status: 400, body: JSON.stringify({ err: 'invalid_key', description: 'unknown kid' }) }
        : 202;
    const { t, keeper } = transmitter();
    await keeper.write(revoked);
    await eventually(() => !t.health().ok);
    assert.match((t.health() as { cause: string }).cause, /HTTP 400 \(invalid_key: unknown kid\)/);
    await eventually(() => second.accepted.length === 2);
    assert.equal(receiver.received.length, 2, 'the first receiver got each SET once');
    const firstJtis = (
      await Promise.all(second.received.map((p) => verify(p, 'https://rp-two.example')))
    ).map((p) => p.jti);
    assert.equal(firstJtis[0], firstJtis.at(-2), 'the resent SET has the same jti');
  });

  it('a SET carries identifiers and reasons only, never a credential value', async () => {
    const { keeper } = transmitter();
    await keeper.write({ ...revoked, token: 'eyJ-the-credential-itself', secret_id: 's3cr3t' });
    await eventually(() => receiver.accepted.length === 2);
    for (const post of receiver.accepted) {
      const payload = JSON.stringify(await verify(post, 'https://rp-one.example'));
      assert.doesNotMatch(payload, /eyJ-the-credential-itself|s3cr3t/);
    }
  });

  it('audit.sinks[] type ssf is built with the signer (not by buildFollowers) and publishes its metadata', () => {
    const audit = auditConfigSchema.parse({
      sinks: [{ type: 'ssf', name: 'rp', receivers: [{ url: receiver.url, audience: 'rp' }] }],
    });
    assert.deepEqual(buildFollowers(audit, { logger: console, redis: undefined }), []);
    const [built] = buildSsfTransmitters(audit, {
      logger: console,
      signer: keys,
      defaultIssuer: 'http://127.0.0.1:8080',
    });
    assert.ok(built instanceof SsfTransmitter);
    assert.equal(built.name, 'ssf:rp');
    assert.equal(built.issuer, 'http://127.0.0.1:8080');
    const metadata = new SsfMetadata();
    metadata.add('https://broker.example.org/tenant-a/');
    assert.equal(
      ssfConfigurationPath('https://broker.example.org/tenant-a/'),
      '/.well-known/ssf-configuration/tenant-a',
    );
    assert.deepEqual(metadata.configuration('/.well-known/ssf-configuration/tenant-a'), {
      spec_version: '1_0',
      issuer: 'https://broker.example.org/tenant-a/',
      jwks_uri: 'https://broker.example.org/.well-known/jwks.json',
      delivery_methods_supported: ['urn:ietf:rfc:8935'],
    });
    assert.equal(metadata.configuration('/.well-known/ssf-configuration'), undefined);
  });

  it('signs with the key current at sending time (the JWKS has it)', async () => {
    const { keeper } = transmitter();
    await keys.rotate();
    await keeper.write(revoked);
    await eventually(() => receiver.accepted.length === 2);
    assert.equal(decodeProtectedHeader(receiver.accepted[0]?.body ?? '').kid, keys.current().kid);
  });
});
