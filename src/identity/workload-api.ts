/**
 * SPIFFE Workload API client: where svid-broker gets its own X.509-SVID, the trust bundles it verifies
 * callers against, and JWT-SVIDs. Shaped after go-spiffe's workloadapi: a source connects, blocks until
 * the first update, then keeps watching the stream and swaps its state as one immutable snapshot, so a
 * reader never sees an SVID from one update next to bundles from another.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { isIP } from 'node:net';

import * as grpc from '@grpc/grpc-js';
import { decodeJwt } from 'jose';

import { BrokerError, type ErrorCode } from '../errors.js';
import { splitConcatenatedDer } from './der.js';
import type {
  JwtBundle,
  JwtBundleSource,
  X509Bundle,
  X509BundleSource,
  X509Svid,
  X509SvidSource,
} from './types.js';
import {
  fromProtoStruct,
  loadWorkloadApiProto,
  workloadApiMetadata,
  type WorkloadApiClient,
} from './workload-proto.js';
import type * as wire from './workload-proto.js';

/** Where a SPIRE agent listens by default. Never used implicitly: pass it if you want it. */
export const DEFAULT_SPIRE_AGENT_SOCKET = 'unix:///tmp/spire-agent/public/api.sock';

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/**
 * A failed Workload API call. `grpcCode` is the status the agent returned (undefined when the failure
 * is ours, e.g. an unparsable response). Only INVALID_ARGUMENT keeps its code; anything else means the
 * broker cannot obtain its identity material, which is UNAVAILABLE to whoever is waiting on it.
 */
export class WorkloadApiError extends BrokerError {
  readonly grpcCode: grpc.status | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { reason: string; grpcCode?: grpc.status; cause?: unknown },
  ) {
    super(code, message, { reason: opts.reason, cause: opts.cause });
    this.name = 'WorkloadApiError';
    this.grpcCode = opts.grpcCode;
  }
}

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';
}

function fromGrpcStatus(
  prefix: string,
  code: grpc.status,
  details: string,
  cause?: unknown,
): WorkloadApiError {
  const name = grpc.status[code] ?? String(code);
  return new WorkloadApiError(
    code === grpc.status.INVALID_ARGUMENT ? 'INVALID_ARGUMENT' : 'UNAVAILABLE',
    `${prefix}: ${name}: ${details}`,
    { reason: `workload_api_${name.toLowerCase()}`, grpcCode: code, cause },
  );
}

function parseFailure(prefix: string, message: string, cause?: unknown): WorkloadApiError {
  return new WorkloadApiError('UNAVAILABLE', `${prefix}: ${message}`, {
    reason: 'workload_api_bad_response',
    cause,
  });
}

function closedError(prefix: string): WorkloadApiError {
  return new WorkloadApiError('UNAVAILABLE', `${prefix}: source is closed`, { reason: 'source_closed' });
}

// ---------------------------------------------------------------------------------------------------------
// Endpoint
// ---------------------------------------------------------------------------------------------------------

function badEndpoint(value: string, why: string): BrokerError {
  return new BrokerError(
    'INVALID_ARGUMENT',
    `workload api: SPIFFE_ENDPOINT_SOCKET ${JSON.stringify(value)} ${why}`,
    {
      reason: 'invalid_endpoint_socket',
      field: 'SPIFFE_ENDPOINT_SOCKET',
    },
  );
}

/**
 * Turns a SPIFFE_ENDPOINT_SOCKET value into a grpc-js target: `unix:///abs/path` stays as is,
 * `tcp://IP:port` becomes `IP:port`. Relative unix paths, host names and other schemes are refused
 * rather than guessed at, since a wrong guess means talking to the wrong agent.
 */
