import assert from 'node:assert/strict';
import {
  type Authorizer,
  authorizeAny,
  authorizeId,
  authorizeMemberOf,
  authorizeOneOf,
} from '../../../src/identity/authorizers.js';
import { expectBrokerError } from './expect-broker-error.js';

interface Row {
  name: string;
  authorizer: () => Authorizer;
  id: string;
  /** undefined: allowed. */
  want?: { code: 'PERMISSION_DENIED' | 'UNAUTHENTICATED'; reason: string };
}

const rows: Row[] = [
  { name: 'any: allows a workload ID', authorizer: authorizeAny, id: 'spiffe://a.test/x' },
  { name: 'any: allows an ID of another domain', authorizer: authorizeAny, id: 'spiffe://b.test/y' },
  {
    name: 'any: rejects a malformed ID',
    authorizer: authorizeAny,
    id: 'https://a.test/x',
    want: { code: 'UNAUTHENTICATED', reason: 'invalid_spiffe_id' },
  },
  {
    name: 'id: allows the exact ID',
    authorizer: () => authorizeId('spiffe://a.test/x'),
    id: 'spiffe://a.test/x',
  },
  {
    name: 'id: denies a child of the ID',
    authorizer: () => authorizeId('spiffe://a.test/x'),
    id: 'spiffe://a.test/x/y',
    want: { code: 'PERMISSION_DENIED', reason: 'spiffe_id_not_allowed' },
  },
  {
    name: 'id: denies the same path in another trust domain',
    authorizer: () => authorizeId('spiffe://a.test/x'),
    id: 'spiffe://b.test/x',
    want: { code: 'PERMISSION_DENIED', reason: 'spiffe_id_not_allowed' },
  },
  {
    name: 'id: paths are case-sensitive',
    authorizer: () => authorizeId('spiffe://a.test/x'),
    id: 'spiffe://a.test/X',
    want: { code: 'PERMISSION_DENIED', reason: 'spiffe_id_not_allowed' },
  },
  {
    name: 'id: a malformed presented ID is unauthenticated, not denied',
    authorizer: () => authorizeId('spiffe://a.test/x'),
    id: 'spiffe://a.test/x/',
    want: { code: 'UNAUTHENTICATED', reason: 'invalid_spiffe_id' },
  },
  {
    name: 'oneOf: allows a listed ID',
    authorizer: () => authorizeOneOf('spiffe://a.test/x', 'spiffe://b.test/y'),
    id: 'spiffe://b.test/y',
  },
  {
    name: 'oneOf: denies an unlisted ID',
    authorizer: () => authorizeOneOf('spiffe://a.test/x', 'spiffe://b.test/y'),
    id: 'spiffe://a.test/y',
    want: { code: 'PERMISSION_DENIED', reason: 'spiffe_id_not_allowed' },
  },
  {
    name: 'oneOf: an empty list denies everyone',
    authorizer: () => authorizeOneOf(),
    id: 'spiffe://a.test/x',
    want: { code: 'PERMISSION_DENIED', reason: 'spiffe_id_not_allowed' },
  },
  {
    name: 'memberOf: allows a member',
    authorizer: () => authorizeMemberOf('a.test'),
    id: 'spiffe://a.test/x/y',
  },
  {
    name: 'memberOf: accepts the trust domain as an ID',
    authorizer: () => authorizeMemberOf('spiffe://a.test'),
    id: 'spiffe://a.test/x',
  },
  {
    name: 'memberOf: denies another domain',
    authorizer: () => authorizeMemberOf('a.test'),
    id: 'spiffe://b.test/x',
    want: { code: 'PERMISSION_DENIED', reason: 'trust_domain_not_allowed' },
  },
  {
    name: 'memberOf: denies a domain that merely ends with the name',
    authorizer: () => authorizeMemberOf('a.test'),
    id: 'spiffe://evil-a.test/x',
    want: { code: 'PERMISSION_DENIED', reason: 'trust_domain_not_allowed' },
  },
];

describe('identity/authorizers', () => {
  for (const row of rows) {
    it(row.name, () => {
      const authorize = row.authorizer();
      if (row.want === undefined) {
        assert.doesNotThrow(() => authorize(row.id));
      } else {
        expectBrokerError(() => authorize(row.id), row.want.code, row.want.reason);
      }
    });
  }

  it('rejects invalid configuration when the authorizer is built', () => {
    expectBrokerError(() => authorizeId('spiffe://A.test/x'), 'INVALID_ARGUMENT', 'invalid_spiffe_id');
    expectBrokerError(
      () => authorizeOneOf('spiffe://a.test/x', 'nope'),
      'INVALID_ARGUMENT',
      'invalid_spiffe_id',
    );
    expectBrokerError(() => authorizeMemberOf('A.test'), 'INVALID_ARGUMENT', 'invalid_trust_domain');
  });
});
