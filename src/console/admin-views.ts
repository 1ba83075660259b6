/**
 * Quarantine and release, revoke by selector (a dry run first, then the same selector confirmed),
 * break-glass grant and review: each through the same use case as its gRPC admin call.
 */
import type { RevokeReport } from '../broker/lease-admin.js';
import { type RouteContext, type RouteResult, formField, selectorFrom } from './console-context.js';
import { html, isoTime, postForm, table, type SafeHtml } from './html.js';

export async function quarantinesPage(ctx: RouteContext): Promise<RouteResult> {
  const list = await ctx.use.quarantineAdmin.list(ctx.caller);
  const rows = list.map((q) => [
    q.pattern,
    q.reason,
    q.by,
    q.trigger,
    isoTime(q.createdAt),
    q.expiresAt ? isoTime(q.expiresAt) : 'until released',
    postForm(
      '/quarantines/release',
      ctx.csrf,
      html`<input type="hidden" name="agent" value="${q.pattern}" /><input
          name="reason"
          placeholder="reason"
          required
        />`,
      'Release',
    ),
  ]);
  const form = postForm(
    '/quarantines',
    ctx.csrf,
    html`<label>Agent or pattern <input name="agent" required /></label>
      <label>Reason <input name="reason" required /></label>
      <label>TTL seconds (0: until released) <input name="ttl_seconds" value="0" /></label>
      <label
        ><input type="checkbox" name="revoke_active" value="1" checked /> revoke its active leases</label
      >`,
    'Quarantine',
  );
  const head = ['pattern', 'reason', 'by', 'trigger', 'since', 'until', ''];
  return {
    title: 'Quarantines',
    body: html`${table(head, rows)}
      <h2>Quarantine an agent</h2>
      ${form}`,
  };
}

export async function quarantine(ctx: RouteContext): Promise<RouteResult> {
  const field = formField(ctx.form);
  await ctx.use.quarantineAdmin.quarantine(ctx.caller, {
    agent: field('agent').trim(),
    reason: field('reason'),
    ttlSeconds: Number(field('ttl_seconds') || '0'),
    revokeActive: field('revoke_active') === '1',
  });
  return { redirect: '/quarantines' };
}

export async function release(ctx: RouteContext): Promise<RouteResult> {
  const field = formField(ctx.form);
  await ctx.use.quarantineAdmin.release(ctx.caller, {
    agent: field('agent').trim(),
    reason: field('reason'),
  });
  return { redirect: '/quarantines' };
}

const SELECTOR_FIELDS = ['agent', 'task', 'environment', 'role', 'backend'] as const;

export async function revokeForm(ctx: RouteContext): Promise<RouteResult> {
  const fields = html`${SELECTOR_FIELDS.map((f) => html`<label>${f} <input name="${f}" /></label> `)}
    <label>Reason <input name="reason" required /></label>`;
  const body = html`<p>The selector is tried as a dry run first; nothing is revoked until you confirm it.</p>
    ${postForm('/revoke', ctx.csrf, fields, 'Dry run')}`;
  return { title: 'Revoke leases', body };
}

/** Without `confirm=1` a dry run, whose page carries the same selector to confirm. */
export async function revoke(ctx: RouteContext): Promise<RouteResult> {
  const field = formField(ctx.form);
  const dryRun = field('confirm') !== '1';
  const report = await ctx.use.leaseAdmin.revokeLeases(ctx.caller, {
    selector: { ...selectorFrom(field), state: '' },
    reason: field('reason'),
    dryRun,
    confirmAll: false,
  });
  if (!dryRun) return { title: 'Revoked', body: reportTable(report) };
  const hidden = html`${[...SELECTOR_FIELDS, 'reason'].map(
      (f) => html`<input type="hidden" name="${f}" value="${field(f)}" />`,
    )}<input type="hidden" name="confirm" value="1" />`;
  const body = html`<p>Dry run: ${report.matched} active lease(s) match. Nothing was revoked.</p>
    ${reportTable(report)}${report.matched > 0 ? postForm('/revoke', ctx.csrf, hidden, `Revoke ${report.matched} lease(s)`) : ''}`;
  return { title: 'Revoke: dry run', body };
}

function reportTable(r: RevokeReport): SafeHtml {
  return table(
    ['matched', 'revoked', 'pending retry', 'not revocable', 'dry run'],
    [
      [
        String(r.matched),
        String(r.revoked),
        String(r.pendingRetry),
        String(r.notRevocable),
        String(r.dryRun),
      ],
    ],
  );
}

export async function breakGlassPage(ctx: RouteContext): Promise<RouteResult> {
  const grants = await ctx.use.admin.listBreakGlass(ctx.caller);
  const rows = grants.map((g) => [
    g.id,
    g.agent,
    g.grantedBy,
    g.roles.join(', '),
    g.reason,
    String(g.uses),
    isoTime(g.expiresAt),
    postForm(
      `/break-glass/${g.id}/review`,
      ctx.csrf,
      html`<input name="note" placeholder="what the review found" required />`,
      'Review',
    ),
  ]);
  const form = postForm(
    '/break-glass',
    ctx.csrf,
    html`<label>Agent (SPIFFE ID) <input name="agent" required /></label>
      <label>Task (optional) <input name="task" /></label>
      <label>Roles (comma-separated) <input name="roles" required /></label>
      <label>Reason <input name="reason" required /></label>
      <label>TTL seconds <input name="ttl_seconds" value="900" /></label>`,
    'Grant break-glass',
  );
  const head = ['grant', 'agent', 'granted by', 'roles', 'reason', 'uses', 'expires', ''];
  return {
    title: 'Break-glass',
    body: html`<h2>Grants awaiting review</h2>
      ${table(head, rows)}
      <h2>Grant break-glass</h2>
      <p>Granting needs a fresh sign-in.</p>
      ${form}`,
  };
}

export async function grantBreakGlass(ctx: RouteContext): Promise<RouteResult> {
  const field = formField(ctx.form);
  await ctx.use.admin.grantBreakGlass(ctx.caller, {
    agent: field('agent').trim(),
    taskId: field('task').trim(),
    roles: field('roles')
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r !== ''),
    reason: field('reason'),
    ttlSeconds: Number(field('ttl_seconds')),
  });
  return { redirect: '/break-glass' };
}

export async function reviewBreakGlass(ctx: RouteContext): Promise<RouteResult> {
  await ctx.use.admin.reviewBreakGlass(ctx.caller, {
    grantId: ctx.params[0] ?? '',
    note: formField(ctx.form)('note'),
  });
  return { redirect: '/break-glass' };
}
