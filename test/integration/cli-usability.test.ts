import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import {
  DEMO_AGENT,
  OTHER_AGENT,
  eventually,
  readAudit,
  startHarness,
  type Harness,
} from '../support/broker-harness.js';
import { COMMANDS, main } from '../../src/cli/cli.js';
import { STACK_TRACE, runCli, type CliResult } from '../support/run-cli.js';

/** The CLI in this process (what it prints captured): help needs no broker and no child process. */
async function inProcess(args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await main(args);
    return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.map((l) => `${l}\n`).join('') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** One at a time: inProcess captures the console of the whole process. */
async function sequentially<const T extends readonly string[][]>(
  runs: T,
): Promise<{ [K in keyof T]: CliResult }> {
  const results: CliResult[] = [];
  for (const args of runs) results.push(await inProcess(args));
  return results as { [K in keyof T]: CliResult };
}

/** The command paths the overview lists (`admin leases`, `task end`, ...). */
function commandPaths(overview: string): string[] {
  const block = overview.split('commands:\n')[1]?.split('\n\n')[0] ?? '';
  return block.split('\n').map((line) =>
    (line.trim().split(/\s{2,}/)[0] ?? '')
      .split(/\s+/)
      .filter((w) => /^[a-z]+$/.test(w))
      .join(' '),
  );
}

const usageFailed = (r: CliResult, pattern: RegExp): void => {
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, pattern);
  assert.match(r.stderr, /--help/);
  assert.doesNotMatch(r.stderr, STACK_TRACE);
};

const failedWith = (r: CliResult, pattern: RegExp): void => {
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, STACK_TRACE);
};

