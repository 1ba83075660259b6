import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { verifyAccessToken } from '../../src/credentials/token/verify-access-token.js';
import { BROKER_ID, DEMO_AGENT, readAudit, startHarness, type Harness } from '../support/broker-harness.js';
import { STACK_TRACE, runCli, type CliResult } from '../support/run-cli.js';

interface RequestOutput {
  task: { task_id: string; agent: string; environment: string; state: string; expires_at: string };
  lease_id: string;
  role: string;
  environment: string;
  expires_at: string;
  ttl_seconds: number;
  policy_ids: string[];
  credential: { kind: string; token: string; metadata: Record<string, string> };
}

describe('integration: CLI', function () {
  // Each step is a CLI process loading the whole CLI; on a loaded machine that takes a while.
  this.timeout(60_000);
  let h: Harness;

  let impostor: Harness;

  const cli = (args: string[], target: Harness = h): Promise<CliResult> =>
    runCli(args, { SPIFFE_ENDPOINT_SOCKET: target.endpoints.demo, SVID_BROKER_ADDR: target.address });

  const verify = async (token: string): Promise<Awaited<ReturnType<typeof verifyAccessToken>>> => {
    const jwks = (await h.httpJson('/.well-known/jwks.json')).body as JSONWebKeySet;
    return verifyAccessToken(token, { jwks, issuer: BROKER_ID, audience: 'demo-api' });
  };

  const parseRequest = (res: CliResult): RequestOutput => {
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as RequestOutput;
  };

  before(async () => {
    [h, impostor] = await Promise.all([
      startHarness(),
      // A server of the same trust domain that is not spiffe://example.org/broker.
      startHarness({ workloads: { broker: { spiffeId: 'spiffe://example.org/agents/impostor' } } }),
    ]);
  });
  after(async () => {
    await h?.close();
    await impostor?.close();
  });

  it('request (mTLS and JWT-SVID), a denied request, usage, then task end and audit verify', async () => {
    const [x509, jwt, denied, usage, toImpostor] = await Promise.all([
      cli(['request', '--env', 'dev', '--role', 'token/demo', '--intent', 'cli test']),
      cli(['request', '--env', 'dev', '--role', 'token/demo', '--auth', 'jwt']),
      // token/demo is restricted to dev: the shipped forbid denies it in staging.
      cli(['request', '--env', 'staging', '--role', 'token/demo']),
      cli([]),
      // Without SVID_BROKER_ID the CLI expects spiffe://<own td>/broker: no JWT-SVID goes elsewhere.
      cli(['request', '--env', 'dev', '--role', 'token/demo', '--auth', 'jwt'], impostor),
    ]);

    assert.equal(toImpostor.code, 1);
    assert.equal(toImpostor.stdout, '');
    assert.match(
      toImpostor.stderr,
      /is spiffe:\/\/example\.org\/agents\/impostor, not the broker spiffe:\/\/example\.org\/broker: check SVID_BROKER_ADDR/,
    );
    assert.doesNotMatch(toImpostor.stderr, STACK_TRACE);
    assert.deepEqual(await readAudit(impostor.auditFile), [], 'a request reached the impostor');

    // request over mTLS
    const out = parseRequest(x509);
    assert.equal(out.task.agent, DEMO_AGENT);
    assert.equal(out.task.environment, 'dev');
    assert.equal(out.task.state, 'active');
    assert.match(out.task.task_id, /^[0-9a-f-]{36}$/);
    assert.equal(out.role, 'token/demo');
    // The default task TTL (900 s) started a moment earlier bounds it.
    assert.ok(out.ttl_seconds >= 899 && out.ttl_seconds <= 900, String(out.ttl_seconds));
    assert.deepEqual(out.policy_ids, ['demo-agent-token-demo-dev']);
    assert.equal(out.credential.kind, 'jwt');
    const { claims } = await verify(out.credential.token);
    assert.equal(claims.jti, out.lease_id);
    assert.equal(claims.task, out.task.task_id);
    assert.equal(claims.sub, DEMO_AGENT);
    assert.equal(new Date(out.expires_at).getTime(), claims.exp * 1000);
    assert.ok(Date.parse(out.task.expires_at) >= claims.exp * 1000);
    assert.equal((await h.broker.store.getLease(out.lease_id))?.state, 'active');
    const begun = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'task.begun' && r.task === out.task.task_id,
    );
    assert.equal(begun?.intent, 'cli test');
    assert.equal(begun?.auth_method, 'x509');

    // request with a JWT-SVID
    const outJwt = parseRequest(jwt);
    assert.equal((await verify(outJwt.credential.token)).claims.sub, DEMO_AGENT);
    const issuedJwt = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'credential.issued' && r.lease === outJwt.lease_id,
    );
    assert.equal(issuedJwt?.auth_method, 'jwt');

    // denied: exit 1, one line, no stack
    assert.equal(denied.code, 1);
    assert.equal(denied.stdout, '');
    const lines = denied.stderr.trim().split('\n');
    assert.equal(lines.length, 1, denied.stderr);
    assert.match(
      lines[0] as string,
      /^svid-broker: .*denied by policy "forbid-role-outside-its-environments"/,
    );
    assert.doesNotMatch(denied.stderr, STACK_TRACE);

    // no arguments: usage on stdout, exit 2
    assert.equal(usage.code, 2);
    assert.match(usage.stdout, /^usage: svid-broker <command>/);
    assert.match(usage.stdout, /task end TASK_ID/);

    // task end
    const ended = await cli(['task', 'end', out.task.task_id, '--reason', 'cli done']);
    assert.equal(ended.code, 0, ended.stderr);
    const endOut = JSON.parse(ended.stdout) as { task_id: string; state: string; revoked: unknown[] };
    assert.equal(endOut.task_id, out.task.task_id);
    assert.equal(endOut.state, 'ended');
    assert.deepEqual(endOut.revoked, [{ lease_id: out.lease_id, role: 'token/demo', state: 'revoked' }]);
    assert.match(ended.stderr, /revoked 1 lease\(s\)/);
    assert.equal((await h.broker.store.getLease(out.lease_id))?.state, 'revoked');
    const taskEnded = (await readAudit(h.auditFile)).find(
      (r) => r.type === 'task.ended' && r.task === out.task.task_id,
    );
    assert.equal(taskEnded?.reason, 'cli done');

    // audit verify: intact, then a tampered copy
    const records = await readAudit(h.auditFile);
    const tampered = join(h.dir, 'tampered.jsonl');
    const text = readFileSync(h.auditFile, 'utf8').split('\n');
    const idx = text.findIndex((l) => l.includes('"type":"credential.issued"'));
    assert.ok(idx > 0, 'a credential.issued record to tamper with');
    text[idx] = (text[idx] as string).replace('"environment":"dev"', '"environment":"prod"');
    assert.ok(text[idx]?.includes('"environment":"prod"'));
    writeFileSync(tampered, text.join('\n'));
    const [good, bad] = await Promise.all([
      cli(['audit', 'verify', h.auditFile]),
      cli(['audit', 'verify', tampered]),
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, new RegExp(`^ok: ${records.length} records, chain intact`));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`BROKEN at line ${idx + 1}\\b`));
    assert.match(bad.stderr, new RegExp(`\\(${idx} valid records before it\\)`));
    assert.doesNotMatch(bad.stderr, STACK_TRACE);
  });
});
