/**
 * The HTTP side: one pipeline in Vault's order (faults, namespace, seal, quota, wrap header, token,
 * ACL, route, handler, warnings, wrapping, use-count revocation) and the wire format of answers.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { allows } from './acl.js';
import {
  badRequest,
  internalError,
  invalidToken,
  noHandler,
  permissionDenied,
  rateLimitedError,
  sealedError,
  unsupportedOperation,
  VaultHttpError,
} from './errors.js';
import { newUuid } from './ids.js';
import { Fields, parseDurationSeconds } from './params.js';
import type { Handler, JsonReply, Reply, RequestContext } from './router.js';
import { isWithin, normalizeNamespacePath, type VaultState } from './state.js';
import type { TokenEntry } from './token-store.js';
import type { Envelope, Operation, RequestRecord } from './types.js';
import { ROOT_NAMESPACE } from './types.js';

/** Paths a sealed or rate-limited Vault still answers. */
const ALWAYS_ANSWERED = new Set(['sys/health', 'sys/seal-status']);

interface Outgoing {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `X-Vault-Token`, else `Authorization: Bearer <token>`. */
function presentedToken(headers: IncomingHttpHeaders): string | undefined {
  const vaultToken = headerValue(headers['x-vault-token']);
  if (vaultToken !== undefined && vaultToken !== '') return vaultToken;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headerValue(headers.authorization) ?? '');
  return bearer?.[1];
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJsonObject(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`failed to parse JSON input: ${(err as Error).message}`);
  }
  if (parsed === null) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw badRequest('failed to parse JSON input: the body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Reads take their parameters from the query string, as Vault does; `list` and `help` are not data. */
function queryData(url: URL): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [k, v] of url.searchParams) if (k !== 'list' && k !== 'help') data[k] = v;
  return data;
}

function operationOf(method: string, url: URL): Operation {
  switch (method) {
    case 'GET':
    case 'HEAD':
      return ['true', '1'].includes(url.searchParams.get('list') ?? '') ? 'list' : 'read';
    case 'LIST':
      return 'list';
    case 'POST':
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      throw new VaultHttpError(405, ['unsupported operation']);
  }
}

function envelopeOf(reply: JsonReply, requestId: string): Envelope {
  return {
    request_id: requestId,
    lease_id: reply.lease?.id ?? '',
    renewable: reply.lease?.renewable ?? false,
    lease_duration: reply.lease?.duration ?? 0,
    data: reply.data ?? null,
    wrap_info: null,
    warnings: reply.warnings !== undefined && reply.warnings.length > 0 ? [...reply.warnings] : null,
    auth: reply.auth ?? null,
  };
}

