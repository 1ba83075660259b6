/**
 * A SPIFFE Workload API server for the dev stack and tests. It speaks the real protocol on a Unix
 * socket, one socket per workload, so the broker's client code runs unchanged against it and against a
 * SPIRE agent. Which identity a socket hands out comes from a provider; the server only encodes it and
 * pushes the full state again whenever the provider says it changed.
 */
import { lstat, mkdir, chmod, unlink } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';

import { concatDer } from '../identity/der.js';
import type { X509Svid } from '../identity/types.js';
import {
  WORKLOAD_API_HEADER,
  loadWorkloadApiProto,
  toProtoStruct,
  type JWTBundlesResponse,
  type WorkloadApiHandlers,
  type X509BundlesResponse,
  type X509SVIDResponse,
} from '../identity/workload-proto.js';

/** What one socket's workload currently holds. */
export interface WorkloadIdentity {
  /** svids[0] is the default identity. Empty means the workload has no identity (yet). */
  svids: X509Svid[];
  /** Own trust domain CA certificates (DER). */
  bundle: Uint8Array[];
  /** Trust domain name -> DER CA certificates. */
  federatedBundles: Map<string, Uint8Array[]>;
  /** Trust domain name -> JWKS, own and federated. */
  jwtBundles: Map<string, { keys: Array<Record<string, unknown>> }>;
}

/** Contract: current() is cheap and reflects the latest state; onChange fires after every change. */
export interface WorkloadIdentityProvider {
  current(): WorkloadIdentity;
  mintJwtSvid(audience: string[], spiffeId?: string): Promise<string>;
  /** Returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

// Same wording as SPIRE, so logs and tests read the same against either.
const NO_IDENTITY = 'no identity issued';
const MISSING_HEADER = 'security header missing from request';

// JWT-SVID algorithms per the SPIFFE JWT-SVID standard; `none` and HMAC never verify.
const JWT_SVID_ALGS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

/** A handler failure that becomes a gRPC status. */
class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof StatusError) return { code: err.code, details: err.details };
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}

function hasSecurityHeader(metadata: grpc.Metadata): boolean {
  const values = metadata.get(WORKLOAD_API_HEADER);
  return values.length === 1 && values[0] === 'true';
}

function requireSecurityHeader(metadata: grpc.Metadata): void {
  if (!hasSecurityHeader(metadata)) throw new StatusError(grpc.status.INVALID_ARGUMENT, MISSING_HEADER);
}

/** Runs an async unary handler body; StatusErrors keep their code, anything else becomes INTERNAL. */
function respond<T>(callback: grpc.sendUnaryData<T>, work: () => Promise<T>): void {
  work().then(
    (response) => callback(null, response),
    (err: unknown) => callback(toServiceError(err)),
  );
}

function spiffeTd(td: string): string {
  return `spiffe://${td}`;
}

function encodeX509SvidResponse(identity: WorkloadIdentity): X509SVIDResponse {
  const bundle = concatDer(identity.bundle);
  const federated: Record<string, Uint8Array> = {};
  for (const [td, certs] of identity.federatedBundles) federated[spiffeTd(td)] = concatDer(certs);
  return {
    svids: identity.svids.map((svid) => ({
      spiffe_id: svid.spiffeId,
      x509_svid: concatDer(svid.certChain),
      x509_svid_key: svid.privateKey,
      bundle,
      hint: svid.hint,
    })),
    crl: [],
    federated_bundles: federated,
  };
}

function ownTrustDomain(identity: WorkloadIdentity): string | undefined {
  const id = identity.svids[0]?.spiffeId;
  return id === undefined ? undefined : /^spiffe:\/\/([^/]+)/.exec(id)?.[1];
}

