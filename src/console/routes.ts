/** The console's pages and actions: method, path pattern, handler. */
import {
  breakGlassPage,
  grantBreakGlass,
  quarantine,
  quarantinesPage,
  release,
  reviewBreakGlass,
  revoke,
  revokeForm,
} from './admin-views.js';
import { approvalPage, decideApproval, listApprovalsPage } from './approval-views.js';
import { auditPage } from './audit-stream.js';
import type { RouteContext, RouteResult } from './console-context.js';
import { leasesPage, tasksPage } from './lease-views.js';

export interface Route {
  method: 'GET' | 'POST';
  path: RegExp;
  handler: (ctx: RouteContext) => Promise<RouteResult>;
  /** Where a refused step-up returns the person after signing in again. */
  returnTo?: (ctx: RouteContext) => string;
}

const ID = '([0-9a-fA-F-]{36})';

export const ROUTES: readonly Route[] = [
  { method: 'GET', path: /^\/approvals$/, handler: listApprovalsPage },
  { method: 'GET', path: new RegExp(`^/approvals/${ID}$`), handler: approvalPage },
  {
    method: 'POST',
    path: new RegExp(`^/approvals/${ID}/decide$`),
    handler: decideApproval,
    returnTo: (ctx) => `/approvals/${ctx.params[0] ?? ''}`,
  },
  { method: 'GET', path: /^\/leases$/, handler: leasesPage },
  { method: 'GET', path: /^\/tasks$/, handler: tasksPage },
  { method: 'GET', path: /^\/quarantines$/, handler: quarantinesPage },
  { method: 'POST', path: /^\/quarantines$/, handler: quarantine },
  { method: 'POST', path: /^\/quarantines\/release$/, handler: release },
  { method: 'GET', path: /^\/revoke$/, handler: revokeForm },
  { method: 'POST', path: /^\/revoke$/, handler: revoke },
  { method: 'GET', path: /^\/break-glass$/, handler: breakGlassPage },
  { method: 'POST', path: /^\/break-glass$/, handler: grantBreakGlass, returnTo: () => '/break-glass' },
  { method: 'POST', path: new RegExp(`^/break-glass/${ID}/review$`), handler: reviewBreakGlass },
  { method: 'GET', path: /^\/audit$/, handler: async () => auditPage() },
];

export function findRoute(method: string, path: string): { route: Route; params: string[] } | undefined {
  for (const route of ROUTES) {
    if (route.method !== method) continue;
    const m = route.path.exec(path);
    if (m) return { route, params: m.slice(1) };
  }
  return undefined;
}
