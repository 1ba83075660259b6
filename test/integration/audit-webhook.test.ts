/**
 * The webhook sink in a whole broker: a `required` webhook whose receiver stops answering makes
 * issuance fail closed within audit.ackTimeoutMs (the credential is revoked, no lease stays
 * active), and once the receiver answers again it has every record of the chain, in order.
 */
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { fromCloudEvent } from '../../src/audit/cloudevent.js';
import { eventually, grpcError, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { HttpReceiverStub } from '../support/http-receiver.js';

describe('audit webhook sink (integration)', () => {
  let dir: string;
  let receiver: HttpReceiverStub;
  let h: Harness;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-webhook-it-'));
    receiver = await HttpReceiverStub.start();
    writeFileSync(join(dir, 'hmac.key'), 'integration-webhook-key-0123456789\n');
    h = await startHarness({
      config: {
        audit: {
          file: join(dir, 'audit.jsonl'),
          ackTimeoutMs: 500,
          sinks: [
            {
              type: 'webhook',
              name: 'siem',
              mode: 'required',
              url: receiver.url,
              format: 'structured',
              hmacKeyFile: join(dir, 'hmac.key'),
              batchMaxWaitMs: 0,
              // Longer than the test: a receiver that hangs is never given up on by the sink.
              timeoutMs: 60_000,
            },
          ],
        },
      },
    });
  });
  after(async () => {
    await h?.close();
    await receiver?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a required webhook that blocks refuses issuance within the bound and leaves no active lease', async () => {
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'webhook blocks' });
    const ok = await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    assert.ok(ok.credential?.token);

    receiver.answer = () => 'hang';
    const err = await grpcError(client.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
    assert.equal(err.code, status.UNAVAILABLE, err.details);
    assert.equal(err.metadata['x-svid-broker-reason'], 'audit_unavailable');
    assert.match(err.details, /audit trail unavailable/);
    assert.doesNotMatch(err.details, /webhook|127\.0\.0\.1/, 'the caller is not told about the sink');
    // Refused while the receiver still held the POST: the bound, not the receiver, ended the call.
    assert.ok(receiver.received.length > receiver.accepted.length, 'a POST is still hanging');

    const active = await h.broker.store.listLeases({ taskId: task.task_id, state: 'active' });
    assert.deepEqual(
      active.map((l) => l.id),
      [ok.lease_id],
    );

    // The receiver answers again: every record of the chain reaches it, in order, none missing.
    receiver.answer = () => 200;
    receiver.release(200);
    const chain = await readAudit(join(dir, 'audit.jsonl'));
    const delivered = (): number[] =>
      receiver.accepted.map((p) => fromCloudEvent(JSON.parse(p.body) as Record<string, unknown>).seq);
    await eventually(() => new Set(delivered()).size >= chain.length, 10_000);
    const seqs = [...new Set(delivered())];
    assert.deepEqual(
      seqs.slice(0, chain.length),
      chain.map((r) => r.seq),
    );
    const refused = receiver.accepted
      .map((p) => fromCloudEvent(JSON.parse(p.body) as Record<string, unknown>))
      .filter((r) => r.type === 'credential.issued');
    assert.equal(refused.length, 2, 'the refused issuance is in the trail the receiver got');
    // The signing key never leaves in a body, a log line or the trail; the credentials are not sent either.
    const everything = `${receiver.received.map((p) => p.body).join('\n')}\n${h.logs.text()}`;
    assert.doesNotMatch(everything, /integration-webhook-key-0123456789/);
    assert.ok(!everything.includes(ok.credential?.token ?? 'none'), 'the issued token is in no body or log');
  });
});
