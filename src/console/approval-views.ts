/**
 * Pending approvals: the list, one request in full (agent, task, role, environment, change type,
 * justification as text, the policies that asked for approval, the task's history) and the
 * decision with a reason, through BrokerAdmin.decideApproval like the gRPC API.
 */
import type { ApprovalRequest } from '../approvals/types.js';
import { isBrokerError, notFound } from '../errors.js';
import type { Lease } from '../leases/types.js';
import { type RouteContext, type RouteResult, formField } from './console-context.js';
import { html, isoTime, postForm, table, type SafeHtml } from './html.js';

export async function listApprovalsPage(ctx: RouteContext): Promise<RouteResult> {
  const pending = await ctx.use.admin.listApprovals(ctx.caller, { state: 'pending' });
  const rows = pending.map((a) => [
    html`<a href="/approvals/${a.id}">${a.id}</a>`,
    a.requester,
    a.role,
    a.environment,
    a.changeType,
    a.sensitivity,
    `${a.approvals.length}/${a.required}`,
    isoTime(a.expiresAt),
  ]);
  const head = ['request', 'agent', 'role', 'environment', 'change', 'sensitivity', 'approvals', 'expires'];
  return { title: 'Pending approvals', body: table(head, rows) };
}

export async function approvalPage(ctx: RouteContext): Promise<RouteResult> {
  const id = ctx.params[0] ?? '';
  const all = await ctx.use.admin.listApprovals(ctx.caller, { state: 'any' });
  const request = all.find((a) => a.id === id);
  if (!request) throw notFound('approval_not_found', 'no such approval, or not one you may decide');
  const leases = await taskLeases(ctx, request.taskId);
  const taskRequests = all.filter((a) => a.taskId === request.taskId && a.id !== request.id);
  const body = html`${requestDetails(request)}
    ${request.state === 'pending' ? decideForm(request, ctx.csrf) : ''}
    <h2>The task's history</h2>
    <h3>Credentials issued in task ${request.taskId}</h3>
    ${leases}
    <h3>Other approval requests of the task</h3>
    ${approvalHistory(taskRequests)}`;
  return { title: `Approval ${request.id}`, body };
}

export async function decideApproval(ctx: RouteContext): Promise<RouteResult> {
  const id = ctx.params[0] ?? '';
  const field = formField(ctx.form);
  await ctx.use.admin.decideApproval(ctx.caller, {
    approvalId: id,
    approve: field('decision') === 'approve',
    reason: field('reason'),
  });
  return { redirect: `/approvals/${id}` };
}

/** The task's leases in every state; an approver without ListLeases sees why they are missing. */
async function taskLeases(ctx: RouteContext, taskId: string): Promise<SafeHtml> {
  try {
    const page = await ctx.use.leaseAdmin.listLeases(ctx.caller, {
      leaseId: '',
      agent: '',
      taskId,
      environment: '',
      role: '',
      backend: '',
      trustDomain: '',
      all: false,
      state: 'any',
    });
    return leaseTable(page.leases);
  } catch (err) {
    if (!isBrokerError(err) || err.code !== 'PERMISSION_DENIED') throw err;
    return html`<p class="empty">Not shown: policy does not allow you ListLeases.</p>`;
  }
}

function requestDetails(a: ApprovalRequest): SafeHtml {
  const rows: Array<[string, string]> = [
    ['state', a.state],
    ['agent', a.requester],
    ['task', a.taskId],
    ['role', a.role],
    ['environment', a.environment],
    ['change type', a.changeType],
    ['sensitivity', a.sensitivity],
    ['TTL (seconds)', String(a.ttlSeconds)],
    ['tool', a.tool],
    ['deciding policies', a.policyIds.join(', ')],
    ['approvals', `${a.approvals.length} of ${a.required}`],
    ['requested', isoTime(a.createdAt)],
    ['expires', isoTime(a.expiresAt)],
  ];
  const decisions = [...a.approvals, ...(a.denial ? [a.denial] : [])];
  return html`<dl class="request">
      ${rows.map(
        ([k, v]) =>
          html`<dt>${k}</dt>
            <dd>${v}</dd>`,
      )}
    </dl>
    <h2>Justification</h2>
    <pre class="justification">${a.justification}</pre>
    <h2>Decisions so far</h2>
    ${table(
      ['by', 'reason', 'at'],
      decisions.map((d) => [d.approver, d.reason, isoTime(d.at)]),
    )}`;
}

function decideForm(a: ApprovalRequest, csrf: string): SafeHtml {
  const fields = html`<label>Reason <textarea name="reason" required maxlength="1024"></textarea></label>
    <label><input type="radio" name="decision" value="approve" checked /> Approve</label>
    <label><input type="radio" name="decision" value="deny" /> Deny</label>`;
  return html`<h2>Decide</h2>
    ${postForm(`/approvals/${a.id}/decide`, csrf, fields, 'Submit decision')}`;
}

export function leaseTable(leases: readonly Lease[]): SafeHtml {
  return table(
    ['lease', 'agent', 'task', 'role', 'environment', 'state', 'issued', 'expires'],
    leases.map((l) => [
      l.id,
      l.agent,
      html`<a href="/leases?task=${l.taskId}&amp;state=any">${l.taskId}</a>`,
      l.role,
      l.environment,
      l.state,
      isoTime(l.issuedAt),
      isoTime(l.expiresAt),
    ]),
  );
}

function approvalHistory(requests: readonly ApprovalRequest[]): SafeHtml {
  return table(
    ['request', 'role', 'change', 'state', 'requested'],
    requests.map((a) => [
      html`<a href="/approvals/${a.id}">${a.id}</a>`,
      a.role,
      a.changeType,
      a.state,
      isoTime(a.createdAt),
    ]),
  );
}
