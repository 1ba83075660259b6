/**
 * The GCP backend against the Google STS + IAM Credentials emulator, through google-auth-library:
 * the JWT-SVID exchanged once for a federated token (cached), generateAccessToken per request with
 * the role's scopes, delegates and a task-bounded lifetime, throttling, an expired federated token.
 */
import assert from 'node:assert/strict';
import type { IssueRequest, RoleDefinition } from '../../../../src/credentials/backend.js';
import { buildGcpBackend } from '../../../../src/credentials/gcp/build-gcp-backend.js';
import { gcpBackendConfigSchema } from '../../../../src/credentials/gcp/gcp-config.js';
import { LocalCa } from '../../../../src/dev/local-ca.js';
import { rejectsWith } from '../../../support/eventually.js';
import {
  GCP_HOP_SA,
  GCP_PROVIDER,
  GCP_READER_SA,
  startGcpEmulator,
  type GcpEmulator,
} from '../../../support/gcp-emulator/index.js';

const BROKER_ID = 'spiffe://example.org/broker';
const SCOPE = 'https://www.googleapis.com/auth/devstorage.read_only';

function role(settings: Record<string, unknown>, maxTtlSeconds = 900): RoleDefinition {
  return {
    name: 'gcp/bucket-reader',
    backend: 'gcp',
    maxTtlSeconds,
    sensitivity: 'internal',
    environments: [],
    description: '',
    settings,
  };
}
const reader = role({ serviceAccount: GCP_READER_SA, scopes: [SCOPE] });

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  const now = Date.now();
  return {
    leaseId: 'l-1',
    agent: 'spiffe://example.org/agents/analyst',
    taskId: 't-1',
    environment: 'dev',
    role: reader,
    ttlSeconds: 600,
    notAfter: now + 1_800_000,
    now,
    ...overrides,
  };
}

