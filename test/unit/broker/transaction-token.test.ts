/**
 * Transaction Tokens against the JWKS: accepted while fresh for the right audience and subject,
 * refused after expiry, for another audience, another signer or another agent; never echoed.
 */
import { strict as assert } from 'node:assert';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { isBrokerError } from '../../../src/errors.js';
import { TransactionTokens } from '../../../src/broker/transaction-token.js';
import { SigningKeyRing } from '../../../src/credentials/token/signing-keys.js';
import type { Caller } from '../../../src/identity/types.js';
import type { Task } from '../../../src/leases/types.js';

const AGENT = 'spiffe://example.org/agents/planner';
const caller = (spiffeId: string): Caller => ({
  spiffeId,
  trustDomain: 'example.org',
  path: new URL(spiffeId).pathname,
  authMethod: 'x509',
});

async function rejects(p: Promise<unknown>, code: string, reason: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isBrokerError(err));
    assert.equal(err.code, code);
    assert.equal(err.reason, reason);
    assert.doesNotMatch(err.message, /eyJ/);
    return true;
  });
}

describe('Transaction Tokens', () => {
  let keys: SigningKeyRing;
  let now: number;
  let task: Task;
  const tokens = (audience: string, ring = keys, signer?: 'node' | 'jose'): TransactionTokens =>
    new TransactionTokens({
      ...(signer ? { signer } : {}),
      signingKey: () => ring.current(),
      jwks: () => keys.jwks(),
      brokerId: () => 'spiffe://example.org/broker',
      audience: () => audience,
      ttlSeconds: 300,
      maxDepth: 3,
      now: () => now,
    });

  beforeEach(async () => {
    now = Date.UTC(2026, 0, 1);
    keys = await SigningKeyRing.create({ overlapSeconds: 3600, now: () => now });
    task = {
      id: '0190a0b0-0000-7000-8000-000000000001',
      agent: AGENT,
      environment: 'staging',
      intent: 'ship',
      labels: {},
      createdAt: now,
      expiresAt: now + 3600_000,
      state: 'active',
    };
  });

  it('signs with node crypto the same token jose signed before: header and claims, verified by the JWKS', async () => {
    const made = await Promise.all(
      (['node', 'jose'] as const).map((signer) => tokens('example.org', keys, signer).mint(task)),
    );
    const read = await Promise.all(
      made.map(async (token) => {
        const { payload } = await jwtVerify(token, createLocalJWKSet(await keys.jwks()), {
          audience: 'example.org',
          typ: 'txntoken+jwt',
          currentDate: new Date(now),
        });
        return { header: decodeProtectedHeader(token), payload };
      }),
    );
    assert.deepEqual(read[0], read[1]);
    assert.equal(read[0]?.payload.txn, task.id);
  });

  it('names the task for its own agent while fresh', async () => {
    const t = tokens('example.org');
    assert.equal(await t.taskIdFor(caller(AGENT), await t.mint(task)), task.id);
  });

  it('is refused after its expiry (and never outlives its task)', async () => {
    const t = tokens('example.org');
    const token = await t.mint(task);
    now += 301_000;
    await rejects(t.taskIdFor(caller(AGENT), token), 'UNAUTHENTICATED', 'txn_token_expired');
    now = task.expiresAt - 10_000;
    const late = await t.mint(task);
    now = task.expiresAt + 1000;
    await rejects(t.taskIdFor(caller(AGENT), late), 'UNAUTHENTICATED', 'txn_token_expired');
  });

  it('is refused with another audience', async () => {
    const token = await tokens('other.org').mint(task);
    await rejects(
      tokens('example.org').taskIdFor(caller(AGENT), token),
      'UNAUTHENTICATED',
      'txn_token_invalid',
    );
  });

  it('is refused when signed by a key the JWKS does not hold', async () => {
    const stranger = await SigningKeyRing.create({ overlapSeconds: 3600, now: () => now });
    const token = await tokens('example.org', stranger).mint(task);
    await rejects(
      tokens('example.org').taskIdFor(caller(AGENT), token),
      'UNAUTHENTICATED',
      'txn_token_invalid',
    );
  });

  it('is refused for another agent', async () => {
    const t = tokens('example.org');
    await rejects(
      t.taskIdFor(caller('spiffe://example.org/agents/other'), await t.mint(task)),
      'PERMISSION_DENIED',
      'txn_token_not_yours',
    );
  });
});
