import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { decodeJwt } from 'jose';

import { WorkloadApiServer, type WorkloadIdentity } from '../../../src/dev/workload-api-server.js';
import type { X509Svid } from '../../../src/identity/types.js';
import {
  JwtBundleSourceClient,
  WorkloadApiError,
  X509Source,
  fetchJwtSvid,
  validateJwtSvid,
  type WorkloadApiLogger,
  type WorkloadSourceOptions,
} from '../../../src/identity/workload-api.js';
import {
  loadWorkloadApiProto,
  workloadApiMetadata,
  type WorkloadApiClient,
  type X509SVIDResponse,
} from '../../../src/identity/workload-proto.js';
import { eventually } from '../../support/eventually.js';
import { FakeIdentityProvider } from '../../support/fake-identity-provider.js';
import {
  createQuickCa,
  createQuickJwtAuthority,
  issueQuickSvid,
  type QuickCa,
  type QuickJwtAuthority,
} from '../../support/quick-svid.js';

const FAST_BACKOFF = { initialMs: 20, stepMs: 20, maxMs: 100 };

/** Resolves with the first update for which `predicate` holds; rejects after `ms`. */
function waitForUpdate<T>(
  source: { onUpdate(listener: (snapshot: T) => void): () => void },
  predicate: (snapshot: T) => boolean,
  ms = 3000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching update within ${ms} ms`));
    }, ms);
    const unsubscribe = source.onUpdate((snapshot) => {
      if (!predicate(snapshot)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(snapshot);
    });
  });
}

function hex(der: Uint8Array | undefined): string {
  return Buffer.from(der ?? new Uint8Array()).toString('hex');
}

function expectWorkloadApiError(grpcCode: grpc.status, message?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof WorkloadApiError, `expected WorkloadApiError, got ${String(err)}`);
    assert.equal(err.grpcCode, grpcCode, err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

function recordingLogger(): WorkloadApiLogger & { warnings: Array<Record<string, unknown>> } {
  const warnings: Array<Record<string, unknown>> = [];
  return { warnings, debug() {}, error() {}, warn: (obj) => warnings.push(obj as Record<string, unknown>) };
}

describe('Workload API client against the dev Workload API server', function () {
  let dir: string;
  let socket: string;
  let endpoint: string;
  let ca: QuickCa;
  let federatedCa: QuickCa;
  let jwtAuthority: QuickJwtAuthority;
  let federatedJwt: QuickJwtAuthority;
  let svidA: X509Svid;
  let svidB: X509Svid;
  // Everything a test opens is closed in afterEach, whatever the test's outcome.
  const closers: Array<() => unknown> = [];

  function track<T extends { close(): unknown }>(thing: T): T {
    closers.push(() => thing.close());
    return thing;
  }

  function identity(svids: X509Svid[], extra: Partial<WorkloadIdentity> = {}): Partial<WorkloadIdentity> {
    return {
      svids,
      bundle: [ca.cert],
      jwtBundles: new Map([['example.org', jwtAuthority.jwks]]),
      ...extra,
    };
  }

  async function startServer(provider: FakeIdentityProvider): Promise<WorkloadApiServer> {
    return track(await WorkloadApiServer.start(socket, provider));
  }

  function sourceOptions(extra: Partial<WorkloadSourceOptions> = {}): WorkloadSourceOptions {
    return { endpoint, backoff: FAST_BACKOFF, timeoutMs: 3000, ...extra };
  }

  function rawClient(): WorkloadApiClient {
    const { Client } = loadWorkloadApiProto();
    return track(new Client(endpoint, grpc.credentials.createInsecure()));
  }

  before(async () => {
    ca = await createQuickCa('example.org');
    federatedCa = await createQuickCa('partner.test');
    jwtAuthority = await createQuickJwtAuthority('example.org');
    federatedJwt = await createQuickJwtAuthority('partner.test');
    svidA = await issueQuickSvid(ca, 'spiffe://example.org/agent/a', 'primary');
    svidB = await issueQuickSvid(ca, 'spiffe://example.org/agent/b');
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wlapi-'));
    socket = join(dir, 'agent', 'api.sock');
    endpoint = `unix://${socket}`;
  });

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('WorkloadApiServer', () => {
    it('creates the socket 0600 in a 0700 directory and reports its endpoint', async () => {
      const server = await startServer(new FakeIdentityProvider(identity([svidA])));
      assert.equal(server.endpoint, endpoint);
      assert.equal((await stat(socket)).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, 'agent'))).mode & 0o777, 0o700);
    });

    it('replaces a stale socket but refuses to delete a regular file', async () => {
      // A crashed agent: a process bound the socket and was SIGKILLed, so the file outlives it.
      await mkdir(join(dir, 'agent'));
      const child = spawn(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(socket)})`,
      ]);
      while (!(await stat(socket).catch(() => undefined))?.isSocket())
        await new Promise((r) => setTimeout(r, 10));
      child.kill('SIGKILL');
      await once(child, 'exit');
      assert.ok((await stat(socket)).isSocket(), 'stale socket file should remain');

      await startServer(new FakeIdentityProvider(identity([svidB])));
      const source = track(await X509Source.create(sourceOptions()));
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/b');

      const other = join(dir, 'not-a-socket');
      await writeFile(other, 'x');
      await assert.rejects(WorkloadApiServer.start(other, new FakeIdentityProvider()), /is not a socket/);
    });

    it('answers a call without the security header with INVALID_ARGUMENT', async () => {
      await startServer(new FakeIdentityProvider(identity([svidA]), jwtAuthority));
      const client = rawClient();
      const streamStatus = await new Promise<grpc.StatusObject>((resolve) => {
        const stream = client.FetchX509SVID({}, new grpc.Metadata());
        stream.on('error', () => {});
        stream.on('status', resolve);
      });
      assert.equal(streamStatus.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(streamStatus.details, 'security header missing from request');

      const wrongValue = new grpc.Metadata();
      wrongValue.set('workload.spiffe.io', 'false');
      const unaryErr = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.FetchJWTSVID({ audience: ['x'], spiffe_id: '' }, wrongValue, {}, (err) => resolve(err));
      });
      assert.equal(unaryErr?.code, grpc.status.INVALID_ARGUMENT);
    });

    it('sends x509_svid, key, bundle and federated bundles in the wire format', async () => {
      await startServer(
        new FakeIdentityProvider(
          identity([svidA], { federatedBundles: new Map([['partner.test', [federatedCa.cert]]]) }),
        ),
      );
      const first = await new Promise<X509SVIDResponse>((resolve, reject) => {
        const stream = rawClient().FetchX509SVID({}, workloadApiMetadata());
        stream.on('error', reject);
        stream.once('data', (msg: X509SVIDResponse) => {
          resolve(msg);
          stream.cancel();
        });
      });
      assert.equal(first.svids.length, 1);
      assert.equal(first.svids[0]?.spiffe_id, 'spiffe://example.org/agent/a');
      assert.equal(first.svids[0]?.hint, 'primary');
      assert.equal(hex(first.svids[0]?.x509_svid), hex(svidA.certChain[0]));
      assert.equal(hex(first.svids[0]?.x509_svid_key), hex(svidA.privateKey));
      assert.equal(hex(first.svids[0]?.bundle), hex(ca.cert));
      assert.deepEqual(Object.keys(first.federated_bundles), ['spiffe://partner.test']);
      assert.equal(hex(first.federated_bundles['spiffe://partner.test']), hex(federatedCa.cert));
    });

    it('close() ends open streams and unsubscribes from the provider', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      const server = await WorkloadApiServer.start(socket, provider);
      const status = new Promise<grpc.StatusObject>((resolve) => {
        const stream = rawClient().FetchX509SVID({}, workloadApiMetadata());
        stream.on('error', () => {});
        stream.on('data', () => {});
        stream.on('status', resolve);
      });
      while (provider.listenerCount === 0) await new Promise((r) => setTimeout(r, 5));
      await server.close();
      assert.equal((await status).code, grpc.status.UNAVAILABLE);
      assert.equal(provider.listenerCount, 0);
    });
  });

  describe('X509Source', () => {
    it('blocks create() until the first update, even if the agent starts later', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      const creating = X509Source.create(sourceOptions());
      let settled = false;
      void creating.then(
        () => (settled = true),
        () => (settled = true),
      );
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(settled, false, 'create() resolved before any update');
      await startServer(provider);
      const source = track(await creating);
      const svid = source.getX509Svid();
      assert.equal(svid.spiffeId, 'spiffe://example.org/agent/a');
      assert.equal(svid.hint, 'primary');
      assert.equal(hex(svid.certChain[0]), hex(svidA.certChain[0]));
      assert.equal(hex(svid.privateKey), hex(svidA.privateKey));
      const bundle = source.getX509BundleForTrustDomain('example.org');
      assert.equal(bundle?.trustDomain, 'example.org');
      assert.deepEqual(bundle?.authorities.map(hex), [hex(ca.cert)]);
      assert.equal(source.getX509BundleForTrustDomain('partner.test'), undefined);
      assert.deepEqual(source.getX509Context().crl, []);
    });

    it('fails create() after the timeout when no update comes', async () => {
      await assert.rejects(
        X509Source.create(sourceOptions({ timeoutMs: 150 })),
        (err: unknown) =>
          err instanceof WorkloadApiError &&
          err.reason === 'workload_api_timeout' &&
          /no update within 150 ms/.test(err.message),
      );
    });

    it('fails create() when the signal is aborted', async () => {
      const controller = new AbortController();
      const creating = X509Source.create(sourceOptions({ signal: controller.signal }));
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(creating, /aborted/);
    });

    it('rotates: a provider change fires update and getX509Svid returns the new certificate', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      await startServer(provider);
      const source = track(await X509Source.create(sourceOptions()));
      const before = source.getX509Context();

      const rotated = await issueQuickSvid(ca, 'spiffe://example.org/agent/a', 'primary');
      const update = waitForUpdate(
        source,
        (ctx) => hex(ctx.svids[0]?.certChain[0]) === hex(rotated.certChain[0]),
      );
      provider.set({ svids: [rotated, svidB] });
      const ctx = await update;

      assert.equal(hex(source.getX509Svid().certChain[0]), hex(rotated.certChain[0]));
      assert.equal(source.getX509Svid(), ctx.svids[0]);
      assert.deepEqual(
        source.getX509Svids().map((s) => s.spiffeId),
        ['spiffe://example.org/agent/a', 'spiffe://example.org/agent/b'],
      );
      // The earlier snapshot is untouched: readers holding it never see a half-applied update.
      assert.equal(hex(before.svids[0]?.certChain[0]), hex(svidA.certChain[0]));
      assert.equal(before.svids.length, 1);
      assert.ok(Object.isFrozen(ctx) && Object.isFrozen(ctx.svids));
    });

    it('adds and removes federated bundles with each full-state update', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      await startServer(provider);
      const source = track(await X509Source.create(sourceOptions()));
      assert.equal(source.getX509BundleForTrustDomain('partner.test'), undefined);

      const added = waitForUpdate(source, (ctx) => ctx.bundles.has('partner.test'));
      provider.set({ federatedBundles: new Map([['partner.test', [federatedCa.cert]]]) });
      await added;
      assert.deepEqual(source.getX509BundleForTrustDomain('partner.test')?.authorities.map(hex), [
        hex(federatedCa.cert),
      ]);
      assert.equal(source.getX509BundleForTrustDomain('spiffe://partner.test')?.trustDomain, 'partner.test');
      assert.deepEqual(
        source
          .getX509Bundles()
          .map((b) => b.trustDomain)
          .sort(),
        ['example.org', 'partner.test'],
      );

      const removed = waitForUpdate(source, (ctx) => !ctx.bundles.has('partner.test'));
      provider.set({ federatedBundles: new Map() });
      await removed;
      assert.equal(source.getX509BundleForTrustDomain('partner.test'), undefined);
      assert.deepEqual(
        source.getX509Bundles().map((b) => b.trustDomain),
        ['example.org'],
      );
    });

    it('ignores an unusable update, reports it, and keeps serving the previous snapshot', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      await startServer(provider);
      const source = track(await X509Source.create(sourceOptions()));
      const reported = new Promise<[WorkloadApiError, boolean]>((resolve) =>
        source.onError((err, fatal) => resolve([err, fatal])),
      );
      // The certificate says agent/a, the message claims agent/liar: a broken agent, not a rotation.
      provider.set({ svids: [{ ...svidA, spiffeId: 'spiffe://example.org/agent/liar' }] });
      const [err, fatal] = await reported;
      assert.equal(fatal, false);
      assert.equal(err.reason, 'workload_api_bad_response');
      assert.match(err.message, /leaf URI SAN/);
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/a');

      const recovered = waitForUpdate(
        source,
        (ctx) => ctx.svids[0]?.spiffeId === 'spiffe://example.org/agent/b',
      );
      provider.set({ svids: [svidB] });
      await recovered;
    });

    it('keeps its own trust domain roots when a federated entry claims the same trust domain', async () => {
      const provider = new FakeIdentityProvider(
        identity([svidA], { federatedBundles: new Map([['example.org', [federatedCa.cert]]]) }),
      );
      await startServer(provider);
      const source = track(await X509Source.create(sourceOptions()));
      assert.deepEqual(source.getX509BundleForTrustDomain('example.org')?.authorities.map(hex), [
        hex(ca.cert),
      ]);
    });

    it('reconnects with backoff after the agent restarts and picks up the new state', async () => {
      const server = await WorkloadApiServer.start(socket, new FakeIdentityProvider(identity([svidA])));
      const logger = recordingLogger();
      const source = track(await X509Source.create(sourceOptions({ logger })));
      const errors: Array<[grpc.status | undefined, boolean]> = [];
      source.onError((err, fatal) => errors.push([err.grpcCode, fatal]));
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/a');

      await server.close();
      // While the agent is down the last good state keeps being served. Three retries take about
      // 120 ms of backoff; a loaded machine may need longer, so wait for them rather than a fixed time.
      await eventually(() => logger.warnings.length >= 3);
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/a');
      assert.ok(errors.length >= 2, `expected repeated retries, saw ${errors.length}`);
      assert.ok(errors.every(([code, fatal]) => code === grpc.status.UNAVAILABLE && !fatal));
      const delays = logger.warnings.map((w) => w['retryInMs']);
      assert.deepEqual(delays.slice(0, 3), [20, 40, 60]);

      const update = waitForUpdate(
        source,
        (ctx) => ctx.svids[0]?.spiffeId === 'spiffe://example.org/agent/b',
      );
      await startServer(new FakeIdentityProvider(identity([svidB])));
      await update;
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/b');
    });

    it('retries PERMISSION_DENIED "no identity issued" until the workload gets an identity', async () => {
      const provider = new FakeIdentityProvider({ bundle: [ca.cert] });
      await startServer(provider);

      const denied = await new Promise<grpc.StatusObject>((resolve) => {
        const stream = rawClient().FetchX509SVID({}, workloadApiMetadata());
        stream.on('error', () => {});
        stream.on('status', resolve);
      });
      assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
      assert.equal(denied.details, 'no identity issued');

      const logger = recordingLogger();
      const creating = X509Source.create(sourceOptions({ logger }));
      await new Promise((r) => setTimeout(r, 120));
      assert.ok(logger.warnings.some((w) => w['code'] === 'PERMISSION_DENIED'));
      provider.set({ svids: [svidA] });
      const source = track(await creating);
      assert.equal(source.getX509Svid().spiffeId, 'spiffe://example.org/agent/a');
    });

    it('does not retry UNIMPLEMENTED: create() fails at once with the status', async () => {
      // An agent that offers the service without FetchX509SVID.
      const server = new grpc.Server();
      server.addService(loadWorkloadApiProto().service, {});
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(
          endpoint.replace('/agent/api.sock', '/bare.sock'),
          grpc.ServerCredentials.createInsecure(),
          (err) => (err ? reject(err) : resolve()),
        ),
      );
      closers.push(() => server.forceShutdown());
      const started = Date.now();
      await assert.rejects(
        X509Source.create(sourceOptions({ endpoint: `unix://${join(dir, 'bare.sock')}` })),
        expectWorkloadApiError(grpc.status.UNIMPLEMENTED),
      );
      assert.ok(Date.now() - started < 1000, 'should fail without waiting for the timeout');
    });

    it('after close() every method throws and close() is idempotent', async () => {
      await startServer(new FakeIdentityProvider(identity([svidA])));
      const source = await X509Source.create(sourceOptions());
      source.close();
      source.close();
      const closed = (err: unknown): boolean =>
        err instanceof WorkloadApiError && err.reason === 'source_closed';
      assert.throws(() => source.getX509Svid(), closed);
      assert.throws(() => source.getX509Svids(), closed);
      assert.throws(() => source.getX509BundleForTrustDomain('example.org'), closed);
      assert.throws(() => source.getX509Bundles(), closed);
      assert.throws(() => source.getX509Context(), closed);
      assert.throws(() => source.onUpdate(() => {}), closed);
      assert.throws(() => source.onError(() => {}), closed);
    });
  });

  describe('JwtBundleSourceClient', () => {
    it('serves JWKS per trust domain and follows additions and removals', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]));
      await startServer(provider);
      const source = track(await JwtBundleSourceClient.create(sourceOptions()));
      const own = source.getJwtBundleForTrustDomain('example.org');
      assert.equal(own?.trustDomain, 'example.org');
      assert.deepEqual(own?.jwks, jwtAuthority.jwks);
      assert.equal(source.getJwtBundleForTrustDomain('partner.test'), undefined);

      const added = waitForUpdate(source, (bundles) => bundles.has('partner.test'));
      provider.set({
        jwtBundles: new Map([
          ['example.org', jwtAuthority.jwks],
          ['partner.test', federatedJwt.jwks],
        ]),
      });
      await added;
      assert.equal(
        source.getJwtBundleForTrustDomain('partner.test')?.jwks.keys[0]?.['kid'],
        federatedJwt.kid,
      );

      const removed = waitForUpdate(source, (bundles) => !bundles.has('partner.test'));
      provider.set({ jwtBundles: new Map([['example.org', jwtAuthority.jwks]]) });
      await removed;
      assert.deepEqual([...source.getJwtBundles().keys()], ['example.org']);

      source.close();
      assert.throws(() => source.getJwtBundleForTrustDomain('example.org'), /source is closed/);
      assert.throws(() => source.getJwtBundles(), /source is closed/);
    });
  });

  describe('fetchJwtSvid / validateJwtSvid', () => {
    it('fetches a JWT-SVID for the audience and validates it', async () => {
      await startServer(new FakeIdentityProvider(identity([svidA, svidB]), jwtAuthority));
      const result = await fetchJwtSvid(endpoint, ['broker', 'other']);
      assert.equal(result.spiffeId, 'spiffe://example.org/agent/a');
      assert.equal(result.hint, 'primary');
      const claims = decodeJwt(result.token);
      assert.equal(claims.sub, 'spiffe://example.org/agent/a');
      assert.deepEqual(claims.aud, ['broker', 'other']);
      assert.equal(result.expiresAt.getTime(), (claims.exp ?? 0) * 1000);
      assert.ok(result.expiresAt.getTime() > Date.now());

      const forB = await fetchJwtSvid(endpoint, ['broker'], 'spiffe://example.org/agent/b');
      assert.equal(decodeJwt(forB.token).sub, 'spiffe://example.org/agent/b');

      const validated = await validateJwtSvid(endpoint, 'broker', result.token);
      assert.equal(validated.spiffeId, 'spiffe://example.org/agent/a');
      assert.equal(validated.claims['sub'], 'spiffe://example.org/agent/a');
      assert.deepEqual(validated.claims['aud'], ['broker', 'other']);
      assert.equal(validated.claims['exp'], claims.exp);
    });

    it('maps agent refusals to WorkloadApiErrors with the gRPC status', async () => {
      const provider = new FakeIdentityProvider(identity([svidA]), jwtAuthority);
      await startServer(provider);
      await assert.rejects(fetchJwtSvid(endpoint, []), (err: unknown) => {
        expectWorkloadApiError(grpc.status.INVALID_ARGUMENT, /audience must be specified/)(err);
        return (err as WorkloadApiError).code === 'INVALID_ARGUMENT';
      });
      await assert.rejects(
        fetchJwtSvid(endpoint, ['broker'], 'spiffe://example.org/not-mine'),
        expectWorkloadApiError(grpc.status.PERMISSION_DENIED, /no identity issued/),
      );

      const token = await jwtAuthority.mint('spiffe://example.org/agent/a', ['someone-else']);
      await assert.rejects(
        validateJwtSvid(endpoint, 'broker', token),
        expectWorkloadApiError(grpc.status.INVALID_ARGUMENT, /token is invalid/),
      );
      // Signed by partner.test's key but claiming example.org: only example.org's JWKS may verify it.
      const forged = await federatedJwt.mint('spiffe://example.org/agent/a', ['broker']);
      provider.set({
        jwtBundles: new Map([
          ['example.org', jwtAuthority.jwks],
          ['partner.test', federatedJwt.jwks],
        ]),
      });
      await assert.rejects(
        validateJwtSvid(endpoint, 'broker', forged),
        expectWorkloadApiError(grpc.status.INVALID_ARGUMENT, /no JWT authority/),
      );

      provider.set({ svids: [] });
      await assert.rejects(
        fetchJwtSvid(endpoint, ['broker']),
        (err: unknown) =>
          expectWorkloadApiError(grpc.status.PERMISSION_DENIED)(err) &&
          (err as WorkloadApiError).code === 'UNAVAILABLE',
      );
    });

    it('fails with UNAVAILABLE when no agent listens', async () => {
      await assert.rejects(
        fetchJwtSvid(endpoint, ['broker'], undefined, { timeoutMs: 500 }),
        expectWorkloadApiError(grpc.status.UNAVAILABLE),
      );
    });
  });
});
