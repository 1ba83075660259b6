/**
 * The audit disk fills and empties again, with no human in the loop: the broker refuses (and is not
 * ready) while nothing can be recorded, logs the cause once, and serves again by itself when space
 * returns, leaving a chain that verifies, with no torn record and an `audit.recovered` record.
 *
 * As root the audit file lives on a small tmpfs that really fills (ENOSPC mid-record included);
 * where mounting is not allowed, the same run goes through the sink's file-system seam instead.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { FileChainSink, type SinkLogger } from '../../src/audit/file-chain-sink.js';
import type { AuditRecord, AuditSink } from '../../src/audit/types.js';
import { verifyAuditFile } from '../../src/audit/verify-file.js';
import { eventually, grpcError, startHarness, type Harness } from '../support/broker-harness.js';
import { createFsSpy } from '../unit/audit/fs-spy.js';

/** A place for the audit file whose disk can be filled and emptied. */
interface FillableDisk {
  kind: 'tmpfs' | 'seam';
  file: string;
  /** Set when the broker must use this sink (the seam) rather than open the file itself. */
  sink?: AuditSink;
  fill(): void;
  free(): void;
  cleanup(): void;
}

function mountTmpfs(): FillableDisk | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'svb-auditfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  const filler = join(dir, 'filler');
  return {
    kind: 'tmpfs',
    file: join(dir, 'audit.jsonl'),
    fill() {
      const fd = openSync(filler, 'a');
      try {
        // Big pieces, then single bytes, until not one more byte fits.
        for (const size of [16 * 1024, 1]) {
          const piece = Buffer.alloc(size, 0x78);
          for (;;) {
            try {
              writeSync(fd, piece);
            } catch {
              break;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free: () => unlinkSync(filler),
    cleanup() {
      execFileSync('umount', [dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The sink is built before the broker, so it logs to the broker's logger once there is one. */
const seamLog: { logger?: SinkLogger } = {};
const forwardingLogger: SinkLogger = {
  error: (obj, msg) => seamLog.logger?.error(obj, msg),
  warn: (obj, msg) => seamLog.logger?.warn(obj, msg),
  info: (obj, msg) => seamLog.logger?.info(obj, msg),
};

async function seamDisk(): Promise<FillableDisk> {
  const dir = mkdtempSync(join(tmpdir(), 'svb-auditseam-'));
  const spy = createFsSpy();
  const file = join(dir, 'audit.jsonl');
  const sink = await FileChainSink.open(file, { fileSystem: spy.fileSystem, logger: forwardingLogger });
  return {
    kind: 'seam',
    file,
    sink,
    // A full disk as the sink sees it: a write lands part of a record, then ENOSPC.
    fill: () => Object.assign(spy.faults, { write: 'ENOSPC', writeAfter: 100 }),
    free: () => delete spy.faults.write,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function records(file: string): AuditRecord[] {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'no torn record at the end');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as AuditRecord);
}

describe('integration: the audit disk fills, then space returns', function () {
  this.timeout(60_000);
  let disk: FillableDisk;
  let h: Harness;

  before(async () => {
    disk = mountTmpfs() ?? (await seamDisk());
    h = await startHarness(
      disk.sink ? { audit: disk.sink } : { config: { audit: { file: disk.file, fsync: true } } },
    );
    seamLog.logger = h.logger;
  });
  after(async () => {
    await h?.close();
    await disk?.sink?.close();
    disk?.cleanup();
  });

  it('refuses while full, logs the cause once, and serves again by itself', async () => {
    console.log(`      (the disk: ${disk.kind})`);
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'disk full' });
    const before = await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    assert.ok(before.credential?.token);

    disk.fill();
    // A record may still fit in the file's last page; soon one does not.
    await eventually(async () => {
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      return err.code === status.UNAVAILABLE && err.metadata['x-svid-broker-reason'] === 'audit_unavailable';
    });
    let refused = 0;
    for (let i = 0; i < 20; i += 1) {
      const err = await grpcError(demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }));
      assert.equal(err.code, status.UNAVAILABLE);
      assert.doesNotMatch(err.details, /ENOSPC|audit\.jsonl/, 'the caller is not told paths or errno');
      refused += 1;
    }
    // A heal probe that a freed page let through may flip readiness back for a moment (see below).
    const down = await eventually(async () => {
      const r = await h.httpJson('/readyz');
      return r.status === 503 ? r : undefined;
    });
    assert.match(JSON.stringify(down.body), /ENOSPC/);

    // The cause, with errno and path, once; no line per refused request above warn level.
    const logs = h.logs.lines.map(
      (line) => JSON.parse(line) as { level: number; msg: string } & Record<string, unknown>,
    );
    const failed = logs.filter((l) => l.msg.startsWith('audit sink failed'));
    // Once per state change: a page freed by the checkpoint files beside the trail may let a
    // heal through while the disk is still full; each failure after it is a new state.
    const healed = logs.filter((l) => l.msg.startsWith('audit sink recovered'));
    assert.equal(failed.length, healed.length + 1);
    assert.equal(failed[0]?.errno, 'ENOSPC');
    assert.equal(failed[0]?.path, disk.file);
    const perRequest = logs.filter(
      (l) =>
        l.level >= 40 &&
        /audit (log|trail) unavailable|audit write failed/.test(`${l.msg} ${JSON.stringify(l)}`),
    );
    assert.deepEqual(perRequest, []);

    disk.free();
    const after = await eventually(
      () => demo.issueCredential({ task_id: task.task_id, role: 'token/demo' }),
      15_000,
    );
    assert.ok(after.credential?.token);
    assert.equal((await h.httpJson('/readyz')).status, 200);

    const store = h.broker.store;
    const leaseStates = new Map(
      (await store.listLeases({ taskId: task.task_id })).map((l) => [l.id, l.state] as const),
    );
    await h.close();
    await disk.sink?.close();
    const verified = await verifyAuditFile(disk.file);
    assert.equal(verified.ok, true, JSON.stringify(verified));
    const trail = records(disk.file);
    const recovered = trail.filter((r) => r.type === 'audit.recovered');
    assert.equal(recovered.length, healed.length + 1, 'one audit.recovered per outage');
    const counted = recovered.reduce((n, r) => n + Number(r.refused_writes), 0);
    assert.ok(counted >= refused, 'every refused request was counted');
    for (const r of recovered) assert.match(String(r.cause), /ENOSPC/);
    const issued = trail.filter((r) => r.type === 'credential.issued').map((r) => r.lease);
    assert.ok(issued.includes(before.lease_id) && issued.includes(after.lease_id));
    // The trail claims no issuance the broker took back: every lease it records as issued is active.
    for (const lease of issued)
      assert.equal(leaseStates.get(String(lease)), 'active', `lease ${String(lease)}`);
  });
});

describe('integration: a broker restarting on a torn audit tail', function () {
  this.timeout(60_000);
  let dir: string;
  let file: string;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'svb-torn-'));
    file = join(dir, 'audit.jsonl');
    const sink = await FileChainSink.open(file);
    await sink.write({ type: 'policy.reloaded', agent: '' });
    await sink.write({ type: 'policy.synced', agent: '' });
    await sink.close();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('cuts its own interrupted write, records audit.repaired, and serves', async () => {
    appendFileSync(file, '{"id":"01939c2e-7a41-7000-8000-0000000000aa","time":"2026-12-04T05:');
    const h = await startHarness({ config: { audit: { file, fsync: true } } });
    try {
      assert.equal((await h.httpJson('/readyz')).status, 200);
      const demo = await h.client('demo');
      await demo.beginTask({ environment: 'dev', intent: 'after the repair' });
    } finally {
      await h.close();
    }
    assert.equal((await verifyAuditFile(file)).ok, true);
    const types = records(file).map((r) => r.type);
    assert.deepEqual(types.slice(0, 3), ['policy.reloaded', 'policy.synced', 'audit.repaired']);
    assert.ok(types.includes('task.begun'));
  });

  it('refuses to start on a tail that is not its own write, and leaves the file as it was', async () => {
    appendFileSync(file, 'rm -rf /var/lib/svid-broker');
    const before = readFileSync(file);
    await assert.rejects(startHarness({ config: { audit: { file, fsync: true } } }), (err: Error) => {
      assert.match(err.message, /not a record this broker was writing/);
      assert.match(err.message, /truncate -s \d+ /);
      return true;
    });
    assert.deepEqual(readFileSync(file), before);
  });
});
