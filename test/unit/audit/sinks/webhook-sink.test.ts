import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromCloudEvent } from '../../../../src/audit/cloudevent.js';
import type { FollowerMetrics } from '../../../../src/audit/follower.js';
import { checkRecordLine } from '../../../../src/audit/hash-chain.js';
import { MemoryAuditSink } from '../../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../../src/audit/pipeline.js';
import { buildFollowers } from '../../../../src/audit/sinks/build-followers.js';
import { WebhookSink, type WebhookSinkOptions } from '../../../../src/audit/sinks/webhook-sink.js';
import type { AuditRecord } from '../../../../src/audit/types.js';
import { auditConfigSchema } from '../../../../src/config/audit-schema.js';
import { eventually } from '../../../support/eventually.js';
import { HttpReceiverStub, type ReceivedPost } from '../../../support/http-receiver.js';

const KEY = 'a-webhook-signing-key-of-32-bytes';
const AGENT = 'spiffe://example.org/agents/demo';
const FAST_RETRY = { baseDelayMs: 10, maxDelayMs: 50 };

/** Checks the signature as a receiver would (Stripe-style), without the broker's code. */
function verifySignature(post: ReceivedPost, key: string, toleranceSeconds = 300): boolean {
  const header = String(post.headers['x-svid-broker-signature'] ?? '');
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > toleranceSeconds) return false;
  const expected = createHmac('sha256', key).update(`${parts.t}.${post.body}`).digest();
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The records a batch-format POST carries, each checked against its own hash. */
function recordsOfBatch(post: ReceivedPost): AuditRecord[] {
  const events = JSON.parse(post.body) as Array<Record<string, unknown>>;
  return events.map((e) => checked(fromCloudEvent(e)));
}

function checked(record: AuditRecord): AuditRecord {
  const check = checkRecordLine(JSON.stringify(record), undefined);
  assert.ok(check.ok, `record ${record.id} does not match its hash`);
  return record;
}

function countingMetrics(): FollowerMetrics & { failures: number; delivered_: number } {
  const m = {
    failures: 0,
    delivered_: 0,
    delivered: (_s: string, n: number) => void (m.delivered_ += n),
    failed: () => void (m.failures += 1),
    dropped: () => undefined,
    up: () => undefined,
  };
  return m;
}

