/**
 * The one place where errors become gRPC statuses. BrokerErrors keep their code and message
 * (INTERNAL ones only their reason); anything else becomes INTERNAL with a generic message
 * (details go to the log, never to callers).
 */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { alreadyReported, isBrokerError, type ErrorCode } from '../errors.js';

const CODES: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  NOT_FOUND: status.NOT_FOUND,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
};

/** Trailing metadata keys a client can rely on. */
export const STATUS_METADATA = {
  reason: 'x-svid-broker-reason',
  field: 'x-svid-broker-field',
  policies: 'x-svid-broker-policies',
} as const;

export function toServiceError(err: unknown, logger: Logger, method: string): Partial<ServiceError> {
  const metadata = new Metadata();
  if (isBrokerError(err)) {
    metadata.set(STATUS_METADATA.reason, err.reason);
    if (err.field) metadata.set(STATUS_METADATA.field, err.field);
    if (err.policies.length) metadata.set(STATUS_METADATA.policies, err.policies.join(','));
    if (err.code === 'INTERNAL' || err.code === 'UNAVAILABLE') {
      // An outage whose cause its owner logged once (the audit sink) is noise per request.
      logger[alreadyReported(err) ? 'debug' : 'warn'](
        { method, code: err.code, reason: err.reason, cause: causeMessage(err.cause) },
        err.message,
      );
    }
    // An INTERNAL error is a bug: its message may name internals (files, paths, keys), so the
    // caller gets the generic text and its reason code; the message went to the log above.
    const details = err.code === 'INTERNAL' ? 'internal error' : err.message;
    return { code: CODES[err.code], details, metadata };
  }
  logger.error(
    { method, err: { message: err instanceof Error ? err.message : String(err) } },
    'unexpected error',
  );
  metadata.set(STATUS_METADATA.reason, 'internal');
  return { code: status.INTERNAL, details: 'internal error', metadata };
}

function causeMessage(cause: unknown): string | undefined {
  if (cause === undefined) return undefined;
  return cause instanceof Error ? cause.message : String(cause);
}
