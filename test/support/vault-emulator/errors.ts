/**
 * Errors the emulator answers with. Each carries the HTTP status and the `errors` array of Vault's
 * error body; handlers throw them and the server turns them into `{"errors":[...]}`.
 */
export class VaultHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly string[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(`vault-emulator ${status}: ${errors.join('; ')}`);
  }
}

export const badRequest = (message: string): VaultHttpError => new VaultHttpError(400, [message]);

/** No token, or a valid token whose policies do not grant the capability. */
export const permissionDenied = (): VaultHttpError => new VaultHttpError(403, ['permission denied']);

/** A revoked, expired, used-up, foreign-namespace or made-up token. */
export const invalidToken = (): VaultHttpError =>
  new VaultHttpError(403, ['permission denied', 'invalid token']);

export const noHandler = (path: string): VaultHttpError =>
  new VaultHttpError(404, [`no handler for route "${path}". route entry not found.`]);

export const unsupportedOperation = (): VaultHttpError => new VaultHttpError(405, ['unsupported operation']);

export const internalError = (): VaultHttpError => new VaultHttpError(500, ['internal error']);

export const sealedError = (): VaultHttpError => new VaultHttpError(503, ['Vault is sealed']);

export const rateLimitedError = (path: string): VaultHttpError =>
  new VaultHttpError(429, [`request path "${path}": rate limit quota exceeded`], { 'Retry-After': '1' });

export const WRAPPING_TOKEN_INVALID = 'wrapping token is not valid or does not exist';