describe('audit/sinks/webhook-sink', () => {
  let dir: string;
  let receiver: HttpReceiverStub;
  const closers: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-webhook-'));
    receiver = await HttpReceiverStub.start();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function sinkWith(opts: Partial<WebhookSinkOptions> = {}): WebhookSink {
    const sink = new WebhookSink({
      name: 'webhook',
      mode: 'best_effort',
      receiver: { url: new URL(receiver.url) },
      format: 'batch',
      hmacKey: Buffer.from(KEY),
      spoolDir: join(dir, 'spool'),
      batchMaxRecords: 100,
      batchMaxWaitMs: 0,
      timeoutMs: 2000,
      retry: FAST_RETRY,
      closeTimeoutMs: 200,
      ...opts,
    });
    return sink;
  }

  /** A chain keeper with the sink following it; `write(n)` commits n records. */
  function chainWith(
    sink: WebhookSink,
    keeper = new MemoryAuditSink({ source: 'spiffe://example.org/broker' }),
  ) {
    const pipeline = new AuditPipeline(keeper, [sink], { ackTimeoutMs: 2000 });
    closers.push(() => pipeline.close());
    return {
      keeper,
      pipeline,
      async write(n: number, from = 0): Promise<void> {
        for (let i = 0; i < n; i += 1) {
          await keeper.write({ type: 'credential.issued', agent: AGENT, lease: `lease-${from + i}` });
        }
      },
    };
  }

  it('batch: POSTs a signed application/cloudevents-batch+json array of the records, in order', async () => {
    const sink = sinkWith({ batchMaxRecords: 5, batchMaxWaitMs: 60_000 });
    const chain = chainWith(sink);
    await chain.write(5);
    await eventually(() => receiver.accepted.length === 1);
    const post = receiver.accepted[0] as ReceivedPost;
    assert.match(String(post.headers['content-type']), /^application\/cloudevents-batch\+json/);
    assert.ok(verifySignature(post, KEY), 'the signature verifies with the key');
    assert.ok(!verifySignature(post, 'another-key-of-some-length-000000'), 'and not with another key');
    const events = JSON.parse(post.body) as Array<Record<string, unknown>>;
    assert.equal(events[0]?.type, 'io.svid-broker.credential.issued');
    assert.equal(events[0]?.subject, AGENT);
    assert.equal(events[0]?.source, 'spiffe://example.org/broker');
    assert.deepEqual(
      recordsOfBatch(post).map((r) => r.seq),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(recordsOfBatch(post), chain.keeper.records);
  });

  it('batch: a tampered body fails the signature check', async () => {
    const chain = chainWith(sinkWith());
    await chain.write(1);
    await eventually(() => receiver.accepted.length === 1);
    const post = receiver.accepted[0] as ReceivedPost;
    assert.ok(verifySignature(post, KEY));
    assert.ok(!verifySignature({ ...post, body: post.body.replace('lease-0', 'lease-9') }, KEY));
  });

  it('structured: one application/cloudevents+json event per POST, sent in chain order', async () => {
    const chain = chainWith(sinkWith({ format: 'structured', batchMaxRecords: 10, batchMaxWaitMs: 60_000 }));
    await chain.write(10);
    await eventually(() => receiver.accepted.length === 10);
    for (const [i, post] of receiver.accepted.entries()) {
      assert.match(String(post.headers['content-type']), /^application\/cloudevents\+json/);
      assert.ok(verifySignature(post, KEY));
      const record = checked(fromCloudEvent(JSON.parse(post.body) as Record<string, unknown>));
      assert.equal(record.seq, i + 1);
    }
  });

  it('structured: a batch that failed half-way resumes after the last event taken (no duplicate)', async () => {
    let answers = 0;
    receiver.answer = () => (++answers === 3 ? 503 : 200);
    const chain = chainWith(sinkWith({ format: 'structured', batchMaxRecords: 5, batchMaxWaitMs: 60_000 }));
    await chain.write(5);
    await eventually(() => receiver.accepted.length === 5);
    const seqs = receiver.accepted.map((p) => (JSON.parse(p.body) as { chainseq: number }).chainseq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
    assert.equal(receiver.received.length, 6, 'only the refused event was sent twice');
  });

  it('splunk_hec: HEC event objects with the CloudEvent as `event`, and the Splunk token', async () => {
    const chain = chainWith(
      sinkWith({
        format: 'splunk_hec',
        splunkToken: 'hec-token-0000',
        batchMaxRecords: 3,
        batchMaxWaitMs: 60_000,
      }),
    );
    await chain.write(3);
    await eventually(() => receiver.accepted.length === 1);
    const post = receiver.accepted[0] as ReceivedPost;
    assert.equal(post.headers.authorization, 'Splunk hec-token-0000');
    assert.ok(verifySignature(post, KEY));
    const objects = post.body.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(objects.length, 3);
    for (const [i, o] of objects.entries()) {
      const record = chain.keeper.records[i] as AuditRecord;
      assert.equal(o.time, Date.parse(record.time) / 1000);
      assert.equal(o.sourcetype, 'svid-broker:audit');
      assert.equal(o.source, record.source);
      assert.equal(typeof o.host, 'string');
      assert.deepEqual(checked(fromCloudEvent(o.event as Record<string, unknown>)), record);
    }
  });

  it('a receiver that is down, then up, receives every record in order, with no gap', async () => {
    const port = await HttpReceiverStub.freePort();
    const sink = sinkWith({
      receiver: { url: new URL(`http://127.0.0.1:${port}/hook`) },
      batchMaxRecords: 4,
    });
    const chain = chainWith(sink);
    await chain.write(10);
    await eventually(() => !sink.health().ok);
    assert.match((sink.health() as { cause: string }).cause, /ECONNREFUSED/);
    assert.equal(sink.spooled, 10, 'every record waits in the spool');

    const late = await HttpReceiverStub.start(port);
    closers.push(() => late.stop());
    await chain.write(5, 10);
    await eventually(() => late.accepted.flatMap(recordsOfBatch).length === 15, 10_000);
    assert.deepEqual(
      late.accepted.flatMap(recordsOfBatch).map((r) => r.seq),
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
    await eventually(() => sink.health().ok);
    // The spool lets go of the last batch once its ack is saved, which may be a moment after.
    await eventually(() => sink.spooled === 0);
    assert.equal(
      Number(readFileSync(join(dir, 'spool', 'acked'), 'utf8')),
      15,
      'the spool knows all were taken',
    );
    await sink.close();
    const again = sinkWith();
    closers.push(() => again.close());
    assert.equal(again.spooled, 0, 'a restart replays nothing the receiver already took');
    assert.equal(
      readFileSync(join(dir, 'spool', 'spool.jsonl'), 'utf8'),
      '',
      'and starts from an empty spool',
    );
  });

  it('a broker restart while the receiver is down replays the spool, in order, before new records', async () => {
    receiver.answer = () => 503;
    const keeper = new MemoryAuditSink();
    const first = sinkWith();
    // The first broker's sink follows the chain, fails, and stops (the chain goes on in the next run).
    const unsubscribe = keeper.subscribe((records) => first.enqueue(records));
    for (let i = 0; i < 6; i += 1) await keeper.write({ type: 'task.begun', agent: AGENT, n: i });
    await eventually(() => !first.health().ok);
    unsubscribe();
    await first.close();
    assert.equal(receiver.accepted.length, 0);

    receiver.answer = () => 200;
    const second = sinkWith();
    assert.equal(second.spooled, 6, 'the new sink found the spooled records');
    const chain = chainWith(second, keeper);
    await chain.write(2);
    await eventually(() => receiver.accepted.flatMap(recordsOfBatch).length >= 8);
    const seqs = receiver.accepted.flatMap(recordsOfBatch).map((r) => r.seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('close() abandons a POST the receiver never answers; its records stay spooled for the next run', async () => {
    receiver.answer = () => 'hang';
    const keeper = new MemoryAuditSink();
    const first = sinkWith({ timeoutMs: 60_000, closeTimeoutMs: 100 });
    keeper.subscribe((records) => first.enqueue(records));
    await keeper.write({ type: 'task.begun', agent: AGENT });
    await eventually(() => receiver.received.length === 1);
    await first.close();
    receiver.answer = () => 200;
    const second = sinkWith();
    closers.push(() => second.close());
    await eventually(() => receiver.accepted.length === 1);
    assert.deepEqual(recordsOfBatch(receiver.accepted[0] as ReceivedPost), keeper.records);
  });

  it('a torn last spool line (a crash mid-append) is dropped; the rest replays', async () => {
    const keeper = new MemoryAuditSink();
    for (let i = 0; i < 2; i += 1) await keeper.write({ type: 'task.begun', agent: AGENT, n: i });
    const spoolDir = join(dir, 'torn');
    const lines = keeper.records.map((r) => JSON.stringify(r)).join('\n');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(spoolDir);
    writeFileSync(join(spoolDir, 'spool.jsonl'), `${lines}\n{"id":"tor`);
    const sink = sinkWith({ spoolDir });
    closers.push(() => sink.close());
    await eventually(() => receiver.accepted.flatMap(recordsOfBatch).length === 2);
    assert.deepEqual(receiver.accepted.flatMap(recordsOfBatch), keeper.records);
  });

  it('a receiver that rejects (HTTP 400) loses nothing: counted, retried until it takes the batch', async () => {
    let answers = 0;
    receiver.answer = () => (++answers <= 2 ? 400 : 204);
    const metrics = countingMetrics();
    const sink = sinkWith({ metrics });
    const chain = chainWith(sink);
    await chain.write(3);
    await eventually(() => receiver.accepted.flatMap(recordsOfBatch).length === 3);
    assert.equal(sink.rejections, 2);
    assert.equal(metrics.failures, 2);
    assert.deepEqual(
      receiver.accepted.flatMap(recordsOfBatch).map((r) => r.seq),
      [1, 2, 3],
    );
  });

  it('a redirect is not followed: the sink is down and says why', async () => {
    const elsewhere = await HttpReceiverStub.start();
    closers.push(() => elsewhere.stop());
    receiver.answer = () => ({ status: 307, headers: { location: elsewhere.url } });
    const sink = sinkWith();
    const chain = chainWith(sink);
    await chain.write(1);
    await eventually(() => !sink.health().ok);
    assert.match((sink.health() as { cause: string }).cause, /HTTP 307 \(a redirect: not followed\)/);
    assert.equal(elsewhere.received.length, 0);
  });

  it('a required webhook holds write() until the receiver acknowledged, and refuses past the bound', async () => {
    receiver.answer = () => 'hang';
    const sink = sinkWith({ mode: 'required' });
    const keeper = new MemoryAuditSink();
    const pipeline = new AuditPipeline(keeper, [sink], { ackTimeoutMs: 300 });
    closers.push(() => pipeline.close());
    const refused = pipeline.write({ type: 'credential.issued', agent: AGENT });
    await assert.rejects(refused, (err: { code?: string; reason?: string }) => {
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.reason, 'audit_timeout');
      return true;
    });
    assert.equal(receiver.accepted.length, 0, 'refused while the receiver had not answered');
    receiver.answer = () => 200;
    receiver.release(200);
    const record = await pipeline.write({ type: 'credential.issued', agent: AGENT });
    assert.ok(receiver.accepted.flatMap(recordsOfBatch).some((r) => r.seq === record.seq));
  });

  describe('config', () => {
    it('audit.sinks[] type webhook builds a WebhookSink with its spool under <audit.file>.spool/<name>', async () => {
      const keyFile = join(dir, 'hmac.key');
      writeFileSync(keyFile, `${KEY}\n`);
      const audit = auditConfigSchema.parse({
        file: join(dir, 'audit.jsonl'),
        sinks: [
          { type: 'webhook', name: 'siem', url: receiver.url, hmacKeyFile: keyFile, batchMaxWaitMs: 0 },
        ],
      });
      const [sink] = buildFollowers(audit, { logger: console, redis: undefined });
      assert.ok(sink instanceof WebhookSink);
      assert.equal(sink.name, 'webhook:siem');
      assert.equal(sink.mode, 'best_effort');
      const chain = chainWith(sink);
      await chain.write(1);
      await eventually(() => receiver.accepted.length === 1);
      assert.ok(
        verifySignature(receiver.accepted[0] as ReceivedPost, KEY),
        'signed with the file key, newline trimmed',
      );
      assert.equal(
        Number(readFileSync(join(dir, 'audit.jsonl.spool', 'webhook-siem', 'acked'), 'utf8')),
        1,
        'its spool is under <audit.file>.spool/webhook-siem',
      );
    });

    it('refuses a webhook without hmacKeyFile, and splunk_hec without splunkTokenFile', () => {
      const noKey = auditConfigSchema.safeParse({ sinks: [{ type: 'webhook', url: receiver.url }] });
      assert.ok(!noKey.success);
      assert.deepEqual(noKey.error.issues[0]?.path, ['sinks', 0, 'hmacKeyFile']);
      const noToken = auditConfigSchema.safeParse({
        sinks: [{ type: 'webhook', url: receiver.url, hmacKeyFile: 'k', format: 'splunk_hec' }],
      });
      assert.ok(!noToken.success);
      assert.deepEqual(noToken.error.issues[0]?.path, ['sinks', 0, 'splunkTokenFile']);
    });

    it('a key file shorter than 16 bytes stops startup, naming the sink and the file, not its content', () => {
      const keyFile = join(dir, 'short.key');
      writeFileSync(keyFile, 'tiny-secret');
      const audit = auditConfigSchema.parse({
        file: join(dir, 'audit.jsonl'),
        sinks: [{ type: 'webhook', url: receiver.url, hmacKeyFile: keyFile }],
      });
      assert.throws(
        () => buildFollowers(audit, { logger: console, redis: undefined }),
        (err: Error) => {
          assert.match(
            err.message,
            /audit sink webhook: hmacKeyFile: .*short\.key holds fewer than 16 bytes/,
          );
          assert.doesNotMatch(err.message, /tiny-secret/);
          return true;
        },
      );
    });
  });
});
