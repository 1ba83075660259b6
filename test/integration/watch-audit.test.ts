/**
 * BrokerAdmin.WatchAudit end to end: a collector resumes from an id after a disconnect with no
 * gap and no duplicate; filters by type and agent; an unauthorized caller and an unknown id are
 * refused with their status; a watch is audited as admin.read.
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import { fromCloudEvent } from '../../src/audit/cloudevent.js';
import { checkRecordLine } from '../../src/audit/hash-chain.js';
import { watchAuditTail } from '../../src/cli/audit-tail.js';
import type { BrokerAdminClient } from '../../src/client/broker-client.js';
import type { AuditEventMsg } from '../../src/server/broker-proto.js';
import {
  DEMO_AGENT,
  eventually,
  grpcError,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';

/** Starts a watch that collects events until stopped. */
function collect(
  admin: BrokerAdminClient,
  req: { from_id?: string; types?: string[]; agent?: string },
): { events: AuditEventMsg[]; stop(): Promise<void>; ended: Promise<void> } {
  const events: AuditEventMsg[] = [];
  const abort = new AbortController();
  const ended = admin.watchAudit(req, (e) => events.push(e), abort.signal);
  return {
    events,
    ended,
    async stop() {
      abort.abort();
      await ended;
    },
  };
}

describe('integration: BrokerAdmin.WatchAudit', function () {
  this.timeout(60_000);
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => h?.close());

  async function someActivity(n: number): Promise<void> {
    const client = await h.client('demo');
    const task = await client.beginTask({ environment: 'dev', intent: 'watch' });
    for (let i = 0; i < n; i++) await client.issueCredential({ task_id: task.task_id, role: 'token/demo' });
  }

  it('a collector that disconnects resumes from its last id with no gap and no duplicate', async () => {
    const admin = await h.adminClient('security');
    const first = collect(admin, {});
    // The watch's own admin.read is its first event: it is live once that arrived.
    await eventually(() => first.events.some((e) => e.type === 'admin.read'));
    await someActivity(2);
    await eventually(() => first.events.filter((e) => e.type === 'credential.issued').length === 2);
    await first.stop();
    const lastId = (first.events.at(-1) as AuditEventMsg).id;

    await someActivity(3); // committed while nobody watches
    const second = collect(admin, { from_id: lastId });
    await eventually(() => second.events.filter((e) => e.type === 'credential.issued').length >= 3);
    await someActivity(1); // live again
    await eventually(() => second.events.filter((e) => e.type === 'credential.issued').length === 4);
    await second.stop();

    const seqs = [...first.events, ...second.events].map((e) => Number(e.seq));
    const firstSeq = seqs[0] as number;
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => firstSeq + i),
      'continuous, each seq once',
    );
    // Each event is the record of the file, and its hash checks.
    const file = await readAudit(h.auditFile);
    for (const event of second.events) {
      const record = fromCloudEvent(JSON.parse(event.cloudevent_json) as Record<string, unknown>);
      assert.equal(record.id, event.id);
      assert.equal(record.type, event.type);
      const line = file.find((r) => r.id === event.id);
      assert.ok(line, `record ${event.id} is in the file`);
      const check = checkRecordLine(JSON.stringify(record), String(line.prev_hash));
      assert.equal(check.ok, true);
    }
    const reads = file.filter((r) => r.type === 'admin.read' && r.method === 'WatchAudit');
    assert.deepEqual(
      reads.map((r) => r.from_id),
      ['', lastId],
    );
  });

  it('filters by type and agent, still in chain order', async () => {
    const admin = await h.adminClient('security');
    const file = await readAudit(h.auditFile);
    const from = file[0]?.id as string;
    const watch = collect(admin, {
      from_id: from,
      types: ['credential.issued', 'task.begun'],
      agent: DEMO_AGENT,
    });
    const expected = file
      .slice(1)
      .filter(
        (r) => ['credential.issued', 'task.begun'].includes(r.type as string) && r.agent === DEMO_AGENT,
      );
    await eventually(() => watch.events.length >= expected.length);
    await watch.stop();
    assert.ok(expected.length >= 5);
    assert.deepEqual(
      watch.events.slice(0, expected.length).map((e) => e.id),
      expected.map((r) => r.id),
    );
    for (const e of watch.events) assert.equal(e.agent, DEMO_AGENT);
  });

  it('audit tail without FILE prints the watched records (filtered, or as CloudEvent JSON)', async () => {
    const admin = await h.adminClient('security');
    const file = await readAudit(h.auditFile);
    const issued = file.filter((r) => r.type === 'credential.issued');
    const lines: string[] = [];
    const abort = new AbortController();
    const done = watchAuditTail(
      admin,
      file[0]?.id as string,
      { types: ['credential.issued'], agent: undefined },
      false,
      (l) => lines.push(l),
      abort.signal,
    );
    await eventually(() => lines.length === issued.length);
    abort.abort();
    assert.equal(await done, 0);
    for (const [i, line] of lines.entries()) {
      assert.ok(line.startsWith(`${String(issued[i]?.time)}  credential.issued  ${DEMO_AGENT}  `), line);
    }
    const json: string[] = [];
    const abortJson = new AbortController();
    const doneJson = watchAuditTail(
      admin,
      file[0]?.id as string,
      { types: [], agent: undefined },
      true,
      (l) => json.push(l),
      abortJson.signal,
    );
    await eventually(() => json.length >= file.length - 1);
    abortJson.abort();
    await doneJson;
    assert.equal(JSON.parse(json[0] as string).id, file[1]?.id);
  });

  it('refuses an unauthorized caller (PERMISSION_DENIED), an unknown id (NOT_FOUND), a bad filter', async () => {
    const agentAdmin = await h.adminClient('demo');
    const denied = await grpcError(agentAdmin.watchAudit({}, () => undefined));
    assert.equal(denied.code, status.PERMISSION_DENIED, denied.details);
    const refusals = (await readAudit(h.auditFile)).filter(
      (r) => r.type === 'admin.denied' && r.method === 'WatchAudit',
    );
    assert.equal(refusals.length, 1);

    const admin = await h.adminClient('security');
    const unknown = await grpcError(
      admin.watchAudit({ from_id: '0190f0f0-0000-7000-8000-000000000000' }, () => undefined),
    );
    assert.equal(unknown.code, status.NOT_FOUND, unknown.details);
    assert.match(unknown.details, /from_id/);

    const badType = await grpcError(admin.watchAudit({ types: ['credential.nope'] }, () => undefined));
    assert.equal(badType.code, status.INVALID_ARGUMENT);
    assert.match(badType.details, /^types: /);
  });
});
