/**
 * Sign-in, sessions and sign-out at the console. `/auth/login` starts an authorization code flow
 * (PKCE) and remembers it server-side under its `state`, bound to this browser by a short cookie;
 * `/auth/callback` finishes it and opens a session: a random id in a `__Host-` cookie (Secure,
 * HttpOnly, SameSite=Strict), the person and a CSRF token in the session store (Redis: every
 * replica sees it, and deleting it signs out everywhere). Every step is audited; a sign-in that
 * cannot be recorded is refused.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import { isBrokerError, unavailable } from '../errors.js';
import { humanCaller } from '../identity/human.js';
import type { HumanIdentity } from '../identity/types.js';
import type { OidcRelyingParty } from '../humans/oidc-relying-party.js';
import { type ConsoleSession, type SessionStore, newToken } from '../humans/session-store.js';
import { humanActor } from './actor-audit.js';
import { html, page } from './html.js';
import { hostCookie, localPath, parseCookies, redirect, sendHtml } from './http-kit.js';

export const SESSION_COOKIE = 'svb_session';
const SIGN_IN_COOKIE = 'svb_signin';
/** How long a person has at the IdP before the sign-in in flight is forgotten. */
const SIGN_IN_TTL_MS = 10 * 60 * 1000;

export interface SignInDeps {
  rp: OidcRelyingParty;
  sessions: SessionStore;
  sessionTtlSeconds: number;
  /** The redirect URL registered at the IdP (its path is the callback route). */
  redirectUrl: string;
  audit: AuditSink;
  logger: Logger;
  now: () => number;
}

export interface OpenSession {
  id: string;
  session: ConsoleSession;
}

export class SignIn {
  constructor(private readonly deps: SignInDeps) {}

  /** GET /auth/login?return_to=<path>&step_up=1 */
  async start(res: ServerResponse, url: URL): Promise<void> {
    const browserKey = newToken();
    const {
      url: target,
      state,
      pending,
    } = await this.deps.rp.startSignIn({
      returnTo: localPath(url.searchParams.get('return_to')),
      stepUp: url.searchParams.get('step_up') === '1',
      browserKey,
    });
    await this.deps.sessions.putSignIn(state, pending, SIGN_IN_TTL_MS);
    // Lax: the IdP's redirect back is a cross-site navigation, which a Strict cookie would miss.
    redirect(res, target, {
      'set-cookie': hostCookie(SIGN_IN_COOKIE, browserKey, SIGN_IN_TTL_MS / 1000, 'Lax'),
    });
  }

  /** GET /auth/callback?code=...&state=... */
  async callback(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const state = url.searchParams.get('state') ?? '';
    const pending = state ? await this.deps.sessions.takeSignIn(state) : undefined;
    const browserKey = parseCookies(req).get(`__Host-${SIGN_IN_COOKIE}`) ?? '';
    if (!pending || !sameToken(pending.browserKey, browserKey)) {
      await this.refuse(
        res,
        'unknown_state',
        'This sign-in was not started here, or took too long. Sign in again.',
      );
      return;
    }
    const callbackUrl = new URL(url.pathname + url.search, this.deps.redirectUrl);
    let human: HumanIdentity;
    try {
      human = await this.deps.rp.finishSignIn(callbackUrl, state, pending);
    } catch (err) {
      this.deps.logger.warn({ cause: causeOf(err) }, 'console: sign-in refused');
      await this.refuse(
        res,
        'idp_response_rejected',
        'Sign-in failed: the identity provider response was not accepted.',
      );
      return;
    }
    const id = await this.open(human, pending.maxAge !== undefined);
    // A page, not a redirect: a SameSite=Strict cookie is not sent on a redirect that began at the
    // IdP (cross-site), but is on a navigation this same-site page starts.
    const target = localPath(pending.returnTo);
    const body = html`<p>
      Signed in as ${human.email || human.sub}. <a id="continue" href="${target}">Continue</a>
    </p>`;
    res.setHeader('set-cookie', [
      hostCookie(SESSION_COOKIE, id, this.deps.sessionTtlSeconds, 'Strict'),
      hostCookie(SIGN_IN_COOKIE, '', 0, 'Lax'),
    ]);
    sendHtml(res, 200, page({ title: 'Signed in', body }), { refresh: `0;url=${target}` });
  }

  /** The session this request's cookie names, if it is open and unexpired. */
  async load(req: IncomingMessage): Promise<OpenSession | undefined> {
    const id = parseCookies(req).get(`__Host-${SESSION_COOKIE}`);
    if (!id) return undefined;
    const session = await this.deps.sessions.getSession(id);
    if (!session || session.expiresAt <= this.deps.now()) return undefined;
    return { id, session };
  }

  /** POST /auth/logout (CSRF-checked by the caller): the session is deleted for every replica. */
  async logout(res: ServerResponse, open: OpenSession): Promise<void> {
    await this.deps.sessions.deleteSession(open.id);
    const human = open.session.human;
    await this.record({
      type: 'human.signed_out',
      agent: humanCaller(human).spiffeId,
      actor: humanActor(human),
    }).catch(() => undefined);
    res.setHeader('set-cookie', hostCookie(SESSION_COOKIE, '', 0, 'Strict'));
    sendHtml(
      res,
      200,
      page({ title: 'Signed out', body: html`<p><a href="/auth/login">Sign in again</a></p>` }),
    );
  }

  private async open(human: HumanIdentity, stepUp: boolean): Promise<string> {
    const now = this.deps.now();
    const id = newToken();
    const ttlMs = this.deps.sessionTtlSeconds * 1000;
    const session: ConsoleSession = { human, csrf: newToken(), createdAt: now, expiresAt: now + ttlMs };
    await this.record({
      type: 'human.signed_in',
      agent: humanCaller(human).spiffeId,
      actor: humanActor(human),
      groups: [...human.groups],
      auth_time: human.authTime,
      step_up: stepUp,
    });
    await this.deps.sessions.putSession(id, session, ttlMs);
    return id;
  }

  private async refuse(res: ServerResponse, reason: string, message: string): Promise<void> {
    await this.record({ type: 'human.sign_in_failed', agent: '', reason }).catch(() => undefined);
    const body = html`<p>${message}</p>
      <p><a href="/auth/login">Sign in</a></p>`;
    sendHtml(res, 401, page({ title: 'Sign-in failed', body }));
  }

  /** A sign-in nobody can account for must not happen: refused when the record fails. */
  private async record(event: Parameters<AuditSink['write']>[0]): Promise<void> {
    try {
      await this.deps.audit.write(event);
    } catch (err) {
      throw unavailable('audit_unavailable', 'audit trail unavailable: sign-in refused', err);
    }
  }
}

/** Whether the CSRF token sent equals the session's (constant time). */
export function sameToken(expected: string, got: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(got);
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

function causeOf(err: unknown): string {
  const cause = isBrokerError(err) ? err.cause : err;
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
}
