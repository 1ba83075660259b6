import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEMO_AGENT, eventually, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

interface Received {
  path: string;
  body: Record<string, unknown>;
}

/** A chat webhook receiver: records what it was sent; answers 503 while `down`. */
async function startReceiver(): Promise<{
  url: string;
  got: Received[];
  down: { on: boolean };
  server: Server;
}> {
  const got: Received[] = [];
  const down = { on: false };
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    req.on('end', () => {
      if (down.on) {
        res.writeHead(503).end();
        return;
      }
      got.push({ path: req.url ?? '', body: JSON.parse(text) as Record<string, unknown> });
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, got, down, server };
}

describe('integration: chat notifications', function () {
  this.timeout(40_000);
  let h: Harness;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;

  before(async () => {
    receiver = await startReceiver();
    h = await startHarness({
      config: {
        approvals: { ttlSeconds: 4, pollMs: 50 },
        notifications: {
          consoleUrl: 'https://console.example.org',
          scanIntervalSeconds: 1,
          webhooks: [
            { name: 'secops', format: 'slack', url: `${receiver.url}/slack` },
            { name: 'pager', format: 'json', url: `${receiver.url}/json`, events: ['approval.expired'] },
          ],
        },
      },
    });
  });
  after(async () => {
    await h?.close();
    receiver?.server.close();
  });

  it('an approval request reaches the chat with a console link, then a reminder at half-life and its expiry, once each across two replicas', async () => {
    const replica = await h.replica();
    const demo = await h.client('demo');
    receiver.down.on = true; // the first attempt fails: the message is retried, not lost
    const task = await demo.beginTask({ environment: 'prod', intent: 'deploy the release' });
    const pending = await demo.issueCredential({
      task_id: task.task_id,
      role: 'token/deploy',
      change_type: 'destructive',
      justification: 'roll out v2 <!here>',
    });
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const id = pending.approval_id;
    await new Promise((r) => setTimeout(r, 300));
    receiver.down.on = false;

    const slack = () => receiver.got.filter((m) => m.path === '/slack').map((m) => String(m.body.text));
    await eventually(() => slack().some((t) => t.startsWith('Approval needed:')), 10_000);
    const first = slack()[0] as string;
    assert.ok(first.includes(DEMO_AGENT));
    assert.ok(first.includes('&lt;!here&gt;') && !first.includes('<!here>'), first);
    assert.ok(first.includes(`<https://console.example.org/approvals/${id}|Open in the console>`), first);

    await eventually(() => slack().some((t) => t.startsWith('Expired undecided:')), 15_000);
    const kinds = slack().map((t) => t.split(':')[0]);
    assert.deepEqual(kinds, ['Approval needed', 'Still pending, half its time gone', 'Expired undecided']);
    // The two notifiers deliver on their own: the json one may land a moment after the Slack one.
    await eventually(() => receiver.got.some((m) => m.path === '/json'), 10_000);
    const json = receiver.got.filter((m) => m.path === '/json');
    assert.equal(json.length, 1, 'the json webhook asked for expiry only');
    assert.equal(json[0]?.body.event, 'approval.expired');
    assert.equal(json[0]?.body.link, `https://console.example.org/approvals/${id}`);

    const records = [...(await readAudit(h.auditFile)), ...(await readAudit(replica.auditFile))];
    assert.equal(records.filter((r) => r.type === 'approval.reminder' && r.approval === id).length, 1);
    assert.equal(records.filter((r) => r.type === 'approval.expired' && r.approval === id).length, 1);
  });
});