export class VaultHttpServer {
  private readonly server: Server;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly state: VaultState) {
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Stops listening and drops every connection, hung requests included. */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const token = presentedToken(req.headers);
    const record: RequestRecord = {
      at: this.state.now(),
      method,
      path: '',
      namespace: normalizeNamespacePath(headerValue(req.headers['x-vault-namespace'])),
      hadToken: token !== undefined,
      wrapped: false,
      status: 0,
    };
    this.state.requests.push(record);
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch {
      return; // the client went away
    }
    // A hung Vault keeps the connection open and never answers; close() or the client ends it.
    if (this.state.faults.hang === true) return;
    const latency = this.state.faults.latencyMs ?? 0;
    if (latency > 0) await this.delay(latency);
    const redirect = this.state.faults.redirectTo;
    if (redirect !== undefined) {
      record.status = redirect.status ?? 307;
      if (!res.destroyed) {
        res.writeHead(record.status, { Location: `${redirect.origin}${req.url ?? '/'}` }).end();
      }
      return;
    }

    let out: Outgoing;
    try {
      out = await this.process(req, method, token, body, record);
    } catch (err) {
      if (err instanceof VaultHttpError) {
        out = { status: err.status, body: { errors: [...err.errors] }, headers: err.headers };
      } else {
        record.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
        const e = internalError();
        out = { status: e.status, body: { errors: [...e.errors] } };
      }
    }
    record.status = out.status;
    if (res.destroyed) return;
    const headers: Record<string, string> = { 'Cache-Control': 'no-store', ...(out.headers ?? {}) };
    if (out.body === undefined || method === 'HEAD') {
      res.writeHead(out.status, headers).end();
      return;
    }
    res
      .writeHead(out.status, { ...headers, 'Content-Type': 'application/json' })
      .end(JSON.stringify(out.body));
  }

  private async process(
    req: IncomingMessage,
    method: string,
    token: string | undefined,
    body: Buffer,
    record: RequestRecord,
  ): Promise<Outgoing> {
    const url = new URL(req.url ?? '/', 'http://vault.invalid');
    if (!url.pathname.startsWith('/v1/')) throw new VaultHttpError(404, []);
    let rawPath: string;
    try {
      rawPath = decodeURIComponent(url.pathname.slice('/v1/'.length));
    } catch {
      throw badRequest('invalid request path encoding');
    }
    const { namespace, path } = this.state.resolve(headerValue(req.headers['x-vault-namespace']), rawPath);
    record.path = path;
    if (namespace !== undefined) record.namespace = namespace.path;

    const exempt = namespace === ROOT_NAMESPACE && ALWAYS_ANSWERED.has(path);
    if (!exempt && (this.state.faults.sealed === true || this.state.health === 'uninitialized'))
      throw sealedError();
    if (!exempt && this.state.faults.rateLimited === true) throw rateLimitedError(path);

    const wrapHeader = headerValue(req.headers['x-vault-wrap-ttl']);
    let wrapTtl: number | undefined;
    if (wrapHeader !== undefined) {
      wrapTtl = parseDurationSeconds(wrapHeader);
      if (wrapTtl === undefined || wrapTtl <= 0) throw badRequest(`error parsing wrap TTL "${wrapHeader}"`);
    }

    let operation = operationOf(method, url);
    const data = operation === 'read' || operation === 'list' ? queryData(url) : parseJsonObject(body);

    // Expiry is applied lazily, before anything reads state, so an injected clock is enough.
    this.state.sweep();

    const match = namespace === undefined ? undefined : this.state.mounts.match(namespace, path);
    if (match?.route.exists !== undefined && operation === 'update' && namespace !== undefined) {
      if (!match.route.exists({ namespace, params: match.params })) operation = 'create';
    }

    // sys/wrapping/unwrap with no `token` parameter authenticates with the wrapping token itself.
    const selfUnwrap = match?.route.unwrap === true && (typeof data.token !== 'string' || data.token === '');
    let caller: TokenEntry | undefined;
    if (match?.route.unauthenticated !== true && !selfUnwrap) {
      if (token === undefined) throw permissionDenied();
      const te = this.state.tokens.get(token);
      if (te === undefined || (namespace !== undefined && !isWithin(namespace, te.namespace)))
        throw invalidToken();
      if (namespace === undefined) throw noHandler(`${record.namespace}${path}`);
      const caps = this.state.capabilities(te, namespace, path);
      if (!allows(caps, operation) || (match?.route.sudo === true && !caps.has('sudo')))
        throw permissionDenied();
      if (match === undefined) throw noHandler(path);
      caller = te;
      // Each authorised request is one use; the last one is served, then the token is revoked.
      if (te.numUses > 0) {
        te.numUses -= 1;
        if (te.numUses === 0) te.exhausted = true;
      }
    }
    // Only reachable for unauthenticated requests; an unknown path there is denied like any other.
    if (match === undefined || namespace === undefined) throw permissionDenied();

    try {
      const handler: Handler | undefined = match.route.operations[operation];
      if (handler === undefined) throw unsupportedOperation();
      const fields = new Fields(data, match.route.fields ?? {});
      const requestId = newUuid();
      const ctx: RequestContext = {
        requestId,
        namespace,
        path,
        mountPath: match.mountPath,
        operation,
        method,
        params: match.params,
        fields,
        token: caller,
        rawToken: token,
        now: this.state.now(),
      };
      let reply: Reply = await handler(ctx);
      const unknown = fields.unknownNames();
      if (unknown.length > 0) {
        const warning = `Endpoint ignored these unrecognized parameters: [${unknown.join(' ')}]`;
        // A warning turns an empty 204 into a 200 envelope, as in Vault.
        if (reply.kind === 'empty' && reply.status === 204) reply = { kind: 'json', warnings: [warning] };
        else if (reply.kind === 'json') reply = { ...reply, warnings: [...(reply.warnings ?? []), warning] };
      }
      if (reply.kind === 'empty') return { status: reply.status };
      if (reply.kind === 'raw') return { status: reply.status, body: reply.body };
      const envelope = envelopeOf(reply, requestId);
      if (wrapTtl !== undefined && (envelope.data !== null || envelope.auth !== null)) {
        record.wrapped = true;
        return { status: 200, body: this.state.wrap(namespace, path, envelope, wrapTtl, requestId) };
      }
      return { status: 200, body: envelope };
    } finally {
      if (caller?.exhausted === true) this.state.revokeTokenTree(caller, 'uses-exhausted');
    }
  }
}
