/** Leases and tasks, filtered by agent, task, environment, role, backend and state (ListLeases). */
import type { Lease } from '../leases/types.js';
import { leaseTable } from './approval-views.js';
import { type RouteContext, type RouteResult, queryField, selectorFrom } from './console-context.js';
import { html, isoTime, table, type SafeHtml } from './html.js';

const FILTERS = ['agent', 'task', 'environment', 'role', 'backend', 'state'] as const;

export async function leasesPage(ctx: RouteContext): Promise<RouteResult> {
  const leases = await readLeases(ctx);
  return { title: 'Leases', body: html`${filterForm('/leases', ctx.url)}${leaseTable(leases)}` };
}

/** Tasks as their leases show them: one row per task, with its roles and lease count. */
export async function tasksPage(ctx: RouteContext): Promise<RouteResult> {
  const tasks = new Map<string, Lease[]>();
  for (const lease of await readLeases(ctx))
    tasks.set(lease.taskId, [...(tasks.get(lease.taskId) ?? []), lease]);
  const rows = [...tasks].map(([taskId, leases]) => {
    const first = leases[0] as Lease;
    return [
      html`<a href="/leases?task=${taskId}&amp;state=any">${taskId}</a>`,
      first.agent,
      first.environment,
      [...new Set(leases.map((l) => l.role))].sort().join(', '),
      String(leases.length),
      isoTime(Math.max(...leases.map((l) => l.expiresAt))),
    ];
  });
  const head = ['task', 'agent', 'environment', 'roles', 'leases', 'last expiry'];
  return { title: 'Tasks', body: html`${filterForm('/tasks', ctx.url)}${table(head, rows)}` };
}

/** With no filter, every active lease: ListLeases needs a selector, so the state alone is not one. */
async function readLeases(ctx: RouteContext): Promise<Lease[]> {
  const selector = selectorFrom(queryField(ctx.url));
  const named =
    selector.agent || selector.taskId || selector.environment || selector.role || selector.backend;
  if (!named) selector.all = true;
  const page = await ctx.use.leaseAdmin.listLeases(ctx.caller, selector, { pageSize: 500 });
  return page.leases;
}

function filterForm(action: string, url: URL): SafeHtml {
  return html`<form method="get" action="${action}" class="filters">
    ${FILTERS.map(
      (f) => html`<label>${f} <input name="${f}" value="${url.searchParams.get(f) ?? ''}" /></label> `,
    )}<button type="submit">Filter</button>
  </form>`;
}