export function parseEndpointSocket(
  value: string | undefined = process.env['SPIFFE_ENDPOINT_SOCKET'],
): string {
  if (value === undefined || value === '') {
    throw badEndpoint(
      '',
      `is not set (a SPIRE agent usually listens on ${DEFAULT_SPIRE_AGENT_SOCKET}; pass it explicitly)`,
    );
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badEndpoint(value, 'is not a URI (expected unix:///abs/path or tcp://IP:port)');
  }
  if (url.username !== '' || url.password !== '') throw badEndpoint(value, 'must not carry user info');
  if (url.search !== '' || url.hash !== '') throw badEndpoint(value, 'must not have a query or fragment');
  switch (url.protocol) {
    case 'unix:':
      // `unix://relative/path` parses with a host: grpc-js would resolve it against the cwd.
      if (url.host !== '') throw badEndpoint(value, 'must use an absolute path: unix:///abs/path');
      if (!url.pathname.startsWith('/') || url.pathname === '/') {
        throw badEndpoint(value, 'must use an absolute path: unix:///abs/path');
      }
      if (url.pathname.includes('%')) throw badEndpoint(value, 'must not be percent-encoded');
      return `unix://${url.pathname}`;
    case 'tcp:': {
      if (url.pathname !== '' && url.pathname !== '/') throw badEndpoint(value, 'must not have a path');
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      if (isIP(host) === 0) throw badEndpoint(value, 'host must be an IP address');
      if (url.port === '') throw badEndpoint(value, 'must include a port');
      return isIP(host) === 6 ? `[${host}]:${url.port}` : `${host}:${url.port}`;
    }
    default:
      throw badEndpoint(value, 'must use the unix or tcp scheme');
  }
}

/** Accepts either a SPIFFE_ENDPOINT_SOCKET-style URI or an already parsed grpc target. */
function toGrpcTarget(endpoint: string): string {
  return /^(unix|tcp):/.test(endpoint) ? parseEndpointSocket(endpoint) : endpoint;
}

// ---------------------------------------------------------------------------------------------------------
// SPIFFE IDs, just enough to key bundles (full validation lives in spiffe-id.ts)
// ---------------------------------------------------------------------------------------------------------

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

/** `spiffe://td` and `td` both name trust domain `td`; map keys on the wire use the former. */
function normaliseTrustDomain(value: string): string {
  const td = value.startsWith('spiffe://') ? value.slice('spiffe://'.length) : value;
  if (!TRUST_DOMAIN.test(td)) throw new Error(`invalid trust domain ${JSON.stringify(value)}`);
  return td;
}

function trustDomainOfWorkloadId(spiffeId: string): string {
  const match = /^spiffe:\/\/([^/]+)\/./.exec(spiffeId);
  if (!match?.[1]) throw new Error(`invalid workload SPIFFE ID ${JSON.stringify(spiffeId)}`);
  return normaliseTrustDomain(match[1]);
}

// ---------------------------------------------------------------------------------------------------------
// Stream watching shared by the sources
// ---------------------------------------------------------------------------------------------------------

/** Reconnect delays: initialMs, then +stepMs per consecutive failure, capped at maxMs (go-spiffe's shape). */
export interface BackoffOptions {
  initialMs: number;
  stepMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 1000,
  stepMs: 1000,
  maxMs: 30_000,
});

/** pino-compatible; the sources log reconnects and bad updates, never key material. */
export interface WorkloadApiLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const silentLogger: WorkloadApiLogger = { debug() {}, warn() {}, error() {} };

export interface WorkloadSourceOptions {
  /** A grpc target from parseEndpointSocket(), or a `unix:`/`tcp:` URI which is parsed here. */
  endpoint: string;
  logger?: WorkloadApiLogger;
  /** Aborting closes the source (and fails create() if it is still waiting). */
  signal?: AbortSignal;
  backoff?: Partial<BackoffOptions>;
  /** How long create() waits for the first update before failing. Default 30 s. */
  timeoutMs?: number;
}

const DEFAULT_FIRST_UPDATE_TIMEOUT_MS = 30_000;

/** Update listeners get the new snapshot; error listeners get every watch failure and whether it ends the watch. */
export type UpdateListener<T> = (snapshot: T) => void;
export type WatchErrorListener = (err: WorkloadApiError, fatal: boolean) => void;

interface WatchSpec<TMessage, TState> {
  /** Prefix for errors and logs, e.g. `x509source`. */
  name: string;
  open(client: WorkloadApiClient, metadata: grpc.Metadata): grpc.ClientReadableStream<TMessage>;
  parse(message: TMessage): TState;
}

// The agent says these will not change on retry: a malformed request or an API it does not offer.
const FATAL_CODES: ReadonlySet<grpc.status> = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.UNIMPLEMENTED,
]);

