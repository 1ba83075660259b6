import assert from 'node:assert/strict';
import { MemoryApprovalStore } from '../../../src/approvals/memory-approval-store.js';
import type { ApprovalRequest } from '../../../src/approvals/types.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryAuditSink } from '../../../src/audit/memory-sink.js';
import { AuditPipeline } from '../../../src/audit/pipeline.js';
import { ChatNotifier } from '../../../src/notifications/chat-notifier.js';
import { ApprovalWatch, MemoryNotificationClaims } from '../../../src/notifications/approval-watch.js';
import { chatMessage, jsonBody, slackBody } from '../../../src/notifications/chat-message.js';

const AGENT = 'spiffe://example.org/agents/demo';

function approval(id: string, createdAt: number, ttlMs: number): ApprovalRequest {
  return {
    id,
    digest: 'a'.repeat(64),
    requester: AGENT,
    taskId: 'task-1',
    role: 'token/deploy',
    environment: 'prod',
    ttlSeconds: 300,
    sensitivity: 'internal',
    changeType: 'destructive',
    justification: 'roll out',
    tool: '',
    required: 2,
    policyIds: ['prod-destructive-needs-approval'],
    createdAt,
    expiresAt: createdAt + ttlMs,
    state: 'pending',
    approvals: [],
  };
}

describe('notifications/chat-message', () => {
  const requested = async (justification: string) =>
    new MemoryAuditSink().write({
      type: 'approval.requested',
      agent: AGENT,
      task: 'task-1',
      role: 'token/deploy',
      environment: 'prod',
      change_type: 'destructive',
      sensitivity: 'internal',
      justification,
      approval: 'ap-1',
      approvals_required: 1,
      approval_expires_at: '2026-12-04T12:00:00.000Z',
    });

  it('a Slack message escapes what the agent wrote, so it cannot mention a channel or forge a link', async () => {
    const record = await requested('ship it <!channel> <https://evil.example|approve here> & more');
    const body = JSON.parse(slackBody(record, 'https://console.example.org/')) as { text: string };
    assert.ok(!body.text.includes('<!channel>'), body.text);
    assert.ok(!body.text.includes('<https://evil.example'), body.text);
    assert.ok(body.text.includes('&lt;!channel&gt;'), body.text);
    assert.ok(body.text.includes('&amp; more'), body.text);
    assert.ok(
      body.text.endsWith('<https://console.example.org/approvals/ap-1|Open in the console>'),
      body.text,
    );
    assert.ok(body.text.startsWith(`Approval needed: ${AGENT} asks for token/deploy in prod`), body.text);
  });

  it('the JSON message carries the summary, the console link and the record as a CloudEvent', async () => {
    const record = await requested('roll out v2');
    const body = JSON.parse(jsonBody(record, 'https://console.example.org')) as {
      event: string;
      link: string;
      summary: string;
      record: { type: string; id: string };
    };
    assert.equal(body.event, 'approval.requested');
    assert.equal(body.link, 'https://console.example.org/approvals/ap-1');
    assert.equal(body.record.type, 'io.svid-broker.approval.requested');
    assert.equal(body.record.id, record.id);
    assert.match(body.summary, /Justification: "roll out v2"/);
    assert.equal(chatMessage(record, undefined).link, undefined);
  });
});

