/**
 * The Azure backend against the Entra ID token endpoint emulator (HTTPS), through
 * @azure/identity's ClientAssertionCredential with the broker's JWT-SVID as the assertion.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CredentialBackend, IssueRequest, RoleDefinition } from '../../../../src/credentials/backend.js';
import { azureBackendConfigSchema } from '../../../../src/credentials/azure/azure-config.js';
import { buildAzureBackend } from '../../../../src/credentials/azure/build-azure-backend.js';
import { LocalCa } from '../../../../src/dev/local-ca.js';
import { rejectsWith } from '../../../support/eventually.js';
import {
  AZURE_CLIENT,
  AZURE_SCOPE,
  AZURE_TENANT,
  startAzureEmulator,
  type AzureEmulator,
} from '../../../support/azure-emulator/index.js';

const BROKER_ID = 'spiffe://example.org/broker';
const ISSUER = 'https://oidc.example.org';

function role(settings: Record<string, unknown>): RoleDefinition {
  return {
    name: 'azure/storage-reader',
    backend: 'azure',
    maxTtlSeconds: 900,
    sensitivity: 'internal',
    environments: [],
    description: '',
    settings,
  };
}
const reader = role({ tenantId: AZURE_TENANT, clientId: AZURE_CLIENT, scope: AZURE_SCOPE });

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  const now = Date.now();
  return {
    leaseId: 'l-1',
    agent: 'spiffe://example.org/agents/ops',
    taskId: 't-1',
    environment: 'dev',
    role: reader,
    ttlSeconds: 600,
    notAfter: now + 7_200_000,
    now,
    ...overrides,
  };
}

describe('credentials/azure: the Azure backend against the Entra ID emulator', () => {
  let azure: AzureEmulator;
  let ca: LocalCa;
  let caFile: string;
  let audiences: string[] = [];
  const logs: string[] = [];
  const build = (extra: Record<string, unknown> = {}): Promise<CredentialBackend> =>
    buildAzureBackend(
      azureBackendConfigSchema.parse({ authorityHost: azure.url, caFile, retryBaseDelayMs: 1, ...extra }),
      {
        fetchJwt: (aud) => {
          audiences.push(aud);
          return ca.mintJwtSvid(BROKER_ID, aud, { claims: { iss: ISSUER } });
        },
        logger: {
          warn: (o, m) => logs.push(JSON.stringify({ ...o, m })),
          error: (o, m) => logs.push(JSON.stringify({ ...o, m })),
        },
      },
    );

  before(async () => {
    ca = await LocalCa.create('example.org');
    azure = await startAzureEmulator();
    azure.apps.push({
      tenantId: AZURE_TENANT,
      clientId: AZURE_CLIENT,
      federatedCredentials: [
        {
          issuer: ISSUER,
          subject: BROKER_ID,
          audiences: ['api://AzureADTokenExchange'],
          jwks: () => ca.jwks(),
        },
      ],
    });
    caFile = join(mkdtempSync(join(tmpdir(), 'az-')), 'ca.pem');
    writeFileSync(caFile, azure.ca);
  });
  after(async () => azure.close());
  beforeEach(() => {
    audiences = [];
    logs.length = 0;
    azure.faults = {};
  });

  it('gets a token for the role with the JWT-SVID as client assertion (audience api://AzureADTokenExchange)', async () => {
    const backend = await build();
    const before = azure.tokens.size;
    const issued = await backend.issue(request());
    assert.equal(azure.tokens.size, before + 1, 'one token request');
    const minted = azure.tokens.get(issued.credential.token);
    assert.ok(minted);
    assert.equal(minted.subject, BROKER_ID);
    assert.equal(minted.scope, AZURE_SCOPE);
    assert.ok(audiences.length > 0 && audiences.every((a) => a === 'api://AzureADTokenExchange'));
    assert.equal(issued.credential.kind, 'azure_access_token');
    // MSAL computes expiry from expires_in on its own clock: within a second or two of Entra's.
    assert.ok(Math.abs(issued.expiresAt - minted.expiresAt) <= 2000);
    assert.equal(issued.credential.metadata.outlives_task, undefined);
    assert.equal(backend.revocability?.(reader), 'expires_only');
  });

  it('each request gets its own token (no shared MSAL cache between agents)', async () => {
    const backend = await build();
    const a = await backend.issue(request());
    const b = await backend.issue(request({ agent: 'spiffe://example.org/agents/other' }));
    assert.notEqual(a.credential.token, b.credential.token);
  });

  it('a token Entra makes longer than the task says it outlives the task', async () => {
    const now = Date.now();
    const issued = await (await build()).issue(request({ now, notAfter: now + 300_000, ttlSeconds: 300 }));
    assert.equal(issued.credential.metadata.outlives_task, 'true');
  });

  it('an app with no federated credential for the broker: FAILED_PRECONDITION naming the AADSTS code', async () => {
    const other = role({
      tenantId: AZURE_TENANT,
      clientId: '11111111-2222-3333-4444-555555555555',
      scope: AZURE_SCOPE,
    });
    await rejectsWith(
      (await build()).issue(request({ role: other })),
      'FAILED_PRECONDITION',
      'azure_access_denied',
    );
    assert.match(logs.join('\n'), /AADSTS700016/);
  });

  it('retries HTTP 429, and UNAVAILABLE past the deadline', async () => {
    azure.faults = { throttle: 1 };
    assert.ok((await (await build()).issue(request())).credential.token);
    azure.faults = { throttle: 1_000_000 };
    await rejectsWith(
      (await build({ timeoutMs: 300, retryBaseDelayMs: 20 })).issue(request()),
      'UNAVAILABLE',
      'azure_throttled',
    );
    azure.faults = {};
  });

  it('the emulator refuses an assertion for another audience, subject or issuer', async () => {
    const post = async (assertion: string): Promise<{ status: number; body: { error_codes?: number[] } }> => {
      const backendLike = await import('node:https');
      return new Promise((resolve, reject) => {
        const req = backendLike.request(
          `${azure.url}/${AZURE_TENANT}/oauth2/v2.0/token`,
          { method: 'POST', ca: azure.ca, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { error_codes?: number[] } }),
            );
          },
        );
        req.on('error', reject);
        req.end(
          new URLSearchParams({
            grant_type: 'client_credentials',
            client_id: AZURE_CLIENT,
            scope: AZURE_SCOPE,
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: assertion,
          }).toString(),
        );
      });
    };
    const wrongAud = await post(await ca.mintJwtSvid(BROKER_ID, 'api://other', { claims: { iss: ISSUER } }));
    assert.deepEqual([wrongAud.status, wrongAud.body.error_codes], [400, [700212]]);
    const wrongSub = await post(
      await ca.mintJwtSvid('spiffe://example.org/agents/x', 'api://AzureADTokenExchange', {
        claims: { iss: ISSUER },
      }),
    );
    assert.deepEqual([wrongSub.status, wrongSub.body.error_codes], [400, [70021]]);
    const noIss = await post(await ca.mintJwtSvid(BROKER_ID, 'api://AzureADTokenExchange'));
    assert.deepEqual([noIss.status, noIss.body.error_codes], [400, [70021]]);
    const ok = await post(
      await ca.mintJwtSvid(BROKER_ID, 'api://AzureADTokenExchange', { claims: { iss: ISSUER } }),
    );
    assert.equal(ok.status, 200);
  });

  it('validates roles at startup', async () => {
    const problems = (await build()).validateRole(
      role({ tenantId: 'x', clientId: 'y', scope: 'https://storage.azure.com/user_impersonation', extra: 1 }),
    );
    for (const p of [
      /unknown setting "extra"/,
      /tenantId/,
      /clientId/,
      /scope: a resource scope ending in \/\.default/,
    ]) {
      assert.ok(
        problems.some((x) => p.test(x)),
        `${p} in ${problems.join(' | ')}`,
      );
    }
  });

  it('no token reaches the logs', async () => {
    await (await build()).issue(request());
    const text = logs.join('\n');
    for (const t of azure.tokens.keys()) assert.equal(text.includes(t), false);
  });
});