describe('credentials/gcp: the GCP backend against the Google emulator', () => {
  let gcp: GcpEmulator;
  let ca: LocalCa;
  let jwtFetches = 0;
  const logs: string[] = [];
  const build = (extra: Record<string, unknown> = {}) =>
    buildGcpBackend(
      gcpBackendConfigSchema.parse({
        audience: GCP_PROVIDER,
        stsUrl: gcp.url,
        iamCredentialsUrl: gcp.url,
        retryBaseDelayMs: 1,
        ...extra,
      }),
      {
        fetchJwt: async (aud) => {
          jwtFetches++;
          return ca.mintJwtSvid(BROKER_ID, aud);
        },
        logger: {
          warn: (o, m) => logs.push(JSON.stringify({ ...o, m })),
          error: (o, m) => logs.push(JSON.stringify({ ...o, m })),
        },
      },
    );

  before(async () => {
    ca = await LocalCa.create('example.org');
    gcp = await startGcpEmulator();
    gcp.provider = {
      audience: GCP_PROVIDER,
      allowedAudiences: [`https:${GCP_PROVIDER}`],
      jwks: () => ca.jwks(),
    };
    gcp.tokenCreators.set(GCP_READER_SA, [gcp.principalFor(BROKER_ID), GCP_HOP_SA]);
    gcp.tokenCreators.set(GCP_HOP_SA, [gcp.principalFor(BROKER_ID)]);
  });
  after(async () => gcp.close());
  beforeEach(() => {
    jwtFetches = 0;
    logs.length = 0;
    gcp.faults = {};
  });

  it('exchanges the JWT-SVID once and mints task-bounded tokens for the service account', async () => {
    const backend = await build();
    const now = Date.now();
    const a = await backend.issue(request({ ttlSeconds: 600, now }));
    const b = await backend.issue(request({ ttlSeconds: 900, notAfter: now + 300_000, now }));
    assert.equal(jwtFetches, 1, 'the federated token is cached');
    assert.equal(gcp.federated.size >= 1, true);
    const ta = gcp.accessTokens.get(a.credential.token);
    const tb = gcp.accessTokens.get(b.credential.token);
    assert.equal(ta?.serviceAccount, GCP_READER_SA);
    assert.deepEqual(ta?.scopes, [SCOPE]);
    assert.equal(ta?.lifetimeSeconds, 600);
    assert.equal(tb?.lifetimeSeconds, 300, 'never past the task');
    assert.equal(ta?.principal, gcp.principalFor(BROKER_ID));
    assert.equal(a.credential.kind, 'gcp_access_token');
    assert.equal(a.expiresAt, ta?.expiresAt);
    assert.equal(backend.revocability?.(reader), 'expires_only');
    await backend.revoke({ leaseId: 'l-1', backendRef: a.backendRef, expiresAt: a.expiresAt });
  });

  it('passes the delegation chain', async () => {
    const issued = await (
      await build()
    ).issue(request({ role: role({ serviceAccount: GCP_READER_SA, delegates: [GCP_HOP_SA] }) }));
    assert.deepEqual(gcp.accessTokens.get(issued.credential.token)?.delegates, [GCP_HOP_SA]);
  });

  it('an expired federated token is exchanged again and the request succeeds', async () => {
    const backend = await build();
    await backend.issue(request());
    gcp.expireFederatedTokens();
    const issued = await backend.issue(request());
    assert.ok(gcp.accessTokens.has(issued.credential.token));
    assert.equal(jwtFetches, 2);
  });

  it('a service account that does not trust the broker: FAILED_PRECONDITION', async () => {
    await rejectsWith(
      (await build()).issue(
        request({ role: role({ serviceAccount: 'other@acme-prod.iam.gserviceaccount.com' }) }),
      ),
      'FAILED_PRECONDITION',
      'gcp_access_denied',
    );
  });

  it('retries HTTP 429, and UNAVAILABLE past the deadline', async () => {
    const backend = await build();
    await backend.issue(request());
    gcp.faults = { throttle: 1 };
    assert.ok((await backend.issue(request())).credential.token);
    gcp.faults = { throttle: 1_000_000 };
    await rejectsWith(
      (await build({ timeoutMs: 300, retryBaseDelayMs: 20 })).issue(request()),
      'UNAVAILABLE',
      'gcp_throttled',
    );
    gcp.faults = {};
  });

  it('a Google that never answers: UNAVAILABLE within timeoutMs', async () => {
    const backend = await build({ timeoutMs: 300 });
    await backend.issue(request());
    gcp.faults = { hang: 1_000_000 };
    const started = Date.now();
    await rejectsWith(backend.issue(request()), 'UNAVAILABLE', 'gcp_unavailable');
    assert.ok(Date.now() - started < 1000, `took ${Date.now() - started} ms`);
    gcp.faults = {};
  });

  it('validates roles at startup', async () => {
    const problems = (await build()).validateRole(
      role({ serviceAccount: 'nope', scopes: ['x'], extra: 1 }, 7200),
    );
    for (const p of [/unknown setting "extra"/, /serviceAccount/, /scopes/, /exceeds generateAccessToken/]) {
      assert.ok(
        problems.some((x) => p.test(x)),
        `${p} in ${problems.join(' | ')}`,
      );
    }
  });

  it('the emulator refuses a JWT for another audience (invalid_grant)', async () => {
    const res = await fetch(`${gcp.url}/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        audience: GCP_PROVIDER,
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        subject_token: await ca.mintJwtSvid(BROKER_ID, 'someone-else'),
      }).toString(),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_grant');
  });

  it('no token reaches the logs', async () => {
    const backend = await build();
    await backend.issue(request());
    await rejectsWith(
      backend.issue(request({ role: role({ serviceAccount: 'other@acme-prod.iam.gserviceaccount.com' }) })),
      'FAILED_PRECONDITION',
      'gcp_access_denied',
    );
    const text = logs.join('\n');
    for (const t of [...gcp.accessTokens.keys(), ...gcp.federated.keys()])
      assert.equal(text.includes(t), false);
  });
});
