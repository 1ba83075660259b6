import assert from 'node:assert/strict';
import {
  STEP_UP_REQUIRED,
  approvalNeedsStepUp,
  isOwner,
  policyPrincipal,
  requireFreshSignIn,
  type StepUpPolicy,
} from '../../../src/broker/human-checks.js';
import { isBrokerError } from '../../../src/errors.js';
import { humanCaller } from '../../../src/identity/human.js';
import type { Caller, HumanIdentity } from '../../../src/identity/types.js';

const POLICY: StepUpPolicy = { maxAgeSeconds: 300, acrValues: [], productionEnvironments: ['prod'] };
const NOW = 1_900_000_000_000;
const alice = (over: Partial<HumanIdentity> = {}): HumanIdentity => ({
  sub: 'u-1',
  email: 'Alice@Example.org',
  groups: ['security'],
  authTime: NOW / 1000 - 10,
  acr: '',
  ...over,
});
const svid: Caller = {
  spiffeId: 'spiffe://example.org/security/oncall',
  trustDomain: 'example.org',
  path: '/security/oncall',
  authMethod: 'x509',
};

const refusal = (fn: () => void): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(isBrokerError(err));
    assert.equal(err.code, 'FAILED_PRECONDITION');
    return err.reason;
  }
};

describe('human checks', () => {
  it('a person is the Cedar principal Human (sub, email, groups); an SVID caller stays an Agent id', () => {
    assert.deepEqual(policyPrincipal(humanCaller(alice())), {
      type: 'Human',
      sub: 'u-1',
      email: 'Alice@Example.org',
      groups: ['security'],
    });
    assert.equal(policyPrincipal(svid), svid.spiffeId);
    assert.equal(humanCaller(alice()).spiffeId, 'human:u-1');
  });

  it('step-up is needed for restricted requests and for destructive or admin changes in production only', () => {
    const cases: Array<[string, string, string, boolean]> = [
      ['restricted', 'dev', 'read', true],
      ['confidential', 'prod', 'destructive', true],
      ['confidential', 'prod', 'admin', true],
      ['confidential', 'prod', 'write', false],
      ['confidential', 'staging', 'destructive', false],
    ];
    for (const [sensitivity, environment, changeType, want] of cases) {
      assert.equal(
        approvalNeedsStepUp({ sensitivity, environment, changeType }, POLICY),
        want,
        `${sensitivity}/${environment}/${changeType}`,
      );
    }
  });

  it('a sign-in older than maxAgeSeconds, or without auth_time, is refused with step_up_required', () => {
    assert.equal(
      refusal(() => requireFreshSignIn(humanCaller(alice()), POLICY, NOW, 'x')),
      undefined,
    );
    assert.equal(
      refusal(() => requireFreshSignIn(humanCaller(alice({ authTime: NOW / 1000 - 301 })), POLICY, NOW, 'x')),
      STEP_UP_REQUIRED,
    );
    assert.equal(
      refusal(() => requireFreshSignIn(humanCaller(alice({ authTime: 0 })), POLICY, NOW, 'x')),
      STEP_UP_REQUIRED,
    );
  });

  it('with acrValues, a fresh sign-in at another acr is refused too', () => {
    const strict = { ...POLICY, acrValues: ['urn:mfa'] };
    assert.equal(
      refusal(() => requireFreshSignIn(humanCaller(alice({ acr: 'urn:pwd' })), strict, NOW, 'x')),
      STEP_UP_REQUIRED,
    );
    assert.equal(
      refusal(() => requireFreshSignIn(humanCaller(alice({ acr: 'urn:mfa' })), strict, NOW, 'x')),
      undefined,
    );
  });

  it('SVID callers have no sign-in to renew', () => {
    assert.equal(
      refusal(() => requireFreshSignIn(svid, POLICY, NOW, 'x')),
      undefined,
    );
  });

  it('the owner is named by subject or by email (case-insensitive); an empty email matches nothing', () => {
    assert.equal(isOwner(alice(), 'u-1'), true);
    assert.equal(isOwner(alice(), 'alice@example.org'), true);
    assert.equal(isOwner(alice(), 'bob@example.org'), false);
    assert.equal(isOwner(alice(), undefined), false);
    assert.equal(isOwner(alice({ email: '' }), ''), false);
  });
});
