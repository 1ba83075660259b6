/**
 * The web console against a real OpenID provider (oidc-provider, in-process): sign-in with PKCE,
 * server-side sessions in Redis behind a __Host- cookie, CSRF refusal, step-up, people as Cedar
 * principals, the owner rule, distinct humans for @approvals, and every action audited as the
 * person who took it.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { createRedisClient } from '../../src/redis/connect.js';
import { DEMO_AGENT, readAudit } from '../support/broker-harness.js';
import { ConsoleClient, csrfOf, type Response } from '../support/console-client.js';
import { PEOPLE, startConsoleHarness, type ConsoleHarness } from '../support/console-harness.js';

describe('integration: web console with OpenID Connect sign-in', function () {
  this.timeout(60_000);
  let c: ConsoleHarness;
  let demo: BrokerClient;

  before(async () => {
    c = await startConsoleHarness();
    demo = await c.h.client('demo');
  });
  after(async () => {
    await c?.close();
  });

  const browser = (): ConsoleClient => new ConsoleClient(c.caPem);
  const sessionCookie = (b: ConsoleClient): string | undefined => b.cookie(c.base, '__Host-svb_session');

  /** A pending prod request of the demo agent: token/deploy, destructive (needs one approval). */
  const pendingDeploy = async (
    justification = 'roll out v2',
    role = 'token/deploy',
  ): Promise<{ id: string; taskId: string }> => {
    const task = await demo.beginTask({ environment: 'prod', intent: 'deploy the release' });
    const res = await demo.issueCredential({
      task_id: task.task_id,
      role,
      change_type: 'destructive',
      justification,
    });
    assert.equal(res.status, 'PENDING_APPROVAL');
    return { id: res.approval_id, taskId: task.task_id };
  };

  const decide = (
    b: ConsoleClient,
    id: string,
    page: Response,
    decision: 'approve' | 'deny',
    reason: string,
  ) =>
    b.navigate(`${c.base}/approvals/${id}/decide`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body), decision, reason },
    });

  it('a page without a session sends the person to the IdP; signing in opens a session bound to a __Host- cookie', async () => {
    const b = browser();
    const first = await b.send(`${c.base}/approvals`);
    assert.equal(first.status, 303);
    assert.match(String(first.headers.location), /^\/auth\/login\?return_to=%2Fapprovals$/);

    const start = await b.send(`${c.base}/auth/login?return_to=%2Fleases`);
    const authorize = new URL(String(start.headers.location));
    assert.equal(authorize.origin, c.idp.issuer);
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorize.searchParams.get('code_challenge'));
    assert.ok(authorize.searchParams.get('state'));
    assert.ok(authorize.searchParams.get('nonce'));

    const landed = await b.signIn(c.base, 'alice', { path: '/leases' });
    assert.equal(landed.status, 200, landed.body.slice(0, 300));
    assert.equal(new URL(landed.url).pathname, '/leases');
    assert.match(landed.body, /alice@example\.org/);

    const id = sessionCookie(b);
    assert.ok(id && id.length >= 43, 'a 256-bit session id');
    const signedIn = (await readAudit(c.h.auditFile)).filter((r) => r.type === 'human.signed_in');
    assert.deepEqual(signedIn.at(-1)?.actor, { type: 'human', sub: 'alice', email: 'alice@example.org' });
    assert.deepEqual(signedIn.at(-1)?.groups, ['security']);
  });

  it('the session cookie is Secure, HttpOnly, SameSite=Strict; the session lives in Redis under a hash of its id', async () => {
    const b = browser();
    const start = await b.navigate(`${c.base}/auth/login`);
    const action = /action="([^"]+)"/.exec(start.body)?.[1] as string;
    // Walk the last hops by hand to see the callback's Set-Cookie.
    let res = await b.send(new URL(action, start.url).href, {
      method: 'POST',
      form: { login: 'bob', age: '0' },
    });
    while (res.status === 303 && !new URL(String(res.headers.location), res.url).href.startsWith(c.base)) {
      res = await b.send(new URL(String(res.headers.location), res.url).href);
    }
    const callback = await b.send(new URL(String(res.headers.location), res.url).href);
    assert.equal(callback.status, 200);
    const cookies = ([] as string[]).concat(callback.headers['set-cookie'] ?? []);
    const session = cookies.find((l) => l.startsWith('__Host-svb_session='));
    assert.ok(session, cookies.join(' | '));
    for (const attr of ['Secure', 'HttpOnly', 'SameSite=Strict', 'Path=/'])
      assert.ok(session.includes(attr), attr);
    assert.ok(!/Domain=/i.test(session));

    const id = sessionCookie(b) as string;
    const redis = createRedisClient(redisUrlOf(c));
    try {
      const keys = await redis.keys(`{${c.h.redisPrefix}}:console:session:*`);
      assert.ok(keys.length >= 1);
      assert.ok(
        keys.every((k) => !k.includes(id)),
        'the store never holds the cookie value',
      );
    } finally {
      redis.disconnect();
    }
  });

  it('approves a pending request as the person: audited with actor, and the agent then gets its credential', async () => {
    const { id } = await pendingDeploy('roll out v2 <script>alert(1)</script>');
    const b = browser();
    const page = await b.signIn(c.base, 'alice', { path: `/approvals/${id}` });
    assert.equal(page.status, 200);
    // The justification is text, never HTML.
    assert.ok(page.body.includes('roll out v2 &lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(!page.body.includes('<script>alert(1)'));
    for (const shown of [
      DEMO_AGENT,
      'token/deploy',
      'prod',
      'destructive',
      'prod-destructive-needs-approval',
    ]) {
      assert.ok(page.body.includes(shown), shown);
    }

    const after = await decide(b, id, page, 'approve', 'release window INC-7');
    assert.equal(after.status, 200, after.body.slice(0, 400));
    assert.match(after.body, /approved/);
    const approved = (await readAudit(c.h.auditFile)).filter(
      (r) => r.type === 'approval.approved' && r.approval === id,
    );
    assert.equal(approved.length, 1);
    assert.deepEqual(approved[0]?.actor, { type: 'human', sub: 'alice', email: 'alice@example.org' });
    assert.equal(approved[0]?.agent, 'human:alice');

    const issued = await demo.awaitApproval(id);
    assert.equal(issued.status, 'ISSUED');
    assert.ok(issued.credential);
  });

  it('refuses a POST without the session CSRF token, and one without a session', async () => {
    const { id } = await pendingDeploy();
    const b = browser();
    const page = await b.signIn(c.base, 'alice', { path: `/approvals/${id}` });
    const forged = await b.send(`${c.base}/approvals/${id}/decide`, {
      method: 'POST',
      form: { _csrf: 'x'.repeat(43), decision: 'approve', reason: 'forged' },
    });
    assert.equal(forged.status, 403);
    assert.match(forged.body, /CSRF/);
    const missing = await b.send(`${c.base}/approvals/${id}/decide`, {
      method: 'POST',
      form: { decision: 'approve', reason: 'forged' },
    });
    assert.equal(missing.status, 403);
    const anonymous = await browser().send(`${c.base}/approvals/${id}/decide`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body), decision: 'approve', reason: 'forged' },
    });
    assert.equal(anonymous.status, 401);

    const audit = await readAudit(c.h.auditFile);
    assert.equal(audit.filter((r) => r.type === 'approval.approved' && r.approval === id).length, 0);
    const refused = audit.filter((r) => r.type === 'admin.denied' && r.reason === 'csrf_token_invalid');
    assert.ok(refused.length >= 2);
    assert.deepEqual(refused.at(-1)?.actor, { type: 'human', sub: 'alice', email: 'alice@example.org' });
  });

  it('a stale sign-in must step up (max_age=0) before approving a production-destructive request', async () => {
    const { id } = await pendingDeploy();
    const b = browser();
    // alice authenticated at the IdP ten minutes ago (an SSO session the console sign-in reused).
    const page = await b.signIn(c.base, 'alice', { path: `/approvals/${id}`, age: 600 });
    const refused = await b.send(`${c.base}/approvals/${id}/decide`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body), decision: 'approve', reason: 'ok' },
    });
    assert.equal(refused.status, 303);
    assert.equal(
      refused.headers.location,
      `/auth/login?step_up=1&return_to=${encodeURIComponent(`/approvals/${id}`)}`,
    );
    const toIdp = await b.send(new URL(String(refused.headers.location), c.base).href);
    assert.equal(new URL(String(toIdp.headers.location)).searchParams.get('max_age'), '0');
    let audit = await readAudit(c.h.auditFile);
    assert.equal(audit.filter((r) => r.type === 'approval.approved' && r.approval === id).length, 0);

    // The IdP asks for the password again (its own session is not enough), then back to the request.
    const logins = c.idp.logins.get('alice') ?? 0;
    const form = await b.navigate(new URL(String(toIdp.headers.location)).href);
    const back = await b.logIn(form, 'alice', 0);
    assert.equal(c.idp.logins.get('alice'), logins + 1);
    assert.equal(new URL(back.url).pathname, `/approvals/${id}`);
    const done = await decide(b, id, back, 'approve', 'ok after step-up');
    assert.equal(done.status, 200, done.body.slice(0, 300));
    audit = await readAudit(c.h.auditFile);
    assert.equal(audit.filter((r) => r.type === 'approval.approved' && r.approval === id).length, 1);
    const stepUp = audit.filter((r) => r.type === 'human.signed_in' && r.step_up === true);
    assert.ok(stepUp.length >= 1);
  });

  it("the agent's owner (catalog `owner`) cannot approve its request; another person can", async () => {
    const { id } = await pendingDeploy();
    const carol = browser();
    const page = await carol.signIn(c.base, 'carol', { path: `/approvals/${id}` });
    const refused = await decide(carol, id, page, 'approve', 'my own agent');
    assert.equal(refused.status, 403);
    assert.match(refused.body, /owner cannot approve/);
    const audit = await readAudit(c.h.auditFile);
    const record = audit.find((r) => r.type === 'approval.decision_refused' && r.approval === id);
    assert.equal(record?.refusal, 'owner_approval');
    assert.deepEqual(record?.actor, { type: 'human', sub: 'carol', email: PEOPLE.carol.email });

    const bob = browser();
    const bobPage = await bob.signIn(c.base, 'bob', { path: `/approvals/${id}` });
    assert.equal((await decide(bob, id, bobPage, 'approve', 'reviewed')).status, 200);
  });

  it('people are Cedar principals: outside HumanGroup "security" they decide nothing and read nothing', async () => {
    const { id } = await pendingDeploy();
    const dave = browser();
    const list = await dave.signIn(c.base, 'dave', { path: '/approvals' });
    assert.equal(list.status, 200);
    assert.ok(!list.body.includes(id), 'requests dave may not decide are not listed');
    const detail = await dave.navigate(`${c.base}/approvals/${id}`);
    assert.equal(detail.status, 404);
    const leases = await dave.navigate(`${c.base}/leases`);
    assert.equal(leases.status, 403);
    const audit = await readAudit(c.h.auditFile);
    const denied = audit.filter((r) => r.type === 'admin.denied' && r.agent === 'human:dave');
    assert.ok(denied.length >= 1);
  });

  it("an approver without ListLeases sees the request, and why the task's leases are not shown", async () => {
    const { id } = await pendingDeploy();
    const erin = browser();
    const page = await erin.signIn(c.base, 'erin', { path: `/approvals/${id}` });
    assert.equal(page.status, 200);
    assert.match(page.body, /Not shown: policy does not allow you ListLeases/);
    assert.equal((await decide(erin, id, page, 'approve', 'looks right')).status, 200);
  });

  it('@approvals counts distinct people: the same person twice is refused, a second person completes it', async () => {
    const { id } = await pendingDeploy('rotate the admin key', 'token/admin');
    const alice = browser();
    const page = await alice.signIn(c.base, 'alice', { path: `/approvals/${id}` });
    assert.match(page.body, /0 of 2/);
    assert.equal((await decide(alice, id, page, 'approve', 'first')).status, 200);
    const again = await alice.navigate(`${c.base}/approvals/${id}`);
    const twice = await decide(alice, id, again, 'approve', 'second time');
    assert.equal(twice.status, 409);
    const bob = browser();
    const bobPage = await bob.signIn(c.base, 'bob', { path: `/approvals/${id}` });
    assert.match(bobPage.body, /1 of 2/);
    assert.equal((await decide(bob, id, bobPage, 'approve', 'second')).status, 200);
    const issued = await demo.awaitApproval(id);
    assert.equal(issued.status, 'ISSUED');
  });

  it('revoke by selector: a dry run first, then the confirmed revocation, both audited as the person', async () => {
    const task = await demo.beginTask({ environment: 'dev', intent: 'logs' });
    await demo.issueCredential({ task_id: task.task_id, role: 'token/demo' });
    const b = browser();
    const form = await b.signIn(c.base, 'alice', { path: '/revoke' });
    const dry = await b.navigate(`${c.base}/revoke`, {
      method: 'POST',
      form: { _csrf: csrfOf(form.body), task: task.task_id, reason: 'suspicious' },
    });
    assert.equal(dry.status, 200);
    assert.match(dry.body, /Dry run: 1 active lease/);
    const listed = await b.navigate(`${c.base}/leases?task=${task.task_id}`);
    assert.match(listed.body, /<td>active<\/td>/);
    const done = await b.navigate(`${c.base}/revoke`, {
      method: 'POST',
      form: { _csrf: csrfOf(dry.body), task: task.task_id, reason: 'suspicious', confirm: '1' },
    });
    assert.equal(done.status, 200);
    const after = await b.navigate(`${c.base}/leases?task=${task.task_id}&state=any`);
    assert.match(after.body, /<td>revoked<\/td>/);
    const audit = await readAudit(c.h.auditFile);
    const runs = audit.filter((r) => r.type === 'admin.revoke_dry_run' || r.type === 'admin.revoke');
    assert.deepEqual(
      runs.slice(-2).map((r) => [r.type, (r.actor as { sub: string } | undefined)?.sub]),
      [
        ['admin.revoke_dry_run', 'alice'],
        ['admin.revoke', 'alice'],
      ],
    );
  });

  it('signing out deletes the session: the old cookie opens nothing', async () => {
    const b = browser();
    const page = await b.signIn(c.base, 'bob');
    const id = sessionCookie(b) as string;
    const out = await b.navigate(`${c.base}/auth/logout`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body) },
    });
    assert.equal(out.status, 200);
    const replay = browser();
    replay.setCookie(c.base, '__Host-svb_session', id);
    const res = await replay.send(`${c.base}/approvals`);
    assert.equal(res.status, 303);
    assert.match(String(res.headers.location), /^\/auth\/login/);
    const signedOut = (await readAudit(c.h.auditFile)).filter((r) => r.type === 'human.signed_out');
    assert.ok(signedOut.length >= 1, 'human.signed_out recorded');
    assert.deepEqual((signedOut.at(-1)?.actor as { type: string }).type, 'human');
  });

  it('a callback that this browser did not start, or replays a state, is refused', async () => {
    const b = browser();
    const start = await b.send(`${c.base}/auth/login`);
    const state = new URL(String(start.headers.location)).searchParams.get('state') as string;
    const other = browser();
    const res = await other.send(`${c.base}/auth/callback?code=abc&state=${state}`);
    assert.equal(res.status, 401);
    const replay = await b.send(`${c.base}/auth/callback?code=abc&state=${state}`);
    assert.equal(replay.status, 401, 'the state was spent by the first attempt');
    const failed = (await readAudit(c.h.auditFile)).filter((r) => r.type === 'human.sign_in_failed');
    assert.ok(failed.length >= 2, 'both refusals recorded as human.sign_in_failed');
    assert.equal(failed.at(-1)?.reason, 'unknown_state');
    assert.equal(failed.at(-1)?.agent, '');
  });

  it('no session id, client secret or code verifier reaches the logs or the audit trail', async () => {
    const b = browser();
    await b.signIn(c.base, 'alice');
    const id = sessionCookie(b) as string;
    const logs = c.h.logs.text();
    const audit = readFileSync(c.h.auditFile, 'utf8');
    for (const secret of [id, c.idp.clientSecret]) {
      assert.ok(!logs.includes(secret), 'not in the logs');
      assert.ok(!audit.includes(secret), 'not in the audit trail');
    }
  });

  it('break-glass: granting needs a fresh sign-in; granted and reviewed as people, each audited with its actor', async () => {
    const alice = browser();
    const stale = await alice.signIn(c.base, 'alice', { path: '/break-glass', age: 600 });
    const grant = {
      agent: DEMO_AGENT,
      roles: 'token/deploy',
      reason: 'INC-9: prod is down',
      ttl_seconds: '600',
    };
    const refused = await alice.send(`${c.base}/break-glass`, {
      method: 'POST',
      form: { _csrf: csrfOf(stale.body), ...grant },
    });
    assert.equal(refused.status, 303);
    assert.match(String(refused.headers.location), /^\/auth\/login\?step_up=1&return_to=%2Fbreak-glass$/);
    const form = await alice.navigate(new URL(String(refused.headers.location), c.base).href);
    const fresh = await alice.logIn(form, 'alice', 0);
    const granted = await alice.navigate(`${c.base}/break-glass`, {
      method: 'POST',
      form: { _csrf: csrfOf(fresh.body), ...grant },
    });
    assert.equal(granted.status, 200);
    assert.match(granted.body, /INC-9: prod is down/);
    let audit = await readAudit(c.h.auditFile);
    const record = audit.filter((r) => r.type === 'breakglass.granted').at(-1);
    assert.equal(record?.agent, 'human:alice');
    assert.deepEqual(record?.actor, { type: 'human', sub: 'alice', email: 'alice@example.org' });

    // The grantor cannot review it; another person can.
    const grantId = String(record?.grant);
    const self = await alice.navigate(`${c.base}/break-glass/${grantId}/review`, {
      method: 'POST',
      form: { _csrf: csrfOf(granted.body), note: 'fine' },
    });
    assert.equal(self.status, 403);
    const bob = browser();
    const page = await bob.signIn(c.base, 'bob', { path: '/break-glass' });
    const reviewed = await bob.navigate(`${c.base}/break-glass/${grantId}/review`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body), note: 'used once, as declared' },
    });
    assert.equal(reviewed.status, 200);
    audit = await readAudit(c.h.auditFile);
    const review = audit.find((r) => r.type === 'breakglass.reviewed' && r.grant === grantId);
    assert.equal((review?.actor as { sub: string } | undefined)?.sub, 'bob');
  });

  it('quarantines and releases an agent from the console', async () => {
    const b = browser();
    const page = await b.signIn(c.base, 'alice', { path: '/quarantines' });
    const set = await b.navigate(`${c.base}/quarantines`, {
      method: 'POST',
      form: {
        _csrf: csrfOf(page.body),
        agent: 'spiffe://example.org/agents/other',
        reason: 'odd tool calls',
        ttl_seconds: '0',
        revoke_active: '1',
      },
    });
    assert.equal(set.status, 200);
    assert.match(set.body, /odd tool calls/);
    const released = await b.navigate(`${c.base}/quarantines/release`, {
      method: 'POST',
      form: { _csrf: csrfOf(set.body), agent: 'spiffe://example.org/agents/other', reason: 'explained' },
    });
    assert.equal(released.status, 200);
    assert.ok(!released.body.includes('odd tool calls'));
    const audit = await readAudit(c.h.auditFile);
    for (const type of ['quarantine.set', 'quarantine.released']) {
      const r = audit.filter((x) => x.type === type).at(-1);
      assert.equal((r?.actor as { sub: string } | undefined)?.sub, 'alice', type);
    }
  });

  it('bad input gets a clear refusal naming the field, never a stack trace', async () => {
    const b = browser();
    const page = await b.signIn(c.base, 'alice', { path: '/quarantines' });
    const res = await b.navigate(`${c.base}/quarantines`, {
      method: 'POST',
      form: { _csrf: csrfOf(page.body), agent: 'not-a-spiffe-id', reason: 'x', ttl_seconds: '0' },
    });
    assert.equal(res.status, 400);
    assert.match(res.body, /agent: must be a SPIFFE ID/);
    assert.ok(!/at [A-Za-z.]+ \(/.test(res.body), 'no stack trace');
  });
});

function redisUrlOf(c: ConsoleHarness): string {
  return c.h.configFor('x', 'y').redis.url;
}