function encodeX509BundlesResponse(identity: WorkloadIdentity): X509BundlesResponse {
  const bundles: Record<string, Uint8Array> = {};
  for (const [td, certs] of identity.federatedBundles) bundles[spiffeTd(td)] = concatDer(certs);
  const own = ownTrustDomain(identity);
  if (own !== undefined) bundles[spiffeTd(own)] = concatDer(identity.bundle);
  return { crl: [], bundles };
}

function encodeJwtBundlesResponse(identity: WorkloadIdentity): JWTBundlesResponse {
  const bundles: Record<string, Uint8Array> = {};
  for (const [td, jwks] of identity.jwtBundles)
    bundles[spiffeTd(td)] = Buffer.from(JSON.stringify(jwks), 'utf8');
  return { bundles };
}

/** Verifies a JWT-SVID against the sub's own trust domain JWKS only, as the standard requires. */
async function verifyJwtSvid(
  identity: WorkloadIdentity,
  audience: string,
  token: string,
): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
  let sub: string | undefined;
  let kid: string | undefined;
  let alg: string | undefined;
  try {
    sub = decodeJwt(token).sub;
    ({ kid, alg } = decodeProtectedHeader(token));
  } catch {
    throw new StatusError(grpc.status.INVALID_ARGUMENT, 'unable to parse JWT token');
  }
  const td = sub === undefined ? undefined : /^spiffe:\/\/([^/]+)\/./.exec(sub)?.[1];
  if (td === undefined) throw new StatusError(grpc.status.INVALID_ARGUMENT, 'token has no SPIFFE ID subject');
  if (alg === undefined || !JWT_SVID_ALGS.includes(alg)) {
    throw new StatusError(
      grpc.status.INVALID_ARGUMENT,
      `unsupported token signature algorithm ${String(alg)}`,
    );
  }
  const jwk = identity.jwtBundles.get(td)?.keys.find((k) => k['use'] === 'jwt-svid' && k['kid'] === kid);
  if (jwk === undefined) {
    throw new StatusError(grpc.status.INVALID_ARGUMENT, `no JWT authority ${kid} for ${td}`);
  }
  // jose only accepts JWKs without `use` or with use "sig"; SPIFFE bundles say "jwt-svid".
  const { use: _use, ...bare } = jwk;
  try {
    const key = await importJWK(bare as JWK, alg);
    const { payload } = await jwtVerify(token, key, {
      audience,
      algorithms: [alg],
      requiredClaims: ['sub', 'aud', 'exp'],
    });
    return { spiffeId: sub as string, claims: payload as Record<string, unknown> };
  } catch (err) {
    throw new StatusError(grpc.status.INVALID_ARGUMENT, `token is invalid: ${(err as Error).message}`);
  }
}

