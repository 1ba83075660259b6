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
      const keys = await redis.keys(`${c.h.redisPrefix}:console:session:*`);
      assert.ok(keys.length >= 1);
      assert.ok(
        keys.every((k) => !k.includes(id)),
        'the store never holds the cookie value',
      );
    } finally {
      redis.disconnect();
    }
  });
});

function redisUrlOf(c: ConsoleHarness): string {
  return c.h.configFor('x', 'y').redis.url;
}
