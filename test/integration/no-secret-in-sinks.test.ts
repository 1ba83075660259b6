/**
 * No secret value in any sink or log, after issuing from every backend: broker tokens, the Vault
 * emulator (dynamic secret, token, wrapped secret, STS through Vault) and the cloud emulators
 * (AWS STS, GitHub, GCP, Azure). Sensitive identifiers (a Vault accessor, an AWS session name)
 * never appear either: the trail holds their `hmac-sha256:<hex>`, the one `audit hmac` computes.
 * Every sink is on: the audit file, the logs, a Redis Stream, a webhook and an SSF receiver (its
 * SETs decoded too). To scan another sink, add its contents to `sinks()`.
 */
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { hmacKeyFileFor, identifierHmac, readHmacKey } from '../../src/audit/identifier-hmac.js';
import type { IssueCredentialResponseMsg } from '../../src/server/broker-proto.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { eventually, readAudit, type Harness } from '../support/broker-harness.js';
import { HttpReceiverStub } from '../support/http-receiver.js';
import { randomPrefix, sharedRedis } from '../support/redis-server.js';
import { startCloudBroker, type CloudBroker } from '../support/cloud-broker.js';
import { runCli } from '../support/run-cli.js';
import {
  credentialSecrets,
  scanForSecrets,
  scanSinks,
  type Secret,
  type SinkContents,
} from '../support/secret-scan.js';
import { startVaultBroker, type VaultBroker } from '../support/vault-broker.js';

/** Every sink a broker streams its trail to, beside the file: a Redis Stream, a webhook, an SSF receiver. */
interface StreamedSinks {
  config: Record<string, unknown>;
  webhook: HttpReceiverStub;
  ssf: HttpReceiverStub;
  streamKey: string;
  close(): Promise<void>;
}

