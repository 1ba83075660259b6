/**
 * The broker's own AWS session (AssumeRoleWithWebIdentity) against a fake STS client: throttling
 * is retried only within timeoutMs, and an attempt started late is cut off at that deadline, not
 * given a whole timeoutMs of its own.
 */
import assert from 'node:assert/strict';
import type * as Sts from '@aws-sdk/client-sts';
import { webIdentityCredentials, type StsSdk } from '../../../../src/credentials/aws/broker-session.js';

const TIMEOUT_MS = 400;

/** The SDK's commands only carry their input here. */
class FakeCommand {
  constructor(readonly input: unknown) {}
}
const sdk = {
  STSClient: FakeCommand,
  AssumeRoleCommand: FakeCommand,
  AssumeRoleWithWebIdentityCommand: FakeCommand,
} as unknown as StsSdk;

function throttling(): Error {
  const err = new Error('Rate exceeded');
  err.name = 'Throttling';
  return err;
}

describe('credentials/aws: the broker session', () => {
  it('an attempt after throttling ends at the deadline, not a whole timeout later', async () => {
    let calls = 0;
    // First answer: Throttling, late in the budget. Second: STS hangs until the call is aborted.
    const sts = {
      send: (_cmd: unknown, opts: { abortSignal: AbortSignal }) => {
        calls++;
        if (calls === 1)
          return new Promise((_, reject) => setTimeout(() => reject(throttling()), TIMEOUT_MS * 0.6));
        return new Promise((_, reject) => {
          opts.abortSignal.addEventListener('abort', () => reject(opts.abortSignal.reason as Error));
        });
      },
    } as unknown as Sts.STSClient;
    const credentials = webIdentityCredentials({
      sdk,
      sts,
      roleArn: 'arn:aws:iam::123456789012:role/svid-broker',
      audience: 'sts.amazonaws.com',
      sessionName: 'svid-broker',
      durationSeconds: 3600,
      fetchJwt: () => Promise.resolve('jwt'),
      timeoutMs: TIMEOUT_MS,
      baseDelayMs: 1,
    });
    const started = Date.now();
    await assert.rejects(credentials.get());
    const elapsed = Date.now() - started;
    assert.equal(calls, 2);
    assert.ok(elapsed < TIMEOUT_MS * 1.3, `took ${elapsed} ms for a ${TIMEOUT_MS} ms budget`);
  });
});
