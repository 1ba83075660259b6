/**
 * The OpenID AuthZEN Authorization API 1.0 on its own listener: HTTPS with the broker's SVID, and
 * the caller (a policy enforcement point) authenticated by its X.509-SVID, verified against the
 * bundle of its own trust domain as on the gRPC port.
 *   POST /access/v1/evaluation    one decision
 *   POST /access/v1/evaluations   many, with options.evaluations_semantic
 *   GET  /.well-known/authzen-configuration   PDP metadata
 * Errors are JSON `{ "error": ..., "field"?: ... }` with a 4xx or 503 status (the README lists each); never a stack.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { AccessAnswer, AccessEvaluator, AccessQuestion } from '../broker/access-evaluation.js';
import { isBrokerError, type ErrorCode } from '../errors.js';
import type { Caller } from '../identity/types.js';
import { derToPem } from '../identity/x509-verify.js';
import type { Authenticator } from './authenticate.js';
import { send, splitHostPort } from './ops-http.js';
import type { TlsIdentitySource } from './svid-certificate-provider.js';
import type { CallTrace } from '../audit/trace-context.js';

export interface AuthzenDeps {
  evaluator: AccessEvaluator;
  tls: TlsIdentitySource;
  /** The gRPC port's: the gateway's X.509-SVID is checked against its own trust domain's bundle. */
  authenticator: Pick<Authenticator, 'authenticateTlsPeer'>;
  logger: Logger;
  /** Where a request's valid `traceparent` header is kept while it is served (its audit records carry it). */
  trace?: CallTrace;
}

export interface RunningAuthzen {
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;
const MAX_EVALUATIONS = 100;
const SEMANTICS = ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit'] as const;

const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  FAILED_PRECONDITION: 400,
  NOT_FOUND: 404,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startAuthzenHttp(deps: AuthzenDeps, listen: string): Promise<RunningAuthzen> {
  const server = createServer(
    { ...tlsOptions(deps.tls), requestCert: true, rejectUnauthorized: false },
    (req, res) =>
      void (deps.trace
        ? deps.trace.run(req.headers.traceparent, () => serve(deps, req, res))
        : serve(deps, req, res)),
  );
  const unsubscribe = deps.tls.onUpdate(() => server.setSecureContext(tlsOptions(deps.tls)));
  const { host, port } = splitHostPort(listen);
  await listenOn(server, host, port);
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        unsubscribe();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function tlsOptions(tls: TlsIdentitySource): { cert: string; key: string; ca: string } {
  const svid = tls.getX509Svid();
  return {
    cert: svid.certChain.map((d) => derToPem(d)).join(''),
    key: derToPem(svid.privateKey, 'PRIVATE KEY'),
    // Advertised in the CertificateRequest; the chain is checked against its own domain's bundle below.
    ca: tls
      .getX509Bundles()
      .flatMap((b) => b.authorities.map((d) => derToPem(d)))
      .join(''),
  };
}

function listenOn(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
}

async function serve(deps: AuthzenDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = req.headers['x-request-id'];
  const headers: Record<string, string> = typeof requestId === 'string' ? { 'x-request-id': requestId } : {};
  try {
    const body = await route(deps, req);
    send(res, 200, body, headers);
  } catch (err) {
    const { status, body } = problemOf(err, deps.logger);
    send(res, status, body, headers);
  }
}

async function route(deps: AuthzenDeps, req: IncomingMessage): Promise<unknown> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/.well-known/authzen-configuration' && req.method === 'GET') return metadata(req);
  if (path !== '/access/v1/evaluation' && path !== '/access/v1/evaluations')
    throw new HttpProblem(404, 'not found');
  if (req.method !== 'POST') throw new HttpProblem(405, 'method not allowed: use POST');
  const gateway = await deps.authenticator.authenticateTlsPeer(req.socket as TLSSocket);
  deps.evaluator.authorizeGateway(gateway);
  const body = await readJson(req);
  if (path === '/access/v1/evaluation') return deps.evaluator.evaluate(gateway, questionOf(body, {}));
  return evaluations(deps, gateway, body);
}

function metadata(req: IncomingMessage): Record<string, string> {
  const base = `https://${req.headers.host ?? 'localhost'}`;
  return {
    policy_decision_point: base,
    access_evaluation_endpoint: `${base}/access/v1/evaluation`,
    access_evaluations_endpoint: `${base}/access/v1/evaluations`,
  };
}

/** AuthZEN §7: top-level subject/action/resource/context are defaults each evaluation may replace. */
async function evaluations(
  deps: AuthzenDeps,
  gateway: Caller,
  body: Record<string, unknown>,
): Promise<unknown> {
  const items = body.evaluations;
  if (items === undefined || (Array.isArray(items) && items.length === 0))
    return deps.evaluator.evaluate(gateway, questionOf(body, {}));
  if (!Array.isArray(items)) throw new HttpProblem(400, 'evaluations: must be an array');
  if (items.length > MAX_EVALUATIONS) throw new HttpProblem(400, `evaluations: at most ${MAX_EVALUATIONS}`);
  const semantic = semanticOf(body.options);
  const results: AccessAnswer[] = [];
  for (const item of items) {
    if (typeof item !== 'object' || item === null)
      throw new HttpProblem(400, 'evaluations: items must be objects');
    const answer = await deps.evaluator.evaluate(gateway, questionOf(item as Record<string, unknown>, body));
    results.push(answer);
    if (semantic === 'deny_on_first_deny' && !answer.decision) break;
    if (semantic === 'permit_on_first_permit' && answer.decision) break;
  }
  return { evaluations: results };
}

function semanticOf(options: unknown): (typeof SEMANTICS)[number] {
  if (options === undefined) return 'execute_all';
  const s = (options as { evaluations_semantic?: unknown } | null)?.evaluations_semantic ?? 'execute_all';
  if (!(SEMANTICS as readonly unknown[]).includes(s))
    throw new HttpProblem(400, `options.evaluations_semantic: must be one of ${SEMANTICS.join(', ')}`);
  return s as (typeof SEMANTICS)[number];
}

function questionOf(item: Record<string, unknown>, defaults: Record<string, unknown>): AccessQuestion {
  const pick = (k: string): Record<string, unknown> => {
    const v = item[k] ?? defaults[k];
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new HttpProblem(400, `${k}: must be an object`);
    return v as Record<string, unknown>;
  };
  return {
    subject: pick('subject'),
    action: pick('action'),
    resource: pick('resource'),
    context: pick('context'),
  };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/json'))
    throw new HttpProblem(415, 'content-type must be application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpProblem(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpProblem(400, 'request body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new HttpProblem(400, 'request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function problemOf(err: unknown, logger: Logger): { status: number; body: Record<string, unknown> } {
  if (err instanceof HttpProblem) return { status: err.status, body: { error: err.message } };
  if (isBrokerError(err)) {
    return {
      status: HTTP_STATUS[err.code],
      body: {
        error: err.message,
        ...(err.field ? { field: err.field } : {}),
        ...(err.policies.length ? { policy_ids: err.policies } : {}),
      },
    };
  }
  logger.error(
    { err: { message: err instanceof Error ? err.message : String(err) } },
    'authzen request failed',
  );
  return { status: 500, body: { error: 'internal error' } };
}