async function streamedSinks(): Promise<StreamedSinks> {
  const webhook = await HttpReceiverStub.start();
  const ssf = await HttpReceiverStub.start();
  const dir = mkdtempSync(join(tmpdir(), 'svb-secret-scan-'));
  const hmacKeyFile = join(dir, 'webhook.key');
  writeFileSync(hmacKeyFile, 'webhook-hmac-key-for-the-secret-scan', { mode: 0o600 });
  const streamKey = `secret-scan:${randomPrefix()}`;
  const config = {
    audit: {
      sinks: [
        { type: 'redis_stream', mode: 'required', key: streamKey },
        {
          type: 'webhook',
          mode: 'required',
          url: webhook.url,
          format: 'batch',
          batchMaxWaitMs: 0,
          hmacKeyFile,
        },
        { type: 'ssf', receivers: [{ url: ssf.url, audience: 'https://rp.example.org' }] },
      ],
    },
  };
  const close = async (): Promise<void> => {
    await webhook.stop();
    await ssf.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { config, webhook, ssf, streamKey, close };
}

/** A SET as sent, and its decoded header and claims (a secret must not hide in base64url either). */
function setTexts(body: string): string {
  const parts = body.split('.').slice(0, 2);
  return [body, ...parts.map((p) => Buffer.from(p, 'base64url').toString('utf8'))].join('\n');
}

/** The sinks of one broker: its audit file, its logs, and what its streamed sinks received. */
function sinks(h: Harness, streamed: StreamedSinks): SinkContents[] {
  return [
    { sink: `audit file ${h.auditFile}`, read: () => readFile(h.auditFile, 'utf8') },
    { sink: 'logs', read: () => Promise.resolve(h.logs.text()) },
    {
      sink: `redis stream ${streamed.streamKey}`,
      read: async () => {
        const redis = new Redis((await sharedRedis()).url);
        try {
          return JSON.stringify(await redis.xrange(streamed.streamKey, '-', '+'));
        } finally {
          redis.disconnect();
        }
      },
    },
    { sink: 'webhook', read: async () => streamed.webhook.accepted.map((p) => p.body).join('\n') },
    { sink: 'ssf', read: async () => streamed.ssf.accepted.map((p) => setTexts(p.body)).join('\n') },
  ];
}

/** Waits until the streamed sinks have what the trail has: every record, and a SET for revocations. */
async function delivered(h: Harness, streamed: StreamedSinks): Promise<void> {
  const records = (await readAudit(h.auditFile)).length;
  await eventually(async () => {
    const redis = new Redis((await sharedRedis()).url);
    try {
      return (await redis.xlen(streamed.streamKey)) >= records && streamed.ssf.accepted.length > 0;
    } finally {
      redis.disconnect();
    }
  }, 15_000);
}

/** Issues each role in one task of the demo agent, then ends the task (revocations are recorded too). */
async function issueEach(h: Harness, roles: string[]): Promise<Map<string, IssueCredentialResponseMsg>> {
  const demo = await h.client('demo');
  const task = await demo.beginTask({ environment: 'dev', intent: 'secret scan' });
  const issued = new Map<string, IssueCredentialResponseMsg>();
  for (const role of roles) {
    const res = await demo.issueCredential({ task_id: task.task_id, role });
    assert.equal(res.status, 'ISSUED', role);
    issued.set(role, res);
  }
  await demo.endTask({ task_id: task.task_id });
  return issued;
}

/** The secrets, and the sensitive identifiers that must appear only HMAC'd. */
function secretsOf(issued: Map<string, IssueCredentialResponseMsg>): Secret[] {
  const out: Secret[] = [];
  for (const [role, res] of issued) {
    out.push(...credentialSecrets(role, res));
    const meta = res.credential?.metadata ?? {};
    if (meta.accessor) out.push({ what: `${role} Vault accessor`, value: meta.accessor });
    if (meta.session_name) out.push({ what: `${role} AWS session name`, value: meta.session_name });
  }
  return out;
}

/** The credential.issued record of a lease. */
async function issuedRecord(h: Harness, leaseId: string): Promise<Record<string, unknown>> {
  const record = (await readAudit(h.auditFile)).find(
    (r) => r.type === 'credential.issued' && r.lease === leaseId,
  );
  assert.ok(record, `credential.issued for ${leaseId}`);
  return record;
}

describe('integration: no secret in any sink or log, from every backend', function () {
  this.timeout(60_000);

  it('scanForSecrets finds a value in any of its forms, and names the sink and the secret', () => {
    const secret = { what: 'a token', value: 'hvs.CAESIJ-secret-value' };
    const texts = [
      { sink: 'clean', text: 'nothing here' },
      { sink: 'b64', text: `x ${Buffer.from(secret.value).toString('base64')} y` },
      { sink: 'raw', text: `{"t":"${secret.value}"}` },
    ];
    assert.deepEqual(scanForSecrets(texts, [secret]), [
      { sink: 'raw', what: 'a token', form: 'as issued' },
      { sink: 'b64', what: 'a token', form: 'base64' },
      // Unpadded, base64url is the same text here.
      { sink: 'b64', what: 'a token', form: 'base64url' },
    ]);
    assert.deepEqual(
      scanForSecrets(
        [{ sink: 'jws', text: 'sig-part-1234567' }],
        [{ what: 'jwt', value: 'a.b.sig-part-1234567' }],
      ),
      [{ sink: 'jws', what: 'jwt', form: 'JWS signature' }],
    );
  });

  describe('broker tokens and Vault', () => {
    let vb: VaultBroker;
    let streamed: StreamedSinks;
    before(async () => {
      streamed = await streamedSinks();
      vb = await startVaultBroker({ config: streamed.config });
    });
    after(async () => {
      await vb?.close();
      await streamed?.close();
    });

    it('finds no secret, no raw accessor; the accessor is recorded as the HMAC `audit hmac` prints', async () => {
      const issued = await issueEach(vb.h, [
        'token/demo',
        'vault/db-readonly',
        'vault/ci-token',
        'vault/db-wrapped',
      ]);
      const secrets = secretsOf(issued);
      assert.ok(secrets.some((s) => s.what === 'vault/ci-token Vault accessor'));
      assert.ok(secrets.some((s) => s.what === 'vault/db-readonly data.password'));
      await delivered(vb.h, streamed);
      assert.deepEqual(await scanSinks(sinks(vb.h, streamed), secrets), []);

      const ciToken = issued.get('vault/ci-token') as IssueCredentialResponseMsg;
      const accessor = ciToken.credential?.metadata.accessor as string;
      const record = await issuedRecord(vb.h, ciToken.lease_id);
      const ids = record.backend_ids as Record<string, string>;
      assert.match(ids.accessor ?? '', /^hmac-sha256:[0-9a-f]{64}$/);
      const keyFile = hmacKeyFileFor({ file: vb.h.auditFile });
      const cli = await runCli(['audit', 'hmac', accessor, '--key-file', keyFile]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(cli.stdout.trim(), ids.accessor);
      // A record without a sensitive identifier has no backend_ids.
      const plain = await issuedRecord(
        vb.h,
        (issued.get('token/demo') as IssueCredentialResponseMsg).lease_id,
      );
      assert.equal('backend_ids' in plain, false);
    });
  });

  describe('cloud emulators', () => {
    let cb: CloudBroker;
    let streamed: StreamedSinks;
    before(async () => {
      streamed = await streamedSinks();
      cb = await startCloudBroker({ config: streamed.config });
    });
    after(async () => {
      await cb?.close();
      await streamed?.close();
    });

    it("finds no secret and no raw AWS session name; the session name is recorded HMAC'd", async () => {
      const issued = await issueEach(cb.h, [
        'aws/deploy',
        'github/repo-writer',
        'gcp/bucket-reader',
        'azure/storage-reader',
      ]);
      const secrets = secretsOf(issued);
      assert.ok(secrets.some((s) => s.what === 'aws/deploy data.AWS_SECRET_ACCESS_KEY'));
      assert.ok(secrets.some((s) => s.what === 'aws/deploy AWS session name'));
      assert.ok(secrets.some((s) => s.what === 'github/repo-writer token'));
      await delivered(cb.h, streamed);
      assert.deepEqual(await scanSinks(sinks(cb.h, streamed), secrets), []);

      const aws = issued.get('aws/deploy') as IssueCredentialResponseMsg;
      const record = await issuedRecord(cb.h, aws.lease_id);
      const hmac = identifierHmac(readHmacKey(hmacKeyFileFor({ file: cb.h.auditFile }), { create: false }));
      assert.deepEqual(record.backend_ids, {
        session_name: hmac(aws.credential?.metadata.session_name as string),
      });
    });
  });
});
