/**
 * What a caller learns of a backend failure: the backend, a stable reason code, never the
 * backend's own message (Vault paths, Vault's error text, login configuration, file paths).
 */
import { strict as assert } from 'node:assert';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Writable } from 'node:stream';
import { backendReason, publicBackendError } from '../../../src/broker/backend-error.js';
import { VaultError } from '../../../src/credentials/vault/vault-client.js';
import { BrokerError, failedPrecondition } from '../../../src/errors.js';
import { toServiceError } from '../../../src/server/status.js';

const DETAIL = /database\/creds|permission denied|\/run\/secrets|auth\/jwt/;

function captured(): { logger: pino.Logger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), text: () => lines.join('') };
}

describe('broker/backend-error', () => {
  const vaultDenied = new VaultError(
    'UNAVAILABLE',
    'vault_permission_denied',
    'Vault denied the broker GET database/creds/readonly: permission denied',
    { status: 403, vaultErrors: ['permission denied'] },
  );

  it('an outage keeps its code and reason; the message names only the backend and the reason', () => {
    const err = publicBackendError('vault', vaultDenied);
    assert.equal(err.code, 'UNAVAILABLE');
    assert.equal(err.reason, 'vault_permission_denied');
    assert.equal(err.message, 'backend "vault" is unavailable (vault_permission_denied)');
    assert.equal(err.cause, vaultDenied, 'the detail stays with the cause, for the log');
  });

  it('a refusal keeps its code; an unknown error is an outage; an INTERNAL one says nothing', () => {
    const login = new BrokerError(
      'UNAVAILABLE',
      'cannot read the Vault token file /run/secrets/vault (ENOENT)',
      {
        reason: 'vault_login_failed',
      },
    );
    assert.doesNotMatch(publicBackendError('vault', login).message, DETAIL);
    const refused = publicBackendError(
      'vault',
      failedPrecondition('ttl_exhausted', 'no time left in auth/jwt'),
    );
    assert.equal(refused.code, 'FAILED_PRECONDITION');
    assert.equal(refused.message, 'backend "vault" refused the request (ttl_exhausted)');
    const unknown = publicBackendError('vault', new Error('ECONNREFUSED database/creds'));
    assert.equal(unknown.code, 'UNAVAILABLE');
    assert.equal(unknown.reason, 'backend_unavailable');
    const internal = publicBackendError('vault', new BrokerError('INTERNAL', 'role auth/jwt misconfigured'));
    assert.equal(internal.message, 'internal error');
    assert.equal(backendReason(new Error('x')), 'backend_error');
    assert.equal(backendReason(vaultDenied), 'vault_permission_denied');
  });

  it('the status carries the reason; the cause goes to the log', () => {
    const { logger, text } = captured();
    const se = toServiceError(publicBackendError('vault', vaultDenied), logger, 'IssueCredential');
    assert.equal(se.code, status.UNAVAILABLE);
    assert.doesNotMatch(String(se.details), DETAIL);
    assert.deepEqual(se.metadata?.get('x-svid-broker-reason'), ['vault_permission_denied']);
    assert.match(text(), /GET database\/creds\/readonly: permission denied/);
  });

  it('an INTERNAL BrokerError reaches the caller as "internal error" with its reason, the message only the log', () => {
    const { logger, text } = captured();
    const se = toServiceError(
      new BrokerError(
        'INTERNAL',
        'vault: role vault/db: settings.path missing in /etc/svid-broker/broker.yaml',
        {
          reason: 'vault_bad_reference',
        },
      ),
      logger,
      'IssueCredential',
    );
    assert.equal(se.code, status.INTERNAL);
    assert.equal(se.details, 'internal error');
    assert.deepEqual(se.metadata?.get('x-svid-broker-reason'), ['vault_bad_reference']);
    assert.match(text(), /\/etc\/svid-broker\/broker.yaml/);
  });
});
