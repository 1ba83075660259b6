/**
 * The error catalogue. Domain code throws BrokerError; server/status.ts maps codes to gRPC
 * status in one place. Messages are shown to callers: they never carry secrets or stack traces.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'FAILED_PRECONDITION'
  | 'NOT_FOUND'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export interface BrokerErrorOptions {
  /** Stable machine-readable reason, e.g. `task_expired`, `svid_expired`. */
  reason?: string;
  /** The request field at fault, for INVALID_ARGUMENT. */
  field?: string;
  /** Deciding policy ids, for PERMISSION_DENIED. */
  policies?: string[];
  cause?: unknown;
  /**
   * The failing dependency already logged its real cause once, when it changed state (an audit
   * sink that failed), so callers that see this error per request log it at debug only.
   */
  reported?: boolean;
}

export class BrokerError extends Error {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly field: string | undefined;
  readonly policies: string[];
  readonly reported: boolean;

  constructor(code: ErrorCode, message: string, opts: BrokerErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.reason = opts.reason ?? code.toLowerCase();
    this.field = opts.field;
    this.policies = opts.policies ?? [];
    this.reported = opts.reported ?? false;
  }
}

/** True when `err`, or an error it wraps, is an outage whose cause was already logged once. */
export function alreadyReported(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (e instanceof BrokerError && e.reported) return true;
  }
  return false;
}

export function isBrokerError(err: unknown): err is BrokerError {
  return err instanceof BrokerError;
}

export const invalidArgument = (field: string, message: string): BrokerError =>
  new BrokerError('INVALID_ARGUMENT', `${field}: ${message}`, { field, reason: 'invalid_argument' });

export const unauthenticated = (reason: string, message: string, cause?: unknown): BrokerError =>
  new BrokerError('UNAUTHENTICATED', message, { reason, cause });

export const permissionDenied = (
  message: string,
  policies: string[],
  reason = 'policy_denied',
): BrokerError => new BrokerError('PERMISSION_DENIED', message, { policies, reason });

export const failedPrecondition = (reason: string, message: string): BrokerError =>
  new BrokerError('FAILED_PRECONDITION', message, { reason });

export const notFound = (reason: string, message: string): BrokerError =>
  new BrokerError('NOT_FOUND', message, { reason });

export const unavailable = (reason: string, message: string, cause?: unknown): BrokerError =>
  new BrokerError('UNAVAILABLE', message, { reason, cause });
