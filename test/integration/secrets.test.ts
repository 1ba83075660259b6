/**
 * No secret reaches the logs or the audit trail: a broker at debug level goes through issuance
 * (mTLS and JWT-SVID), a policy denial, authentication failures, ending a task and request
 * failures, and then neither its log output nor its audit file holds any credential, bearer
 * token or private key it handled.
 */
// @peculiar/x509 needs reflect-metadata loaded before it is evaluated; keep this import first.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { status } from '@grpc/grpc-js';
import { KeyUsageFlags } from '@peculiar/x509';
import { verifyAuditFile } from '../../src/audit/verify-file.js';
import { BrokerClient } from '../../src/client/broker-client.js';
import { fetchJwtSvid } from '../../src/identity/workload-api.js';
import { derToPem } from '../../src/identity/x509-verify.js';
import { createRedisClient, RedisLeaseStore } from '../../src/leases/redis-lease-store.js';
import type { LeaseStore } from '../../src/leases/types.js';
import { unavailable } from '../../src/errors.js';
import {
  BROKER_ID,
  DEMO_AGENT,
  OTHER_AGENT,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { randomPrefix, sharedRedis } from '../support/redis-server.js';

/** Every textual form a private key could leak in: PKCS#8 DER as base64/base64url/hex, PEM lines, the JWK `d`. */
function keyForms(pkcs8: Uint8Array): string[] {
  const der = Buffer.from(pkcs8);
  const pemLines = derToPem(pkcs8, 'PRIVATE KEY')
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('-----'));
  const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  assert.ok(jwk.d, 'the key has a private scalar');
  return [der.toString('base64'), der.toString('base64url'), der.toString('hex'), ...pemLines, jwk.d];
}

/** A token and its signature segment (which alone would let nobody forge, but is still the secret part). */
function tokenForms(token: string): string[] {
  const parts = token.split('.');
  assert.equal(parts.length, 3, 'a compact JWS');
  return [token, parts[2] as string];
}

