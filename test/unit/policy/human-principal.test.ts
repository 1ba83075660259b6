import assert from 'node:assert/strict';
import { INVALID_REQUEST_REASON } from '../../../src/policy/cedar-engine.js';
import type { HumanPrincipal } from '../../../src/policy/types.js';
import { adminRequest, issueRequest, loadShippedPolicies, role } from './policy-fixtures.js';

const engine = loadShippedPolicies();
const person = (groups: string[]): HumanPrincipal => ({
  type: 'Human',
  sub: 'u-7',
  email: 'p@example.org',
  groups,
});

describe('Human principals in Cedar', () => {
  it('a person never requests credentials: IssueCredential with a Human principal does not fit the schema', () => {
    const req = {
      ...issueRequest('spiffe://example.org/agents/demo', role('token/demo')),
      principal: person(['security']),
    };
    const d = engine.authorize(req);
    assert.equal(d.decision, 'deny');
    assert.deepEqual(d.reasons, [INVALID_REQUEST_REASON]);
  });

  it('groups are HumanGroup parents, each once; an empty subject is refused', () => {
    assert.equal(
      engine.authorize(adminRequest(person(['security', 'security']), 'ListLeases')).decision,
      'allow',
    );
    assert.equal(engine.authorize(adminRequest(person([]), 'ListLeases')).decision, 'deny');
    const empty = engine.authorize(adminRequest({ ...person(['security']), sub: '' }, 'ListLeases'));
    assert.deepEqual(empty.reasons, [INVALID_REQUEST_REASON]);
  });
});
