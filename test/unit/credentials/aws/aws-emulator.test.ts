/**
 * The AWS emulator refuses what STS refuses, through the real SDK (which names the wire codes
 * InvalidIdentityToken and MalformedPolicyDocument as its ...Exception classes): the error each bad
 * request gets (so the backend tests above prove something when the emulator accepts).
 */
import assert from 'node:assert/strict';
import {
  AssumeRoleCommand,
  AssumeRoleWithWebIdentityCommand,
  STSClient,
  type AssumeRoleCommandInput,
} from '@aws-sdk/client-sts';
import { LocalCa } from '../../../../src/dev/local-ca.js';
import {
  AWS_ACCOUNT,
  BROKER_ROLE_ARN,
  DEPLOY_ROLE_ARN,
  startAwsEmulator,
  type AwsEmulator,
} from '../../../support/aws-emulator/index.js';

const BROKER_ID = 'spiffe://example.org/broker';
const ISSUER = 'https://oidc.example.org';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as Error).name;
  }
}

describe('test support: the AWS emulator refuses what STS refuses', () => {
  let aws: AwsEmulator;
  let ca: LocalCa;
  let anon: STSClient;
  let signed: STSClient;
  let creds: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  const webIdentity = async (jwt: string, roleArn = BROKER_ROLE_ARN): Promise<string> =>
    codeOf(
      anon.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: roleArn,
          RoleSessionName: 'broker',
          WebIdentityToken: jwt,
        }),
      ),
    );
  const assume = (overrides: Partial<AssumeRoleCommandInput> = {}, client = signed): Promise<string> =>
    codeOf(
      client.send(
        new AssumeRoleCommand({
          RoleArn: DEPLOY_ROLE_ARN,
          RoleSessionName: 'agent@lease',
          DurationSeconds: 900,
          ...overrides,
        }),
      ),
    );

  before(async () => {
    ca = await LocalCa.create('example.org');
    aws = await startAwsEmulator();
    aws.addRole(BROKER_ROLE_ARN, {
      webIdentity: {
        jwks: () => ca.jwks(),
        issuer: ISSUER,
        audience: 'sts.amazonaws.com',
        subject: BROKER_ID,
      },
    });
    aws.addRole(DEPLOY_ROLE_ARN, { trustedRoles: [BROKER_ROLE_ARN], maxSessionDuration: 43_200 });
    anon = new STSClient({
      region: 'us-east-1',
      endpoint: aws.url,
      maxAttempts: 1,
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    const out = await anon.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: BROKER_ROLE_ARN,
        RoleSessionName: 'broker',
        WebIdentityToken: await ca.mintJwtSvid(BROKER_ID, 'sts.amazonaws.com', { claims: { iss: ISSUER } }),
      }),
    );
    const c = out.Credentials;
    creds = {
      accessKeyId: c?.AccessKeyId ?? '',
      secretAccessKey: c?.SecretAccessKey ?? '',
      sessionToken: c?.SessionToken ?? '',
    };
    signed = new STSClient({ region: 'us-east-1', endpoint: aws.url, maxAttempts: 1, credentials: creds });
  });
  after(async () => aws.close());

  it('AssumeRoleWithWebIdentity: wrong issuer, audience, subject, signature or an expired token', async () => {
    const mint = (sub: string, aud: string, o: Parameters<LocalCa['mintJwtSvid']>[2] = {}): Promise<string> =>
      ca.mintJwtSvid(sub, aud, { ...o, claims: { iss: ISSUER, ...(o.claims ?? {}) } });
    assert.equal(
      await webIdentity(await mint(BROKER_ID, 'sts.amazonaws.com', { claims: { iss: 'https://evil' } })),
      'InvalidIdentityTokenException',
    );
    assert.equal(await webIdentity(await mint(BROKER_ID, 'other')), 'AccessDenied');
    assert.equal(
      await webIdentity(await mint('spiffe://example.org/agents/x', 'sts.amazonaws.com')),
      'AccessDenied',
    );
    const other = await LocalCa.create('example.org');
    assert.equal(
      await webIdentity(await other.mintJwtSvid(BROKER_ID, 'sts.amazonaws.com', { claims: { iss: ISSUER } })),
      'InvalidIdentityTokenException',
    );
    const old = new Date(Date.now() - 3_600_000);
    assert.equal(
      await webIdentity(await mint(BROKER_ID, 'sts.amazonaws.com', { issuedAt: old, ttlSeconds: 60 })),
      'ExpiredTokenException',
    );
    assert.equal(
      await webIdentity(await mint(BROKER_ID, 'sts.amazonaws.com'), DEPLOY_ROLE_ARN),
      'AccessDenied',
    );
  });

  it('AssumeRole: ValidationError for names, durations, tags and policy size; MalformedPolicyDocument', async () => {
    assert.equal(await assume(), 'ok');
    assert.equal(await assume({ RoleSessionName: 'a' }), 'ValidationError');
    assert.equal(await assume({ RoleSessionName: 'x'.repeat(65) }), 'ValidationError');
    assert.equal(await assume({ RoleSessionName: 'spiffe://x' }), 'ValidationError');
    assert.equal(await assume({ SourceIdentity: 'aws:me' }), 'ValidationError');
    assert.equal(await assume({ SourceIdentity: 'a/b' }), 'ValidationError');
    assert.equal(await assume({ DurationSeconds: 899 }), 'ValidationError');
    assert.equal(await assume({ DurationSeconds: 43_201 }), 'ValidationError');
    assert.equal(
      await assume({ DurationSeconds: 7200 }),
      'ValidationError',
      'role chaining caps at one hour',
    );
    assert.equal(
      await assume({ Tags: Array.from({ length: 51 }, (_, i) => ({ Key: `k${i}`, Value: 'v' })) }),
      'ValidationError',
    );
    assert.equal(await assume({ Tags: [{ Key: 'k', Value: 'a*b' }] }), 'ValidationError');
    assert.equal(await assume({ Tags: [{ Key: 'k', Value: 'v'.repeat(257) }] }), 'ValidationError');
    assert.equal(
      await assume({
        Tags: [
          { Key: 'K', Value: 'a' },
          { Key: 'k', Value: 'b' },
        ],
      }),
      'ValidationError',
    );
    assert.equal(await assume({ Tags: [{ Key: 'aws:x', Value: 'a' }] }), 'ValidationError');
    assert.equal(await assume({ Policy: `{"Statement":[],"x":"${'p'.repeat(2048)}"}` }), 'ValidationError');
    assert.equal(await assume({ Policy: '{not json' }), 'MalformedPolicyDocumentException');
  });

  it('AssumeRole: an unknown, wrongly signed, expired or untrusted caller', async () => {
    const wrongSecret = new STSClient({
      region: 'us-east-1',
      endpoint: aws.url,
      maxAttempts: 1,
      credentials: { ...creds, secretAccessKey: 'wrong' },
    });
    assert.equal(await assume({}, wrongSecret), 'SignatureDoesNotMatch');
    const unknown = new STSClient({
      region: 'us-east-1',
      endpoint: aws.url,
      maxAttempts: 1,
      credentials: { accessKeyId: 'ASIANOPE', secretAccessKey: 'x', sessionToken: 'y' },
    });
    assert.equal(await assume({}, unknown), 'InvalidClientTokenId');
    assert.equal(await assume({ RoleArn: `arn:aws:iam::${AWS_ACCOUNT}:role/nobody` }), 'AccessDenied');
    aws.faults = { throttle: 1 };
    assert.equal(await assume(), 'Throttling');
    aws.expireSessions(BROKER_ROLE_ARN);
    assert.equal(await assume(), 'ExpiredToken');
  });
});
