/**
 * The console's small HTTP vocabulary: cookies, form bodies, responses, and the one place a
 * BrokerError becomes an HTTP status (the gRPC API's codes, as HTTP).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { type ErrorCode, isBrokerError } from '../errors.js';

/** Forms are small: a reason, a selector. Anything bigger is refused unread. */
const MAX_FORM_BYTES = 16 * 1024;

const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  FAILED_PRECONDITION: 409,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

export function parseCookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), decodeURIComponent(part.slice(eq + 1).trim()));
  }
  return out;
}

/** A `__Host-` cookie: Secure, HttpOnly, Path=/, no Domain; maxAge 0 clears it. */
export function hostCookie(
  name: string,
  value: string,
  maxAgeSeconds: number,
  sameSite: 'Strict' | 'Lax',
): string {
  return `__Host-${name}=${encodeURIComponent(value)}; Path=/; Secure; HttpOnly; SameSite=${sameSite}; Max-Age=${maxAgeSeconds}`;
}

export class BodyTooLargeError extends Error {}

/** Reads an application/x-www-form-urlencoded body (first value of each field). */
export async function readForm(req: IncomingMessage): Promise<Map<string, string>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new BodyTooLargeError('form too large');
    chunks.push(chunk as Buffer);
  }
  const form = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
    if (!form.has(k)) form.set(k, v);
  }
  return form;
}

export function sendHtml(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', ...headers });
  res.end(body);
}

export function redirect(
  res: ServerResponse,
  location: string,
  headers: Record<string, string | string[]> = {},
): void {
  res.writeHead(303, { ...SECURITY_HEADERS, location, ...headers });
  res.end();
}

/**
 * Only a local path may be a return target: no scheme, no host, no `//`, nothing but printable
 * ASCII (it goes into a Location or Refresh header).
 */
export function localPath(raw: string | null | undefined, fallback = '/approvals'): string {
  if (!raw || !/^\/(?!\/)[\x21-\x7e]*$/.test(raw) || raw.includes('\\')) return fallback;
  return raw;
}

/** An error as the status and text shown to the person; unknown errors are logged, never shown. */
export function describeError(
  err: unknown,
  logger: Logger,
  route: string,
): { status: number; message: string; reason: string; policies: string[] } {
  if (isBrokerError(err)) {
    if (err.code === 'INTERNAL' || err.code === 'UNAVAILABLE') {
      logger.warn({ route, code: err.code, reason: err.reason }, err.message);
    }
    const message = err.code === 'INTERNAL' ? 'internal error' : err.message;
    return { status: HTTP_STATUS[err.code], message, reason: err.reason, policies: [...err.policies] };
  }
  if (err instanceof BodyTooLargeError)
    return { status: 413, message: 'form too large', reason: 'too_large', policies: [] };
  logger.error(
    { route, err: { message: err instanceof Error ? err.message : String(err) } },
    'console: unexpected error',
  );
  return { status: 500, message: 'internal error', reason: 'internal', policies: [] };
}