/** Serves one workload's identity over the Workload API on a Unix socket. */
export class WorkloadApiServer {
  /** Open streams, each with the function that ends it and drops its provider subscription. */
  private readonly streams = new Set<(status: Partial<grpc.StatusObject>) => void>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: grpc.Server,
    /** Absolute path of the socket file. */
    readonly socketPath: string,
  ) {}

  /** The `unix:///abs/path` URI to put into SPIFFE_ENDPOINT_SOCKET. */
  get endpoint(): string {
    return `unix://${this.socketPath}`;
  }

  /** Binds `socketPath` (an absolute path or a `unix:///abs/path` URI) and starts serving. */
  static async start(socketPath: string, provider: WorkloadIdentityProvider): Promise<WorkloadApiServer> {
    const path = socketPath.startsWith('unix://') ? socketPath.slice('unix://'.length) : socketPath;
    if (!isAbsolute(path)) {
      throw new Error(`workload api server: socket path must be absolute: ${socketPath}`);
    }
    // mode only applies to directories this call creates; an existing directory keeps its mode.
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await removeStaleSocket(path);

    const server = new grpc.Server();
    const instance = new WorkloadApiServer(server, path);
    server.addService(loadWorkloadApiProto().service, instance.handlers(provider));
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      );
    });
    // grpc-js creates the socket with the process umask; only the owner should reach the identity.
    await chmod(path, 0o600);
    return instance;
  }

  /** Ends every open stream (clients see UNAVAILABLE and reconnect), stops the server, removes the socket. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const end of [...this.streams]) {
      end({ code: grpc.status.UNAVAILABLE, details: 'workload api server shutting down' });
    }
    await new Promise<void>((resolve) => {
      // Streams were ended above, so a graceful shutdown only waits for in-flight unary calls; the timer
      // is the backstop for a client that never reads its end of the stream.
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await unlink(this.socketPath).catch(() => {});
  }

  private handlers(provider: WorkloadIdentityProvider): WorkloadApiHandlers {
    return {
      FetchX509SVID: (call) => this.serveStream(call, provider, encodeX509SvidResponse),
      FetchX509Bundles: (call) => this.serveStream(call, provider, encodeX509BundlesResponse),
      FetchJWTBundles: (call) => this.serveStream(call, provider, encodeJwtBundlesResponse),
      FetchJWTSVID: (call, callback) =>
        respond(callback, async () => {
          requireSecurityHeader(call.metadata);
          const { audience, spiffe_id: wanted } = call.request;
          if (audience.length === 0) {
            throw new StatusError(grpc.status.INVALID_ARGUMENT, 'audience must be specified');
          }
          const identity = provider.current();
          const svid = wanted === '' ? identity.svids[0] : identity.svids.find((s) => s.spiffeId === wanted);
          if (svid === undefined) throw new StatusError(grpc.status.PERMISSION_DENIED, NO_IDENTITY);
          const token = await provider.mintJwtSvid(audience, wanted === '' ? undefined : wanted);
          return { svids: [{ spiffe_id: svid.spiffeId, svid: token, hint: svid.hint }] };
        }),
      ValidateJWTSVID: (call, callback) =>
        respond(callback, async () => {
          requireSecurityHeader(call.metadata);
          const { audience, svid } = call.request;
          if (audience === '') {
            throw new StatusError(grpc.status.INVALID_ARGUMENT, 'audience must be specified');
          }
          if (svid === '') throw new StatusError(grpc.status.INVALID_ARGUMENT, 'svid must be specified');
          const { spiffeId, claims } = await verifyJwtSvid(provider.current(), audience, svid);
          return { spiffe_id: spiffeId, claims: toProtoStruct(claims) };
        }),
    };
  }

  /**
   * Sends the full state at once and again on every provider change. A workload without SVIDs gets
   * PERMISSION_DENIED and the stream ends, as with SPIRE; the client retries until it has one.
   */
  private serveStream<Res>(
    call: grpc.ServerWritableStream<unknown, Res>,
    provider: WorkloadIdentityProvider,
    encode: (identity: WorkloadIdentity) => Res,
  ): void {
    if (!hasSecurityHeader(call.metadata)) {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: MISSING_HEADER });
      return;
    }
    if (this.closing) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'workload api server shutting down' });
      return;
    }
    let done = false;
    const finish = (status?: Partial<grpc.StatusObject>): void => {
      if (done) return;
      done = true;
      unsubscribe();
      this.streams.delete(finish);
      if (status && !call.cancelled) call.emit('error', status);
    };
    const push = (): void => {
      if (done || call.cancelled) return;
      let identity: WorkloadIdentity;
      try {
        identity = provider.current();
      } catch {
        finish({ code: grpc.status.INTERNAL, details: 'internal error' });
        return;
      }
      if (identity.svids.length === 0) {
        finish({ code: grpc.status.PERMISSION_DENIED, details: NO_IDENTITY });
        return;
      }
      call.write(encode(identity));
    };
    const unsubscribe = provider.onChange(push);
    this.streams.add(finish);
    call.on('cancelled', () => finish());
    call.on('close', () => finish());
    push();
  }
}

/** Removes a socket left behind by a previous run; refuses to delete anything that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) throw new Error(`workload api server: ${path} exists and is not a socket`);
  await unlink(path);
}
