/**
 * Assertion helpers for identity tests: a failure must be a BrokerError with a specific code and
 * reason, not merely "some exception".
 */
import assert from 'node:assert/strict';
import { type BrokerError, type ErrorCode, isBrokerError } from '../../../src/errors.js';

function check(err: unknown, code: ErrorCode, reason: string): BrokerError {
  assert.ok(isBrokerError(err), `expected a BrokerError, got ${String(err)}`);
  assert.equal(err.reason, reason, `reason (message: ${err.message})`);
  assert.equal(err.code, code, `code (message: ${err.message})`);
  return err;
}

export function expectBrokerError(fn: () => unknown, code: ErrorCode, reason: string): BrokerError {
  try {
    fn();
  } catch (err) {
    return check(err, code, reason);
  }
  assert.fail(`expected ${code}/${reason}, but nothing was thrown`);
}

export async function expectBrokerRejection(
  promise: Promise<unknown>,
  code: ErrorCode,
  reason: string,
): Promise<BrokerError> {
  try {
    await promise;
  } catch (err) {
    return check(err, code, reason);
  }
  assert.fail(`expected ${code}/${reason}, but the promise resolved`);
}
