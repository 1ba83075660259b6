/**
 * The console in a real browser: headless Chromium (Debian's package, driven by playwright-core)
 * signs in at the test IdP, approves a pending request, and the agent waiting on it gets its
 * credential; then every page is opened, and the live audit view shows a record as it is
 * written. A screenshot of each page is kept under test-artifacts/console/.
 */
import { strict as assert } from 'node:assert';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { BrokerClient } from '../../src/client/broker-client.js';
import { packageRoot } from '../../src/package-root.js';
import { readAudit } from '../support/broker-harness.js';
import { findOrInstallChromium } from '../support/chromium.js';
import { startConsoleHarness, type ConsoleHarness } from '../support/console-harness.js';

const ARTIFACTS = join(packageRoot(), 'test-artifacts', 'console');

describe('integration: the web console in headless Chromium', function () {
  this.timeout(120_000);
  let c: ConsoleHarness;
  let demo: BrokerClient;
  let browser: Browser;
  let page: Page;

  before(async () => {
    const executablePath = findOrInstallChromium();
    mkdirSync(ARTIFACTS, { recursive: true });
    c = await startConsoleHarness();
    demo = await c.h.client('demo');
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
    // The console's certificate comes from a test CA Chromium does not know.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    page = await context.newPage();
  });
  after(async () => {
    await browser?.close();
    await c?.close();
  });

  const shot = (name: string): Promise<Buffer> =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  it('signs in at the IdP, approves the pending request, and the waiting agent gets its credential', async () => {
    const task = await demo.beginTask({ environment: 'prod', intent: 'deploy the release' });
    const pending = await demo.issueCredential({
      task_id: task.task_id,
      role: 'token/deploy',
      change_type: 'destructive',
      justification: 'roll out v2 <b>now</b>',
    });
    assert.equal(pending.status, 'PENDING_APPROVAL');
    const waiting = demo.awaitApproval(pending.approval_id);

    await page.goto(`${c.base}/approvals`);
    await page.waitForSelector('#login');
    await shot('01-idp-sign-in');
    await page.fill('#login', 'alice');
    await Promise.all([page.waitForURL(`${c.base}/approvals`), page.click('#sign-in')]);
    await shot('02-approvals');

    await page.click(`a[href="/approvals/${pending.approval_id}"]`);
    await page.waitForSelector('textarea[name=reason]');
    assert.equal(await page.textContent('pre.justification'), 'roll out v2 <b>now</b>');
    await shot('03-approval');
    await page.fill('textarea[name=reason]', 'release window, checked the diff');
    await page.check('input[name=decision][value=approve]');
    await Promise.all([page.waitForLoadState('load'), page.click('button:has-text("Submit decision")')]);
    // The waiting agent may already have spent it: approved, or consumed by the issuance.
    assert.match((await page.textContent('dl.request')) ?? '', /state\s*(approved|consumed)/);
    await shot('04-approved');

    const issued = await waiting;
    assert.equal(issued.status, 'ISSUED');
    assert.ok(issued.credential?.token);
  });

  it('opens every page', async () => {
    for (const [name, path] of [
      ['05-leases', '/leases'],
      ['06-tasks', '/tasks'],
      ['07-quarantines', '/quarantines'],
      ['08-revoke', '/revoke'],
      ['09-break-glass', '/break-glass'],
    ] as const) {
      const res = await page.goto(`${c.base}${path}`);
      assert.equal(res?.status(), 200, path);
      await shot(name);
    }
  });

  it('the live audit view shows records as they are written', async () => {
    await page.goto(`${c.base}/audit`);
    await page.waitForSelector('#audit-status:has-text("Live")');
    await demo.beginTask({ environment: 'dev', intent: 'watch me' });
    await page.waitForSelector('#audit-events li:has-text("task.begun")');
    await shot('10-audit');
    const records = await readAudit(c.h.auditFile);
    assert.ok(records.some((r) => r.type === 'admin.read' && r.method === 'ConsoleAuditStream'));
  });
});
