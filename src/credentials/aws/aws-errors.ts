/**
 * AWS error codes as the SDK reports them (`err.name`, from the Query API's `<Code>`), and what
 * the broker makes of them. AWS messages are logged by the caller, never shown to agents.
 */
import { BrokerError, failedPrecondition, unavailable } from '../../errors.js';

function codeOf(err: unknown): string {
  return err instanceof Error ? err.name : '';
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

export function isThrottled(err: unknown): boolean {
  const code = codeOf(err);
  return (
    code === 'Throttling' ||
    code === 'ThrottlingException' ||
    code === 'RequestLimitExceeded' ||
    statusOf(err) === 429
  );
}

/** The broker's own session was refused as expired: refresh it and try once more. */
export function isExpiredSession(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'ExpiredToken' || code === 'ExpiredTokenException' || code === 'RequestExpired';
}

/** Maps an AWS failure (not throttling, already retried) to the broker's error. */
export function awsFailure(err: unknown, what: string): BrokerError {
  if (err instanceof BrokerError) return err;
  const code = codeOf(err);
  switch (code) {
    case 'AccessDenied':
    case 'AccessDeniedException':
      return failedPrecondition('aws_access_denied', `AWS refused ${what}: check the role's trust policy`);
    case 'ValidationError':
    case 'MalformedPolicyDocument':
    case 'MalformedPolicyDocumentException':
    case 'PackedPolicyTooLarge':
    case 'PackedPolicyTooLargeException':
      return failedPrecondition(
        'aws_rejected_request',
        `AWS rejected ${what} (${code}): check the role's settings`,
      );
    case 'RegionDisabledException':
      return failedPrecondition('aws_region_disabled', `AWS STS is not activated in this region for ${what}`);
    default:
      return unavailable('aws_unavailable', `AWS is unavailable for ${what}`, err);
  }
}

/** Safe to log: code and AWS's message (which never holds a credential), never the request. */
export function awsErrFields(err: unknown): { code: string; message: string } {
  return { code: codeOf(err) || 'error', message: err instanceof Error ? err.message : String(err) };
}
