/**
 * What an agent, and the audit trail, may learn of a backend failure: the backend's name and a
 * stable reason code (`vault_sealed`, `vault_permission_denied`, `vault_login_rejected`, ...).
 * A backend's own message names Vault mount paths, quotes Vault's error text, describes the login
 * (mount, role, token file path): that detail stays in the error's cause, which goes to the log.
 */
import { BrokerError, isBrokerError } from '../errors.js';

/** The reason code of a backend failure; `backend_error` for anything that is not a BrokerError. */
export function backendReason(err: unknown): string {
  return isBrokerError(err) ? err.reason : 'backend_error';
}

/** The error the caller sees for a failed backend call; the original error is its cause. */
export function publicBackendError(backend: string, err: unknown): BrokerError {
  const reason = isBrokerError(err) ? err.reason : 'backend_unavailable';
  if (!isBrokerError(err) || err.code === 'UNAVAILABLE') {
    return new BrokerError('UNAVAILABLE', `backend "${backend}" is unavailable (${reason})`, {
      reason,
      cause: err,
    });
  }
  if (err.code === 'INTERNAL') {
    return new BrokerError('INTERNAL', 'internal error', { reason, cause: err });
  }
  return new BrokerError(err.code, `backend "${backend}" refused the request (${reason})`, {
    reason,
    cause: err,
    ...(err.field !== undefined ? { field: err.field } : {}),
  });
}
