/**
 * The HTTP ops listener: JWKS for services that verify broker tokens, the list of revoked token
 * ids they must refuse, health and readiness, Prometheus metrics, the latest signed audit checkpoint
 * and its verifier key. Nothing secret is served here.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { listenOn } from './listen.js';
import type { AuditSinkHealth } from '../audit/types.js';
import { RevokedQueryError, type RevokedList } from './revoked-list.js';
import { describeNotReady, type HealthReport } from '../observability/dependency-health.js';

export interface OpsHttpDeps {
  jwks: () => { keys: Array<Record<string, unknown>> } | Promise<{ keys: Array<Record<string, unknown>> }>;
  /** GET /v1/revoked: the token deny list, paged and cached per replica. */
  revoked: Pick<RevokedList, 'page'>;
  /** Checks every required dependency now (Redis, feed, audit sink, SVID) for `/readyz`. */
  readiness: () => Promise<HealthReport>;
  /** Each audit sink beside the chain file, for `/readyz` (a required one down is already in `audit`). */
  auditSinks?: () => ReadonlyArray<{ name: string; mode: string; health: AuditSinkHealth }>;
  registry?: Registry;
  /** GET /.well-known/ssf-configuration[/<issuer path>]: the SSF transmitter metadata, if any. */
  ssfConfiguration?: (path: string) => Record<string, unknown> | undefined;
  logger: Logger;
  /** Signed audit checkpoints (absent when audit.checkpoints.enabled is false). */
  checkpoints?: { latest(): string | undefined; vkey(): string };
}

export interface RunningOpsHttp {
  port: number;
  close(): Promise<void>;
}

/** Answers with JSON (or plain text for a string), never cached unless `headers` says so. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export async function startOpsHttp(deps: OpsHttpDeps, listen: string): Promise<RunningOpsHttp> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method not allowed' });
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/.well-known/jwks.json':
        // Short cache: keys rotate with an overlap, so a minute of staleness is safe.
        return send(res, 200, await deps.jwks(), { 'cache-control': 'public, max-age=60' });
      case '/v1/revoked':
        try {
          const query = new URL(req.url ?? '/', 'http://ops').searchParams;
          // Verifiers poll it; one second of staleness matches the replica's own cache.
          return send(res, 200, await deps.revoked.page(query), { 'cache-control': 'public, max-age=1' });
        } catch (err) {
          if (err instanceof RevokedQueryError)
            return send(res, 400, { error: err.message, param: err.param });
          throw err;
        }
      case '/healthz':
        // Liveness only: the process answers. Whether it can work is /readyz.
        return send(res, 200, { status: 'ok' });
      case '/readyz': {
        const report = await deps.readiness();
        const sinks = deps.auditSinks ? { audit_sinks: describeSinks(deps.auditSinks()) } : {};
        if (report.ready)
          return send(res, 200, { status: 'ready', dependencies: report.dependencies, ...sinks });
        const reason = describeNotReady(report);
        return send(res, 503, { status: 'not ready', reason, dependencies: report.dependencies, ...sinks });
      }
      case '/v1/audit/checkpoint': {
        // The latest signed C2SP checkpoint note; verifiers compare it with the trail they hold.
        const note = deps.checkpoints?.latest();
        return note === undefined ? send(res, 404, { error: 'no checkpoint' }) : send(res, 200, note);
      }
      case '/v1/audit/checkpoint-key':
        if (!deps.checkpoints) return send(res, 404, { error: 'no checkpoint' });
        return send(res, 200, `${deps.checkpoints.vkey()}\n`, { 'cache-control': 'public, max-age=60' });
      case '/metrics':
        if (!deps.registry) return send(res, 404, { error: 'not found' });
        return send(res, 200, await deps.registry.metrics(), { 'content-type': deps.registry.contentType });
      default: {
        const ssf = path?.startsWith('/.well-known/ssf-configuration')
          ? deps.ssfConfiguration?.(path)
          : undefined;
        if (ssf) return send(res, 200, ssf, { 'cache-control': 'public, max-age=300' });
        return send(res, 404, { error: 'not found' });
      }
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      deps.logger.warn({ err: { message: (err as Error).message }, url: req.url }, 'ops request failed');
      if (!res.headersSent) send(res, 503, { error: 'unavailable' });
      else res.end();
    });
  });
  return listenOn(server, listen);
}

// authzen-http.ts splits its address with the same function.
export { splitHostPort } from './listen.js';

/** `/readyz`'s `audit_sinks`: each sink's name, mode and state (cause and since while down). */
function describeSinks(
  sinks: ReadonlyArray<{ name: string; mode: string; health: AuditSinkHealth }>,
): Array<Record<string, unknown>> {
  return sinks.map(({ name, mode, health }) => ({ name, mode, ...health }));
}