describe('integration: the CLI never leaves anyone guessing', function () {
  this.timeout(300_000);
  let h: Harness;
  const as = (workload: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    runCli(args, { SPIFFE_ENDPOINT_SOCKET: h.endpoints[workload], SVID_BROKER_ADDR: h.address, ...env });

  before(async () => {
    h = await startHarness({
      // A permit that allows the other agent logs tokens of at most 10 minutes: a longer one is
      // denied by default, and the denial should say why.
      extraPolicies: `@id("other-logs-short")
permit (principal == Agent::"${OTHER_AGENT}", action == Action::"IssueCredential", resource == Role::"token/logs-read")
when { context.environment == "dev" && context.ttlSeconds <= 600 };
`,
    });
  });
  after(async () => {
    await h?.close();
  });

  it('-h/--help on every command and subcommand prints its usage and exits 0', async () => {
    const top = await inProcess(['--help']);
    assert.equal(top.code, 0);
    const paths = commandPaths(top.stdout);
    for (const expected of [
      'serve',
      'dev',
      'request',
      'task end',
      'audit verify',
      'approvals list',
      'admin leases',
      'policy test',
    ]) {
      assert.ok(paths.includes(expected), `${expected} in the overview:\n${top.stdout}`);
    }
    assert.deepEqual([...paths].sort(), COMMANDS.map((c) => c.path).sort());
    const helpOf = new Map<string, string>();
    for (const [i, path] of paths.entries()) {
      const res = await inProcess([...path.split(' '), i % 2 === 0 ? '--help' : '-h']);
      assert.equal(res.code, 0, `${path} --help: ${res.stderr}`);
      assert.match(res.stdout, new RegExp(`^usage: svid-broker ${path}\\b`), path);
      assert.match(res.stdout, /-h, --help/, path);
      helpOf.set(path, res.stdout);
    }
    for (const flag of ['--dir DIR', '--listen HOST:PORT', '--http-listen HOST:PORT']) {
      assert.ok(helpOf.get('dev')?.includes(flag), flag);
    }
    assert.ok(helpOf.get('admin leases')?.includes('--page-token TOKEN'));
    assert.ok(helpOf.get('request')?.includes('--ttl DURATION'));
    // Groups explain themselves; `audit verify --help` opens no file named --help; from the real
    // executable, `serve --help` prints its usage and exits 0 instead of starting a broker.
    const [admin, bare, verify, help] = await sequentially([
      ['admin', '--help'],
      ['admin'],
      ['audit', 'verify', '--help'],
      ['help', 'task', 'end'],
    ]);
    assert.equal(admin.code, 0);
    assert.match(admin.stdout, /admin revoke/);
    usageFailed(bare, /svid-broker admin: needs a command/);
    assert.equal(verify.code, 0);
    assert.doesNotMatch(verify.stdout + verify.stderr, /ENOENT/);
    assert.match(help.stdout, /^usage: svid-broker task end TASK_ID/);
    const serve = await runCli(['serve', '--help']);
    assert.equal(serve.code, 0, serve.stderr);
    assert.match(serve.stdout, /^usage: svid-broker serve/);
  });

  it('usage mistakes exit 2 with one line naming the flag', async () => {
    const [unknown, missing, noRole, negative, badUnit, both, long, noSelector] = await sequentially([
      ['request', '--env', 'dev', '--role', 'token/demo', '--bogus'],
      ['task', 'end'],
      ['request', '--env', 'dev'],
      ['request', '--env', 'dev', '--role', 'token/demo', '--ttl', '-5'],
      [
        'breakglass',
        'grant',
        '--agent',
        DEMO_AGENT,
        '--role',
        'token/demo',
        '--reason',
        'x',
        '--ttl',
        '5 weeks',
      ],
      ['request', '--task', '0190a0a0-0000-7000-8000-000000000000', '--env', 'dev', '--role', 'token/demo'],
      ['request', '--env', 'dev', '--role', 'token/demo', '--justification', 'x'.repeat(1025)],
      ['admin', 'revoke', '--reason', 'x'],
    ]);
    usageFailed(unknown, /unknown flag '--bogus'/);
    usageFailed(missing, /svid-broker task end: missing TASK_ID/);
    usageFailed(noRole, /--role is required/);
    usageFailed(negative, /--ttl: must not be negative \(got -5\)/);
    assert.doesNotMatch(negative.stderr, /ambiguous/);
    usageFailed(badUnit, /--ttl: expected a duration like 90, 90s, 15m, 2h or 1d/);
    usageFailed(both, /--task and --env cannot be combined/);
    usageFailed(long, /--justification: at most 1024 characters/);
    usageFailed(noSelector, /name at least one selector: --lease, --agent/);
    // Refused before BeginTask: no task was begun for it.
    assert.equal(
      (await readAudit(h.auditFile)).filter((r) => r.type === 'task.begun' && r.agent === DEMO_AGENT).length,
      0,
    );
  });

  it('connection errors say what to check', async () => {
    const httpAddress = h.httpBase.replace(/^http:\/\//, '');
    const [noBroker, noSocket, notTls] = await Promise.all([
      as('demo', ['request', '--env', 'dev', '--role', 'token/demo'], { SVID_BROKER_ADDR: '127.0.0.1:1' }),
      as('demo', ['request', '--env', 'dev', '--role', 'token/demo'], {
        SPIFFE_ENDPOINT_SOCKET: 'unix:///nonexistent/agent.sock',
      }),
      as('demo', ['admin', 'leases'], { SVID_BROKER_ADDR: httpAddress }),
    ]);
    failedWith(
      noBroker,
      /^svid-broker: no broker at 127\.0\.0\.1:1: is it running\? \(set SVID_BROKER_ADDR\)$/m,
    );
    failedWith(
      noSocket,
      /no Workload API socket at \/nonexistent\/agent\.sock: is the SPIRE agent \(or svid-broker dev\) running\?/,
    );
    failedWith(notTls, new RegExp(`${httpAddress} does not speak TLS`));
  });

  it('a failed request ends the task it began and names it; errors use flags and plain words', async () => {
    const unknownRole = await as('demo', ['request', '--env', 'dev', '--role', 'token/nope']);
    failedWith(unknownRole, /--role: unknown role "token\/nope" \(task ([0-9a-f-]{36}) ended\)/);
    const taskId = /\(task ([0-9a-f-]{36}) ended\)/.exec(unknownRole.stderr)?.[1] as string;
    const audit = await readAudit(h.auditFile);
    assert.ok(audit.some((r) => r.type === 'task.begun' && r.task === taskId));
    assert.ok(
      audit.some((r) => r.type === 'task.ended' && r.task === taskId),
      'the begun task is paired with task.ended',
    );

    const tooLong = await as('other', [
      'request',
      '--env',
      'dev',
      '--role',
      'token/logs-read',
      '--ttl',
      '15m',
    ]);
    failedWith(
      tooLong,
      /no policy permits this request \(default deny\); requested ttl \d+ s; permit "other-logs-short" allows at most 600 s \(task [0-9a-f-]{36} ended\)/,
    );
    const ok = await as('other', ['request', '--env', 'dev', '--role', 'token/logs-read', '--ttl', '10m']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { ttl_seconds: number }).ttl_seconds, 600);

    const [noApproval, reviewNone] = await Promise.all([
      as('security', ['approvals', 'approve', 'no-such-id', '--reason', 'x']),
      as('security', ['breakglass', 'review', 'no-such-grant', '--note', 'x']),
    ]);
    failedWith(noApproval, /^svid-broker: no approval no-such-id$/m);
    failedWith(reviewNone, /^svid-broker: no break-glass grant no-such-grant$/m);
  });

  it('oversized input is refused by validation, naming the field, and audited', async () => {
    const demo = await h.client('demo');
    const task = await demo.beginTask({ environment: 'dev', intent: 'oversized' });
    const err = (await demo
      .issueCredential({ task_id: task.task_id, role: 'token/demo', justification: 'x'.repeat(200_000) })
      .then(
        () => assert.fail('issued'),
        (e: unknown) => e,
      )) as { code: number; details: string; metadata: { get(k: string): unknown[] } };
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(err.details, 'justification: at most 1024 characters');
    assert.deepEqual(err.metadata.get('x-svid-broker-field'), ['justification']);
    const denied = await eventually(async () =>
      (await readAudit(h.auditFile)).find((r) => r.type === 'credential.denied' && r.task === task.task_id),
    );
    assert.match(JSON.stringify(denied), /justification/);
  });

  it('durations, --state any and ISO times in --json; the revoke table agrees with its summary', async () => {
    const issued = await as('demo', ['request', '--env', 'dev', '--role', 'token/demo', '--ttl', '5m']);
    assert.equal(issued.code, 0, issued.stderr);
    const lease = JSON.parse(issued.stdout) as {
      lease_id: string;
      ttl_seconds: number;
      task: { task_id: string };
    };
    assert.equal(lease.ttl_seconds, 300);

    const grant = await as('security', [
      'breakglass',
      'grant',
      '--agent',
      OTHER_AGENT,
      '--role',
      'token/logs-read',
      '--reason',
      'drill',
      '--ttl',
      '10m',
      '--json',
    ]);
    assert.equal(grant.code, 0, grant.stderr);
    const g = JSON.parse(grant.stdout) as { created_at: string; expires_at: string };
    assert.equal(Date.parse(g.expires_at) - Date.parse(g.created_at), 600_000);

    const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    const [bare, json, one, approvals] = await Promise.all([
      as('security', ['admin', 'leases']),
      as('security', ['admin', 'leases', '--json']),
      as('security', ['admin', 'lease', lease.lease_id, '--json']),
      as('security', ['approvals', 'list', '--state', 'any', '--json']),
    ]);
    assert.equal(bare.code, 0, bare.stderr);
    assert.match(bare.stdout, new RegExp(`${lease.lease_id}\\s+active`));
    const listed = JSON.parse(json.stdout) as {
      leases: Array<{ lease_id: string; expires_at: unknown; issued_at: unknown }>;
    };
    const mine = listed.leases.find((l) => l.lease_id === lease.lease_id);
    assert.match(String(mine?.expires_at), ISO);
    assert.match(String(mine?.issued_at), ISO);
    assert.match((JSON.parse(one.stdout) as { expires_at: string }).expires_at, ISO);
    assert.equal(approvals.code, 0, approvals.stderr);
    assert.ok(Array.isArray(JSON.parse(approvals.stdout)));

    const revoked = await as('security', [
      'admin',
      'revoke',
      '--task',
      lease.task.task_id,
      '--reason',
      'drill',
    ]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`${lease.lease_id}\\s+revoked\\s`));
    assert.doesNotMatch(revoked.stdout, /\srevoking\s/);
    assert.match(revoked.stdout, /matched 1: revoked 1 at the backend/);
    const after = await h.broker.store.getLease(lease.lease_id);
    assert.equal(after?.state, 'revoked');
  });

  it('audit verify on a broken chain says what to do, with the last good hash', async () => {
    const lines = readFileSync(h.auditFile, 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 3);
    const broken = join(h.dir, 'broken.jsonl');
    const idx = 2;
    lines[idx] = (lines[idx] as string).replace('"agent":"', '"agent":"x');
    writeFileSync(broken, `${lines.join('\n')}\n`);
    const res = await runCli(['audit', 'verify', broken]);
    assert.equal(res.code, 1);
    const lastGood = (JSON.parse(lines[idx - 1] as string) as { hash: string }).hash;
    assert.match(res.stderr, new RegExp(`BROKEN at line ${idx + 1}\\b`));
    assert.match(res.stderr, /keep this file as evidence, unchanged: cp -p /);
    assert.match(res.stderr, new RegExp(`the last good record is line ${idx}, hash ${lastGood}`));
    assert.match(res.stderr, /start a new trail: stop the broker, move the file aside/);
  });
});