class StreamWatcher<TMessage, TState> {
  private state: TState | undefined;
  private closed = false;
  private stopped = false;
  private stream: grpc.ClientReadableStream<TMessage> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private lastError: WorkloadApiError | undefined;
  private pendingFirst: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private readonly updateListeners = new Set<UpdateListener<TState>>();
  private readonly errorListeners = new Set<WatchErrorListener>();
  private readonly client: WorkloadApiClient;
  private readonly backoff: BackoffOptions;
  private readonly logger: WorkloadApiLogger;
  private readonly onAbort = (): void => {
    this.settleFirst(
      new WorkloadApiError('UNAVAILABLE', `${this.spec.name}: aborted`, {
        reason: 'aborted',
        cause: this.signal?.reason,
      }),
    );
    this.close();
  };

  constructor(
    private readonly spec: WatchSpec<TMessage, TState>,
    private readonly options: WorkloadSourceOptions,
    private readonly signal = options.signal,
  ) {
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this.logger = options.logger ?? silentLogger;
    const { Client } = loadWorkloadApiProto();
    // The channel's own reconnect backoff follows ours; otherwise a call made after a restarted agent
    // came back would still fail fast until grpc-js's (much longer) subchannel backoff elapsed.
    this.client = new Client(toGrpcTarget(options.endpoint), grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': this.backoff.initialMs,
      'grpc.max_reconnect_backoff_ms': Math.max(this.backoff.maxMs, this.backoff.initialMs),
    });
  }

  /** Starts watching and resolves with the first update; on failure the watcher is closed. */
  async start(): Promise<void> {
    if (this.signal?.aborted) {
      this.close();
      throw new WorkloadApiError('UNAVAILABLE', `${this.spec.name}: aborted`, {
        reason: 'aborted',
        cause: this.signal.reason,
      });
    }
    const first = new Promise<void>((resolve, reject) => {
      this.pendingFirst = { resolve, reject };
    });
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_FIRST_UPDATE_TIMEOUT_MS;
    const timer = setTimeout(() => {
      const last = this.lastError ? ` (last error: ${this.lastError.message})` : '';
      this.settleFirst(
        new WorkloadApiError('UNAVAILABLE', `${this.spec.name}: no update within ${timeoutMs} ms${last}`, {
          reason: 'workload_api_timeout',
          grpcCode: this.lastError?.grpcCode,
          cause: this.lastError,
        }),
      );
    }, timeoutMs);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.connect();
    try {
      await first;
    } catch (err) {
      this.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  current(): TState {
    if (this.closed) throw closedError(this.spec.name);
    if (this.state === undefined) throw closedError(this.spec.name); // unreachable once start() resolved
    return this.state;
  }

  onUpdate(listener: UpdateListener<TState>): () => void {
    if (this.closed) throw closedError(this.spec.name);
    this.updateListeners.add(listener);
    return () => this.updateListeners.delete(listener);
  }

  onError(listener: WatchErrorListener): () => void {
    if (this.closed) throw closedError(this.spec.name);
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.stream?.cancel();
    this.stream = undefined;
    this.client.close();
    this.updateListeners.clear();
    this.errorListeners.clear();
    this.settleFirst(closedError(this.spec.name));
  }

  private settleFirst(err?: Error): void {
    const pending = this.pendingFirst;
    this.pendingFirst = undefined;
    if (!pending) return;
    if (err) pending.reject(err);
    else pending.resolve();
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.closed || this.stopped) return;
    const stream = this.spec.open(this.client, workloadApiMetadata());
    this.stream = stream;
    stream.on('data', (message: TMessage) => {
      if (this.stream === stream) this.onMessage(message);
    });
    // 'status' arrives exactly once per call, for clean ends and failures alike; the 'error' listener
    // only keeps an unhandled 'error' event from crashing the process.
    stream.on('error', () => {});
    stream.on('status', (status: grpc.StatusObject) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.onStreamEnd(status);
    });
  }

  private onMessage(message: TMessage): void {
    // Any message proves the agent is reachable again, so the next outage starts from the first step.
    this.failures = 0;
    let next: TState;
    try {
      next = this.spec.parse(message);
    } catch (cause) {
      // Like go-spiffe: keep serving the previous state and wait for the next update.
      const err =
        cause instanceof WorkloadApiError ? cause : parseFailure(this.spec.name, errorMessage(cause), cause);
      this.lastError = err;
      this.logger.error({ err: err.message }, `${this.spec.name}: ignoring unusable update`);
      this.emitError(err, false);
      return;
    }
    this.state = next;
    this.settleFirst();
    for (const listener of [...this.updateListeners]) {
      try {
        listener(next);
      } catch (err) {
        this.logger.error({ err: errorMessage(err) }, `${this.spec.name}: update listener threw`);
      }
    }
  }

  private onStreamEnd(status: grpc.StatusObject): void {
    if (this.closed) return;
    const err =
      status.code === grpc.status.OK
        ? fromGrpcStatus(this.spec.name, grpc.status.UNAVAILABLE, 'stream ended by server')
        : fromGrpcStatus(this.spec.name, status.code, status.details);
    this.lastError = err;
    if (FATAL_CODES.has(status.code)) {
      // Retrying cannot help; keep the last good state for readers and tell listeners.
      this.stopped = true;
      this.logger.error(
        { code: grpc.status[status.code], details: status.details },
        `${this.spec.name}: watch stopped`,
      );
      this.emitError(err, true);
      this.settleFirst(err);
      return;
    }
    const delay = Math.min(this.backoff.initialMs + this.failures * this.backoff.stepMs, this.backoff.maxMs);
    this.failures += 1;
    this.logger.warn(
      { code: grpc.status[status.code], details: status.details, retryInMs: delay },
      `${this.spec.name}: watch failed, reconnecting`,
    );
    this.emitError(err, false);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private emitError(err: WorkloadApiError, fatal: boolean): void {
    for (const listener of [...this.errorListeners]) {
      try {
        listener(err, fatal);
      } catch (thrown) {
        this.logger.error({ err: errorMessage(thrown) }, `${this.spec.name}: error listener threw`);
      }
    }
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------------------
// X509Source
// ---------------------------------------------------------------------------------------------------------

/** One update of the X.509 stream. Replaced as a whole, never mutated. */
export interface X509Context {
  /** All SVIDs the agent issued to this workload; [0] is the default identity. */
  readonly svids: readonly X509Svid[];
  /** Own trust domain(s) from the SVIDs plus federated bundles, keyed by bare trust domain name. */
  readonly bundles: ReadonlyMap<string, X509Bundle>;
  /** DER CRLs, carried as sent (SPIRE currently sends none). */
  readonly crl: readonly Uint8Array[];
}

function parseX509Svid(message: wire.X509SVID): X509Svid {
  const certChain = splitConcatenatedDer(message.x509_svid);
  const leafDer = certChain[0];
  if (leafDer === undefined) throw new Error(`SVID ${message.spiffe_id}: empty certificate chain`);
  trustDomainOfWorkloadId(message.spiffe_id);
  // The agent is trusted, but a mismatched ID or key would only surface later as baffling TLS failures.
  const leaf = new X509Certificate(leafDer);
  const uris = (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
  if (uris.length !== 1 || uris[0] !== message.spiffe_id) {
    throw new Error(`SVID ${message.spiffe_id}: leaf URI SAN is ${JSON.stringify(uris)}`);
  }
  if (message.x509_svid_key.length === 0) throw new Error(`SVID ${message.spiffe_id}: missing private key`);
  const privateKey = new Uint8Array(message.x509_svid_key);
  const key = createPrivateKey({ key: Buffer.from(privateKey), format: 'der', type: 'pkcs8' });
  if (!leaf.checkPrivateKey(key)) {
    throw new Error(`SVID ${message.spiffe_id}: private key does not match leaf`);
  }
  return Object.freeze({
    spiffeId: message.spiffe_id,
    certChain: Object.freeze(certChain),
    privateKey,
    hint: message.hint,
  });
}

function makeX509Bundle(trustDomain: string, der: Uint8Array): X509Bundle {
  return Object.freeze({ trustDomain, authorities: Object.freeze(splitConcatenatedDer(der)) });
}

/** Parses one X509SVIDResponse into a snapshot; throws if any part is unusable. */
export function parseX509Context(response: wire.X509SVIDResponse): X509Context {
  if (response.svids.length === 0) throw new Error('response carries no SVIDs');
  const svids = Object.freeze(response.svids.map(parseX509Svid));
  const bundles = new Map<string, X509Bundle>();
  for (const svid of response.svids) {
    const td = trustDomainOfWorkloadId(svid.spiffe_id);
    if (!bundles.has(td)) bundles.set(td, makeX509Bundle(td, svid.bundle));
  }
  for (const [key, der] of Object.entries(response.federated_bundles)) {
    const td = normaliseTrustDomain(key);
    // A "federated" bundle for our own trust domain must not replace the roots that came with our SVID.
    if (!bundles.has(td)) bundles.set(td, makeX509Bundle(td, der));
  }
  const crl = Object.freeze(response.crl.map((entry) => new Uint8Array(entry)));
  return Object.freeze({ svids, bundles, crl });
}

/**
 * Contract: holds the workload's current X.509-SVIDs and bundles from the Workload API, always as one
 * consistent snapshot; every method throws after close().
 */
export class X509Source implements X509SvidSource, X509BundleSource {
  private constructor(private readonly watcher: StreamWatcher<wire.X509SVIDResponse, X509Context>) {}

  /** Connects and resolves once the first update arrived. */
  static async create(options: WorkloadSourceOptions): Promise<X509Source> {
    const watcher = new StreamWatcher<wire.X509SVIDResponse, X509Context>(
      {
        name: 'x509source',
        open: (client, metadata) => client.FetchX509SVID({}, metadata),
        parse: parseX509Context,
      },
      options,
    );
    await watcher.start();
    return new X509Source(watcher);
  }

  /** The default identity (svids[0]). */
  getX509Svid(): X509Svid {
    const svid = this.watcher.current().svids[0];
    if (svid === undefined) throw closedError('x509source'); // parseX509Context guarantees one
    return svid;
  }

  getX509Svids(): readonly X509Svid[] {
    return this.watcher.current().svids;
  }

  getX509BundleForTrustDomain(trustDomain: string): X509Bundle | undefined {
    const bundles = this.watcher.current().bundles;
    try {
      return bundles.get(normaliseTrustDomain(trustDomain));
    } catch {
      return undefined;
    }
  }

  /** The whole current snapshot, for callers that need SVID and bundles from the same update. */
  getX509Context(): X509Context {
    return this.watcher.current();
  }

  /** Every bundle in the current snapshot: own trust domain and federated ones. */
  getX509Bundles(): X509Bundle[] {
    return [...this.watcher.current().bundles.values()];
  }

  /** Calls `listener` after each applied update; returns the unsubscribe function. */
  onUpdate(listener: UpdateListener<X509Context>): () => void {
    return this.watcher.onUpdate(listener);
  }

  /** Calls `listener` on each watch failure; `fatal` means the watch stopped for good. */
  onError(listener: WatchErrorListener): () => void {
    return this.watcher.onError(listener);
  }

  close(): void {
    this.watcher.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// JWT bundles
// ---------------------------------------------------------------------------------------------------------

function parseJwks(td: string, bytes: Uint8Array): JwtBundle {
  const doc: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new Error(`JWT bundle for ${td} is not a JWKS document`);
  }
  const keys = (doc as { keys: unknown[] }).keys;
  if (!keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) {
    throw new Error(`JWT bundle for ${td} has a key that is not an object`);
  }
  return Object.freeze({ trustDomain: td, jwks: doc as JwtBundle['jwks'] });
}

/** Parses one JWTBundlesResponse into a map keyed by bare trust domain. */
export function parseJwtBundles(response: wire.JWTBundlesResponse): ReadonlyMap<string, JwtBundle> {
  const bundles = new Map<string, JwtBundle>();
  for (const [key, bytes] of Object.entries(response.bundles)) {
    const td = normaliseTrustDomain(key);
    bundles.set(td, parseJwks(td, bytes));
  }
  return bundles;
}

/** Contract: holds the current JWT bundles (JWKS per trust domain); every method throws after close(). */
export class JwtBundleSourceClient implements JwtBundleSource {
  private constructor(
    private readonly watcher: StreamWatcher<wire.JWTBundlesResponse, ReadonlyMap<string, JwtBundle>>,
  ) {}

  static async create(options: WorkloadSourceOptions): Promise<JwtBundleSourceClient> {
    const watcher = new StreamWatcher<wire.JWTBundlesResponse, ReadonlyMap<string, JwtBundle>>(
      {
        name: 'jwtbundlesource',
        open: (client, metadata) => client.FetchJWTBundles({}, metadata),
        parse: parseJwtBundles,
      },
      options,
    );
    await watcher.start();
    return new JwtBundleSourceClient(watcher);
  }

  getJwtBundleForTrustDomain(trustDomain: string): JwtBundle | undefined {
    const bundles = this.watcher.current();
    try {
      return bundles.get(normaliseTrustDomain(trustDomain));
    } catch {
      return undefined;
    }
  }

  getJwtBundles(): ReadonlyMap<string, JwtBundle> {
    return this.watcher.current();
  }

  /** Calls `listener` after each applied update; returns the unsubscribe function. */
  onUpdate(listener: UpdateListener<ReadonlyMap<string, JwtBundle>>): () => void {
    return this.watcher.onUpdate(listener);
  }

  /** Calls `listener` on each watch failure; `fatal` means the watch stopped for good. */
  onError(listener: WatchErrorListener): () => void {
    return this.watcher.onError(listener);
  }

  close(): void {
    this.watcher.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Unary calls
// ---------------------------------------------------------------------------------------------------------

export interface UnaryCallOptions {
  /** Deadline for the call. Default 10 s. */
  timeoutMs?: number;
}

const DEFAULT_UNARY_TIMEOUT_MS = 10_000;

export interface JwtSvidResult {
  spiffeId: string;
  token: string;
  expiresAt: Date;
  hint: string;
}

export interface ValidatedJwtSvid {
  spiffeId: string;
  claims: Record<string, unknown>;
}

/** Runs one unary call on a short-lived channel; the Workload API socket is local, so setup is cheap. */
async function callUnary<T>(
  name: string,
  endpoint: string,
  options: UnaryCallOptions,
  invoke: (
    client: WorkloadApiClient,
    callOptions: Partial<grpc.CallOptions>,
    callback: grpc.requestCallback<T>,
  ) => void,
): Promise<T> {
  const { Client } = loadWorkloadApiProto();
  const client = new Client(toGrpcTarget(endpoint), grpc.credentials.createInsecure());
  try {
    return await new Promise<T>((resolve, reject) => {
      const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_UNARY_TIMEOUT_MS);
      invoke(client, { deadline }, (err, response) => {
        if (err) {
          reject(isServiceError(err) ? fromGrpcStatus(name, err.code, err.details, err) : err);
        } else if (response === undefined) {
          reject(parseFailure(name, 'empty response'));
        } else {
          resolve(response);
        }
      });
    });
  } finally {
    client.close();
  }
}

/** Fetches a JWT-SVID for the audience (svids[0] of the response: the default or the requested ID). */
export async function fetchJwtSvid(
  endpoint: string,
  audience: string[],
  spiffeId?: string,
  options: UnaryCallOptions = {},
): Promise<JwtSvidResult> {
  const response = await callUnary<wire.JWTSVIDResponse>(
    'fetchjwtsvid',
    endpoint,
    options,
    (client, opts, cb) =>
      client.FetchJWTSVID({ audience, spiffe_id: spiffeId ?? '' }, workloadApiMetadata(), opts, cb),
  );
  const svid = response.svids[0];
  if (svid === undefined) throw parseFailure('fetchjwtsvid', 'response carries no JWT-SVID');
  let exp: number | undefined;
  try {
    exp = decodeJwt(svid.svid).exp;
  } catch (cause) {
    throw parseFailure('fetchjwtsvid', 'JWT-SVID is not a JWT', cause);
  }
  if (exp === undefined) throw parseFailure('fetchjwtsvid', 'JWT-SVID has no exp claim');
  return { spiffeId: svid.spiffe_id, token: svid.svid, expiresAt: new Date(exp * 1000), hint: svid.hint };
}

/** Asks the agent to validate a JWT-SVID for the audience; resolves with its SPIFFE ID and claims. */
export async function validateJwtSvid(
  endpoint: string,
  audience: string,
  svid: string,
  options: UnaryCallOptions = {},
): Promise<ValidatedJwtSvid> {
  const response = await callUnary<wire.ValidateJWTSVIDResponse>(
    'validatejwtsvid',
    endpoint,
    options,
    (client, opts, cb) => client.ValidateJWTSVID({ audience, svid }, workloadApiMetadata(), opts, cb),
  );
  return { spiffeId: response.spiffe_id, claims: fromProtoStruct(response.claims) };
}