describe('notifications/approval-watch', () => {
  it('reminds once at half the lifetime and announces expiry once, however many replicas watch', async () => {
    let now = 1_000_000;
    const approvals = new MemoryApprovalStore({ clock: () => now });
    await approvals.create(approval('ap-1', now, 10_000));
    await approvals.create(approval('ap-2', now, 60_000));
    const audit = new MemoryAuditSink();
    const claims = new MemoryNotificationClaims(() => now);
    const logger = { warn: () => undefined };
    const watches = [1, 2].map(
      () => new ApprovalWatch({ approvals, audit, claims, now: () => now, intervalMs: 1000, logger }),
    );
    const scanAll = () => Promise.all(watches.map((w) => w.scan()));

    await scanAll();
    assert.equal(audit.records.length, 0, 'nothing before half the lifetime');
    now += 5_000;
    await scanAll();
    await scanAll();
    assert.deepEqual(
      audit.ofType('approval.reminder').map((r) => [r.approval, r.approvals_received, r.agent]),
      [['ap-1', 0, AGENT]],
    );
    now += 6_000;
    await scanAll();
    await scanAll();
    assert.deepEqual(
      audit.ofType('approval.expired').map((r) => r.approval),
      ['ap-1'],
    );
    assert.equal(audit.ofType('approval.reminder').length, 1);
  });

  it('an approval decided before it expired is not announced as expired', async () => {
    let now = 5_000_000;
    const approvals = new MemoryApprovalStore({ clock: () => now });
    await approvals.create(approval('ap-3', now, 10_000));
    const audit = new MemoryAuditSink();
    const watch = new ApprovalWatch({
      approvals,
      audit,
      claims: new MemoryNotificationClaims(() => now),
      now: () => now,
      intervalMs: 1000,
      logger: { warn: () => undefined },
    });
    await watch.scan();
    await approvals.decide('ap-3', {
      approver: 'spiffe://example.org/security/oncall',
      approve: false,
      reason: 'no',
      at: now,
    });
    now += 20_000;
    await watch.scan();
    assert.equal(audit.ofType('approval.expired').length, 0);
  });
});

describe('notifications/chat-notifier', () => {
  it('posts automatic quarantines and break-glass grants, not quarantines set by hand; the webhook URL (a secret) is never logged', async () => {
    const bodies: string[] = [];
    let status = 500;
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString('utf8')));
      req.on('end', () => {
        if (status === 200) bodies.push(text);
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const secretPath = '/services/T000/B000/s3cr3t-webhook-token';
    const urlFile = join(mkdtempSync(join(tmpdir(), 'svb-chat-')), 'url');
    writeFileSync(urlFile, `http://127.0.0.1:${(server.address() as AddressInfo).port}${secretPath}\n`);
    const logs: string[] = [];
    const log = (obj: object, msg: string): void => void logs.push(JSON.stringify(obj) + msg);
    const notifier = ChatNotifier.create(
      { name: 'secops', format: 'slack', urlFile, timeoutMs: 2000 },
      {
        consoleUrl: 'https://console.example.org',
        logger: { error: log, warn: log, info: log },
        retry: { baseDelayMs: 10, maxDelayMs: 20 },
      },
    );
    const pipeline = new AuditPipeline(new MemoryAuditSink(), [notifier]);
    const quarantine = {
      type: 'quarantine.set',
      agent: '',
      pattern: AGENT,
      reason: 'restricted data read',
    } as const;
    await pipeline.write({ ...quarantine, trigger: 'manual' });
    await pipeline.write({ ...quarantine, trigger: 'restricted_data' });
    await pipeline.write({
      type: 'breakglass.granted',
      agent: 'spiffe://example.org/security/oncall',
      target: AGENT,
      roles: ['vault/db'],
      reason: 'outage',
      ttl_seconds: 600,
    });
    await new Promise((r) => setTimeout(r, 100));
    status = 200;
    for (let i = 0; i < 200 && bodies.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    const texts = bodies.map((b) => (JSON.parse(b) as { text: string }).text);
    assert.equal(texts.length, 2, texts.join('\n'));
    assert.match(texts[0] as string, /^Quarantined automatically \(restricted_data\)/);
    assert.match(texts[1] as string, /^Break-glass granted by spiffe:\/\/example.org\/security\/oncall to/);
    assert.ok(texts[1]?.includes('<https://console.example.org/break-glass|Open in the console>'));
    assert.ok(
      logs.some((l) => l.includes('answered 500')),
      logs.join('\n'),
    );
    assert.ok(!logs.join('\n').includes('s3cr3t'), 'the webhook URL never reaches the logs');
    await pipeline.close();
    server.close();
  });
});