describe('integration: no secrets in logs or audit', function () {
  this.timeout(20_000);
  let h: Harness;
  let redisStore: RedisLeaseStore;
  const extraClients: BrokerClient[] = [];
  /** When set, lease writes fail as a Redis error would, without taking Redis down. */
  let failLeaseWrites = false;
  before(async () => {
    redisStore = new RedisLeaseStore(createRedisClient((await sharedRedis()).url), {
      prefix: randomPrefix(),
    });
    const store = new Proxy(redisStore, {
      get(target, prop) {
        if (prop === 'putLease' && failLeaseWrites) {
          return async () => {
            throw unavailable(
              'lease_store_unavailable',
              'lease store unavailable',
              new Error("READONLY You can't write against a read only replica."),
            );
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as LeaseStore;
    h = await startHarness({ store });
  });
  after(async () => {
    for (const c of extraClients) c.close();
    await h?.close();
    await redisStore?.close();
  });

  it('never logs or audits a credential, a bearer JWT-SVID or a private key', async () => {
    const secrets: Array<{ what: string; value: string }> = [];
    const add = (what: string, values: string[]): void => {
      for (const value of values) {
        assert.ok(value.length >= 16, `${what}: too short to search for meaningfully`);
        secrets.push({ what, value });
      }
    };

    // 1. Issuance over mTLS.
    const mtls = await h.client('demo');
    const task1 = await mtls.beginTask({ environment: 'dev', intent: 'secrets over mTLS' });
    const issued1 = await mtls.issueCredential({
      task_id: task1.task_id,
      role: 'token/demo',
      justification: 'read the demo api',
      tool: 'curl',
    });
    assert.equal(issued1.credential?.kind, 'jwt');
    add('mTLS-issued credential', tokenForms(issued1.credential?.token as string));

    // 2. Issuance over a JWT-SVID bearer token; every token sent is recorded.
    const bearer: string[] = [];
    const endpoint = h.endpoints.demo as string;
    const jwt = await h.client('demo', {
      auth: {
        kind: 'jwt',
        token: async () => {
          const t = (await fetchJwtSvid(endpoint, [BROKER_ID])).token;
          bearer.push(t);
          return t;
        },
      },
    });
    const task2 = await jwt.beginTask({ environment: 'dev', intent: 'secrets over JWT' });
    const issued2 = await jwt.issueCredential({ task_id: task2.task_id, role: 'token/demo' });
    add('JWT-issued credential', tokenForms(issued2.credential?.token as string));

    // 3. A policy denial: the other agent may begin a task but not use the demo token.
    const other = await h.client('other');
    const task3 = await other.beginTask({ environment: 'dev', intent: 'not allowed' });
    assert.equal(task3.agent, OTHER_AGENT);
    const denied = await grpcError(other.issueCredential({ task_id: task3.task_id, role: 'token/demo' }));
    assert.equal(denied.code, status.PERMISSION_DENIED);

    // 4. Authentication failures: a genuine JWT-SVID for another audience, a malformed bearer
    //    value, and a client certificate that breaks the SVID rules.
    const wrongAudience = (await fetchJwtSvid(endpoint, ['spiffe://example.org/some-other-service'])).token;
    add('JWT-SVID for another audience', tokenForms(wrongAudience));
    const misaimed = await h.client('demo', { auth: { kind: 'jwt', token: () => wrongAudience } });
    const authErr = await grpcError(misaimed.beginTask({ environment: 'dev' }));
    assert.equal(authErr.code, status.UNAUTHENTICATED);
    assert.equal(authErr.metadata['x-svid-broker-reason'], 'bad_audience');
    const garbage = `not.a-real.jwt${'x'.repeat(40)}`;
    const garbled = await h.client('demo', { auth: { kind: 'jwt', token: () => garbage } });
    assert.equal((await grpcError(garbled.beginTask({ environment: 'dev' }))).code, status.UNAUTHENTICATED);
    add('malformed bearer value', [garbage]);
    const badSvid = await h.ca.issueX509Svid(DEMO_AGENT, {
      keyUsage: KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign,
    });
    const badClient = new BrokerClient({
      address: h.address,
      svid: badSvid,
      serverBundle: h.ca.x509Bundle(),
    });
    extraClients.push(badClient);
    assert.equal((await grpcError(badClient.beginTask({ environment: 'dev' }))).code, status.UNAUTHENTICATED);
    add('refused client key', keyForms(badSvid.privateKey));

    // 5. Ending a task revokes its lease.
    const ended = await mtls.endTask({ task_id: task1.task_id, reason: 'done' });
    assert.deepEqual(
      ended.revoked.map((r) => r.lease_id),
      [issued1.lease_id],
    );

    // 6. Failures that need no outage: an unknown role, an unknown task, a task that ended, and a
    //    lease write refused after the backend minted a token (logged with its cause).
    failLeaseWrites = true;
    const storeErr = await grpcError(jwt.issueCredential({ task_id: task2.task_id, role: 'token/demo' }));
    failLeaseWrites = false;
    assert.equal(storeErr.code, status.UNAVAILABLE);
    assert.equal(
      (await grpcError(jwt.issueCredential({ task_id: task2.task_id, role: 'token/nope' }))).code,
      status.INVALID_ARGUMENT,
    );
    assert.equal(
      (
        await grpcError(
          jwt.issueCredential({ task_id: '018f0000-0000-7000-8000-000000000000', role: 'token/demo' }),
        )
      ).code,
      status.NOT_FOUND,
    );
    assert.equal(
      (await grpcError(mtls.issueCredential({ task_id: task1.task_id, role: 'token/demo' }))).code,
      status.FAILED_PRECONDITION,
    );

    assert.ok(bearer.length >= 4, 'each JWT call sent a bearer token');
    for (const t of bearer) add('bearer JWT-SVID', tokenForms(t));
    for (const [name, identity] of Object.entries(h.identities)) {
      for (const svid of identity.current().svids)
        add(`${name} workload private key`, keyForms(svid.privateKey));
    }

    // Let fsync'd audit writes and async log lines settle.
    await new Promise((r) => setTimeout(r, 100));
    const logs = h.logs.text();
    const auditText = await readFile(h.auditFile, 'utf8');

    // The capture really saw the broker at work, at debug level, and the audit trail saw every step.
    assert.match(logs, /svid-broker serving/);
    assert.match(logs, /read only replica/, 'the lease write failure was logged with its cause');
    const audit = await readAudit(h.auditFile);
    const types = new Set(audit.map((r) => r.type));
    for (const t of [
      'task.begun',
      'credential.issued',
      'credential.failed',
      'credential.denied',
      'auth.denied',
      'lease.revoked',
      'task.ended',
    ]) {
      assert.ok(types.has(t), `audit has ${t}`);
    }

    for (const { what, value } of secrets) {
      assert.ok(!logs.includes(value), `${what} appears in the logs`);
      assert.ok(!auditText.includes(value), `${what} appears in the audit file`);
    }
    for (const [where, text] of [
      ['logs', logs],
      ['audit', auditText],
    ] as const) {
      assert.doesNotMatch(text, /PRIVATE KEY/, `${where} holds a PEM private key`);
      assert.doesNotMatch(text, /"d"\s*:\s*"/, `${where} holds a JWK with a private "d" member`);
      assert.doesNotMatch(text, /Bearer\s+ey/, `${where} holds an authorization header value`);
    }

    // The broker's signing keys cannot be exported; what it publishes has no private member.
    const published = await h.httpJson('/.well-known/jwks.json');
    assert.equal(published.status, 200);
    const keys = (published.body as { keys: Array<Record<string, unknown>> }).keys;
    assert.ok(keys.length >= 1);
    for (const key of [...keys, ...h.broker.keys.jwks().keys]) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) {
        assert.ok(!(member in key), `JWKS key ${String(key.kid)} has private member ${member}`);
      }
    }

    // And the trail that was written is intact.
    const verified = await verifyAuditFile(h.auditFile);
    assert.ok(verified.ok, JSON.stringify(verified));
    assert.equal(verified.count, audit.length);
  });
});
