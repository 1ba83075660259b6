/**
 * A broker process killed with SIGKILL in the middle of a bulk revocation: every lease the ledger
 * had already moved to `revoking` has a durable job, and the surviving replica's revocation worker
 * finishes each one; nothing is left half-revoked and nothing is counted twice.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Lease, Task } from '../../src/leases/types.js';
import { DEMO_AGENT, eventually, readAudit, startHarness, type Harness } from '../support/broker-harness.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LEASES = 4000;

/** Starts `svid-broker serve` as a child process; resolves with its gRPC port once it serves. */
async function serveInChild(configFile: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    cwd: REPO,
    env: { ...process.env, SVID_BROKER_CONFIG: configFile },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child broker did not start in 20 s')), 20_000);
    child.once('exit', (code) => reject(new Error(`child broker exited with ${String(code)}`)));
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; grpc?: number };
        if (rec.msg === 'svid-broker serving' && rec.grpc) {
          clearTimeout(timer);
          resolve(rec.grpc);
        }
      } catch {
        // not a log line
      }
    });
  });
  return { child, port };
}

describe('integration: kill -9 during a bulk revocation', function () {
  this.timeout(60_000);
  let h: Harness;
  let child: ChildProcess | undefined;
  const revocation = { visibilityTimeoutMs: 1000, intervalMs: 100, batchSize: 500, baseDelayMs: 100 };

  before(async () => {
    h = await startHarness({ config: { revocation } });
  });
  after(async () => {
    child?.kill('SIGKILL');
    await h?.close();
  });

  it("the surviving replica's worker finishes every lease the dead one had moved", async () => {
    const now = Date.now();
    const task: Task = {
      id: `kill-task-${now}`,
      agent: DEMO_AGENT,
      environment: 'dev',
      intent: 'seeded',
      labels: {},
      createdAt: now,
      expiresAt: now + 3_600_000,
      state: 'active',
    };
    await h.broker.store.createTask(task);
    for (let i = 0; i < LEASES; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, LEASES - i) }, (_, j) => {
          const lease: Lease = {
            id: `kill-lease-${now}-${i + j}`,
            agent: DEMO_AGENT,
            taskId: task.id,
            environment: 'dev',
            role: 'token/demo',
            backend: 'token',
            backendRef: `kill-lease-${now}-${i + j}`,
            issuedAt: now,
            expiresAt: now + 3_000_000,
            state: 'active',
          };
          return h.broker.store.putLease(lease, now);
        }),
      );
    }

    // The same config as the harness broker (same Redis prefix, CA, policies), in its own process.
    const configFile = join(h.dir, 'child.yaml');
    writeFileSync(
      configFile,
      JSON.stringify(h.configFor(join(h.dir, 'policies'), join(h.dir, 'child-audit.jsonl'))),
    );
    const started = await serveInChild(configFile);
    child = started.child;
    const admin = await h.clientsAt(`127.0.0.1:${started.port}`).adminClient('security');

    let killed = false;
    const call = admin.revokeLeases({ selector: { agent: DEMO_AGENT }, reason: 'kill drill' }, () => {
      if (killed) return;
      killed = true;
      child?.kill('SIGKILL');
    });
    await assert.rejects(call);
    assert.ok(killed, 'killed after the first progress report');

    const states = async (): Promise<Record<string, number>> => {
      const counts: Record<string, number> = {};
      for (const l of await h.broker.store.listLeases({ taskId: task.id })) {
        counts[l.state] = (counts[l.state] ?? 0) + 1;
      }
      return counts;
    };
    const atKill = await states();
    assert.ok((atKill.revoking ?? 0) > 0, `the kill must land mid-run: ${JSON.stringify(atKill)}`);
    const revokingIds = (await h.broker.store.listLeases({ taskId: task.id, state: 'revoking' })).map(
      (l) => l.id,
    );

    await eventually(async () => ((await states()).revoking ?? 0) === 0, 30_000);
    const final = await states();
    assert.equal((final.active ?? 0) + (final.revoked ?? 0), LEASES, JSON.stringify(final));
    assert.equal(final.revoke_failed ?? 0, 0);
    assert.equal(final.revoked ?? 0, LEASES - (atKill.active ?? 0));
    // The survivor recorded what it finished.
    const finished = new Set(
      (await readAudit(h.auditFile)).filter((r) => r.type === 'lease.revoked').map((r) => r.lease),
    );
    assert.ok(revokingIds.every((id) => finished.has(id)));
  });
});
