/**
 * The web console: its own HTTPS listener, server-rendered pages, no client build. Every request
 * but sign-in needs a session; every POST needs the session's CSRF token (synchronizer token, on
 * top of the SameSite=Strict cookie); every action runs as the person (Human principal, their
 * `actor` on each audit record) through the same use cases as the gRPC admin API. A refused
 * step-up sends the person to sign in again and back to the page they were on.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import { STEP_UP_REQUIRED } from '../broker/human-checks.js';
import { isBrokerError } from '../errors.js';
import { listenOn, type RunningListener } from '../server/listen.js';
import { humanCaller } from '../identity/human.js';
import { type ActorScope, humanActor } from './actor-audit.js';
import { type AuditFeed, streamAudit } from './audit-stream.js';
import type { RouteContext, UseCases } from './console-context.js';
import { html, page } from './html.js';
import { describeError, readForm, redirect, sendHtml, SECURITY_HEADERS } from './http-kit.js';
import { findRoute, type Route } from './routes.js';
import { type OpenSession, type SignIn, sameToken } from './sign-in.js';
import { CONSOLE_CSS, CONSOLE_JS } from './static-assets.js';

export interface ConsoleDeps {
  signIn: SignIn;
  /** The path of humans.oidc.redirectUrl. */
  callbackPath: string;
  use: UseCases;
  actors: ActorScope;
  /** The audit pipeline, for the live view; absent, the view says so. */
  auditFeed: AuditFeed | undefined;
  audit: AuditSink;
  tls: { cert: string | Buffer; key: string | Buffer };
  logger: Logger;
}

export type RunningConsole = RunningListener;

export async function startConsole(deps: ConsoleDeps, listen: string): Promise<RunningConsole> {
  const server: Server = createServer(
    { cert: deps.tls.cert, key: deps.tls.key, minVersion: 'TLSv1.2' },
    (req, res) => {
      handle(deps, req, res).catch((err: unknown) => sendError(deps, res, err, req.url ?? ''));
    },
  );
  return listenOn(server, listen);
}

async function handle(deps: ConsoleDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://console.invalid');
  const method = req.method ?? 'GET';
  if (method === 'GET' && serveStatic(url.pathname, res)) return;
  if (method === 'GET' && url.pathname === '/auth/login') return deps.signIn.start(res, url);
  if (method === 'GET' && url.pathname === deps.callbackPath) return deps.signIn.callback(req, res, url);
  const open = await deps.signIn.load(req);
  if (!open) return signInFirst(res, method, url);
  const form = method === 'POST' ? await readForm(req) : new Map<string, string>();
  if (method === 'POST' && !sameToken(open.session.csrf, form.get('_csrf') ?? '')) {
    return refuseCsrf(deps, res, open, url.pathname);
  }
  const actor = humanActor(open.session.human);
  const stillOpen = async (): Promise<boolean> => (await deps.signIn.load(req))?.id === open.id;
  await deps.actors.run(actor, () => dispatch(deps, res, { open, method, url, form, stillOpen }));
}

async function dispatch(
  deps: ConsoleDeps,
  res: ServerResponse,
  req: {
    open: OpenSession;
    method: string;
    url: URL;
    form: Map<string, string>;
    stillOpen: () => Promise<boolean>;
  },
): Promise<void> {
  const { open, method, url, form } = req;
  if (method === 'POST' && url.pathname === '/auth/logout') return deps.signIn.logout(res, open);
  const caller = humanCaller(open.session.human);
  if (method === 'GET' && url.pathname === '/audit/events') {
    if (!deps.auditFeed) return sendHtml(res, 503, 'no audit stream in this broker');
    return streamAudit(res, caller, deps.use.leaseAdmin, deps.auditFeed, req.stillOpen);
  }
  if (method === 'GET' && url.pathname === '/') return redirect(res, '/approvals');
  const found = findRoute(method, url.pathname);
  if (!found) return sendHtml(res, 404, frame(open, 'Not found', html`<p>No such page.</p>`));
  const ctx: RouteContext = {
    caller,
    csrf: open.session.csrf,
    url,
    form,
    params: found.params,
    use: deps.use,
  };
  try {
    const result = await found.route.handler(ctx);
    if ('redirect' in result) return redirect(res, result.redirect);
    sendHtml(res, 200, frame(open, result.title, result.body));
  } catch (err) {
    if (isBrokerError(err) && err.reason === STEP_UP_REQUIRED) return stepUp(res, found.route, ctx);
    const shown = describeError(err, deps.logger, url.pathname);
    const policies = shown.policies.length
      ? html`<p>Deciding policies: ${shown.policies.join(', ')}</p>`
      : '';
    const body = html`<p class="error" data-reason="${shown.reason}">${shown.message}</p>
      ${policies}`;
    sendHtml(res, shown.status, frame(open, 'Refused', body));
  }
}

function frame(open: OpenSession, title: string, body: ReturnType<typeof html>): string {
  const { email, sub } = open.session.human;
  return page({ title, who: { email, sub }, csrf: open.session.csrf, body });
}

/** The use case asked for a fresh sign-in: sign in again (max_age=0), then back to the page. */
function stepUp(res: ServerResponse, route: Route, ctx: RouteContext): void {
  const back = route.returnTo ? route.returnTo(ctx) : ctx.url.pathname;
  redirect(res, `/auth/login?step_up=1&return_to=${encodeURIComponent(back)}`);
}

function signInFirst(res: ServerResponse, method: string, url: URL): void {
  if (method === 'GET')
    return redirect(res, `/auth/login?return_to=${encodeURIComponent(url.pathname + url.search)}`);
  sendHtml(
    res,
    401,
    page({ title: 'Sign in', body: html`<p>Your session has ended. <a href="/auth/login">Sign in</a></p>` }),
  );
}

async function refuseCsrf(
  deps: ConsoleDeps,
  res: ServerResponse,
  open: OpenSession,
  path: string,
): Promise<void> {
  const human = open.session.human;
  await deps.audit
    .write({
      type: 'admin.denied',
      agent: humanCaller(human).spiffeId,
      actor: humanActor(human),
      method: `console ${path}`,
      reason: 'csrf_token_invalid',
    })
    .catch(() => undefined);
  sendHtml(
    res,
    403,
    frame(
      open,
      'Refused',
      html`<p class="error">The form's CSRF token is missing or wrong. Reload the page and try again.</p>`,
    ),
  );
}

function serveStatic(path: string, res: ServerResponse): boolean {
  const asset =
    path === '/static/console.js'
      ? { type: 'text/javascript; charset=utf-8', body: CONSOLE_JS }
      : path === '/static/console.css'
        ? { type: 'text/css; charset=utf-8', body: CONSOLE_CSS }
        : undefined;
  if (!asset) return false;
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type });
  res.end(asset.body);
  return true;
}

function sendError(deps: ConsoleDeps, res: ServerResponse, err: unknown, route: string): void {
  const shown = describeError(err, deps.logger, route);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendHtml(res, shown.status, page({ title: 'Error', body: html`<p class="error">${shown.message}</p>` }));
}
