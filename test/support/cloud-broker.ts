/**
 * A broker harness wired to the cloud emulators, set up as the README tells operators to set up
 * each cloud: the broker's AWS role trusts the trust domain's JWT-SVIDs for the broker's SPIFFE ID,
 * the target role trusts the broker's role. Shared by the integration tests and the bench.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LocalCa } from '../../src/dev/local-ca.js';
import { BROKER_ID, startHarness, type Harness, type HarnessOptions } from './broker-harness.js';
import {
  BROKER_ROLE_ARN,
  DEPLOY_ROLE_ARN,
  startAwsEmulator,
  type AwsEmulator,
} from './aws-emulator/index.js';
import { startGithubEmulator, type GithubEmulator } from './github-emulator/index.js';
import {
  AZURE_CLIENT,
  AZURE_SCOPE,
  AZURE_TENANT,
  startAzureEmulator,
  type AzureEmulator,
} from './azure-emulator/index.js';
import { GCP_PROVIDER, GCP_READER_SA, startGcpEmulator, type GcpEmulator } from './gcp-emulator/index.js';

export const GITHUB_INSTALLATION = 4242;

/** The demo agent may use every cloud backend's roles in dev. */
export const CLOUD_TEST_POLICY = ['aws', 'github', 'gcp', 'azure']
  .map(
    (backend) => `
@id("test-demo-${backend}-dev")
@reason("the demo agent may use ${backend} roles in dev")
permit (
  principal == Agent::"spiffe://example.org/agents/demo",
  action == Action::"IssueCredential",
  resource in Backend::"${backend}"
)
when { context.environment == "dev" };
`,
  )
  .join('');

export const CLOUD_ROLES = {
  'aws/deploy': {
    roleArn: DEPLOY_ROLE_ARN,
    maxTtlSeconds: 3600,
    sensitivity: 'confidential',
    sessionPolicy: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 's3:PutObject',
          Resource: 'arn:aws:s3:::deploy-{{environment}}/{{task_id}}/*',
        },
      ],
    },
    tags: { team: 'platform' },
  },
  'aws/deploy-strict': {
    roleArn: DEPLOY_ROLE_ARN,
    maxTtlSeconds: 3600,
    sensitivity: 'confidential',
    outlivesTask: 'refuse',
  },
  'github/repo-writer': {
    maxTtlSeconds: 3600,
    sensitivity: 'confidential',
    repositories: ['svid-broker'],
    permissions: { contents: 'write', pull_requests: 'write' },
  },
  'gcp/bucket-reader': {
    maxTtlSeconds: 900,
    sensitivity: 'confidential',
    serviceAccount: GCP_READER_SA,
    scopes: ['https://www.googleapis.com/auth/devstorage.read_only'],
  },
  'azure/storage-reader': {
    maxTtlSeconds: 900,
    sensitivity: 'confidential',
    tenantId: AZURE_TENANT,
    clientId: AZURE_CLIENT,
    scope: AZURE_SCOPE,
  },
} as const;

export interface CloudBroker {
  aws: AwsEmulator;
  github: GithubEmulator;
  gcp: GcpEmulator;
  azure: AzureEmulator;
  h: Harness;
  close(): Promise<void>;
}

export async function startCloudBroker(
  opts: { config?: Record<string, unknown> } & Omit<HarnessOptions, 'config'> = {},
): Promise<CloudBroker> {
  // The broker's JWT-SVIDs are signed by the harness CA, which exists only once the harness runs.
  const caRef: { ca?: LocalCa } = {};
  const jwks = (): { keys: object[] } => {
    if (!caRef.ca) throw new Error('CA not ready');
    return caRef.ca.jwks();
  };
  const aws = await startAwsEmulator();
  const github = await startGithubEmulator();
  const gcp = await startGcpEmulator();
  gcp.provider = { audience: GCP_PROVIDER, allowedAudiences: [`https:${GCP_PROVIDER}`], jwks };
  gcp.tokenCreators.set(GCP_READER_SA, [gcp.principalFor(BROKER_ID)]);
  const azure = await startAzureEmulator();
  // The dev CA's JWT-SVIDs carry no `iss`, so the federated credential here names none.
  azure.apps.push({
    tenantId: AZURE_TENANT,
    clientId: AZURE_CLIENT,
    federatedCredentials: [{ subject: BROKER_ID, audiences: ['api://AzureADTokenExchange'], jwks }],
  });
  const azureCa = join(tmpdir(), `azure-ca-${process.pid}-${Date.now()}.pem`);
  writeFileSync(azureCa, azure.ca);
  github.addInstallation(GITHUB_INSTALLATION, {
    account: 'acme',
    repositories: ['svid-broker', 'infra'],
    permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
  });
  // The App key lives in a file beside the emulator's state, never in config text.
  const keyFile = join(tmpdir(), `gh-app-${process.pid}-${Date.now()}.pem`);
  writeFileSync(keyFile, github.privateKeyPem(), { mode: 0o600 });
  aws.addRole(BROKER_ROLE_ARN, { webIdentity: { jwks, audience: 'sts.amazonaws.com', subject: BROKER_ID } });
  aws.addRole(DEPLOY_ROLE_ARN, { trustedRoles: [BROKER_ROLE_ARN] });
  const closeEmulators = async (): Promise<void> => {
    await aws.close();
    await github.close();
    await gcp.close();
    await azure.close();
    rmSync(keyFile, { force: true });
    rmSync(azureCa, { force: true });
  };
  const { config, ...harnessOpts } = opts;
  let h: Harness;
  try {
    h = await startHarness({
      ...harnessOpts,
      extraPolicies: CLOUD_TEST_POLICY,
      config: {
        ...config,
        backends: {
          aws: {
            region: 'eu-west-1',
            stsEndpoint: aws.url,
            iamEndpoint: aws.url,
            credentials: { source: 'web_identity', roleArn: BROKER_ROLE_ARN, audience: 'sts.amazonaws.com' },
            timeoutMs: 2000,
            retryBaseDelayMs: 5,
          },
          gcp: { audience: GCP_PROVIDER, stsUrl: gcp.url, iamCredentialsUrl: gcp.url, retryBaseDelayMs: 5 },
          azure: { authorityHost: azure.url, caFile: azureCa, retryBaseDelayMs: 5 },
          github: {
            apiUrl: `${github.url}/api/v3`,
            appId: github.appId,
            privateKeyFile: keyFile,
            installationId: GITHUB_INSTALLATION,
          },
        },
        roles: { ...CLOUD_ROLES, ...((config?.roles as Record<string, unknown> | undefined) ?? {}) },
      },
    });
  } catch (err) {
    await closeEmulators();
    throw err;
  }
  caRef.ca = h.ca;
  return {
    aws,
    github,
    gcp,
    azure,
    h,
    async close() {
      await h.close();
      await closeEmulators();
    },
  };
}
