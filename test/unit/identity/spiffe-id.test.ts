import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  isValidSpiffeId,
  matchSpiffeIdPattern,
  parseSpiffeId,
  parseTrustDomain,
  requireWorkloadId,
  SpiffeIdPattern,
} from '../../../src/identity/spiffe-id.js';
import { expectBrokerError } from './expect-broker-error.js';

describe('identity/spiffe-id', () => {
  describe('parseSpiffeId accepts valid IDs', () => {
    const rows: Array<{ id: string; trustDomain: string; path: string }> = [
      { id: 'spiffe://example.org', trustDomain: 'example.org', path: '' },
      { id: 'spiffe://example.org/workload', trustDomain: 'example.org', path: '/workload' },
      { id: 'spiffe://acme.io/agents/ci/runner-1', trustDomain: 'acme.io', path: '/agents/ci/runner-1' },
      { id: 'spiffe://a_b-c.9/x', trustDomain: 'a_b-c.9', path: '/x' },
      { id: 'spiffe://td/MiXeD.Case_seg-1', trustDomain: 'td', path: '/MiXeD.Case_seg-1' },
      { id: 'spiffe://td/...', trustDomain: 'td', path: '/...' },
      { id: 'spiffe://td/.hidden/a..b', trustDomain: 'td', path: '/.hidden/a..b' },
      { id: `spiffe://${'a'.repeat(255)}/x`, trustDomain: 'a'.repeat(255), path: '/x' },
    ];
    for (const row of rows) {
      it(row.id.length > 60 ? `${row.id.slice(0, 60)}...` : row.id, () => {
        const id = parseSpiffeId(row.id);
        assert.equal(id.trustDomain, row.trustDomain);
        assert.equal(id.path, row.path);
        assert.equal(id.toString(), row.id);
        assert.equal(id.isWorkloadId, row.path !== '');
        assert.ok(Object.isFrozen(id));
        assert.ok(isValidSpiffeId(row.id));
      });
    }

    it('accepts an ID of exactly 2048 bytes', () => {
      const prefix = 'spiffe://td/';
      const id = prefix + 'a'.repeat(2048 - prefix.length);
      assert.equal(parseSpiffeId(id).toString(), id);
    });
  });

  describe('parseSpiffeId rejects invalid IDs, naming the rule', () => {
    const rows: Array<{ name: string; id: string; rule: RegExp }> = [
      { name: 'empty string', id: '', rule: /empty/ },
      { name: 'no scheme', id: 'example.org/workload', rule: /must start with "spiffe:\/\/"/ },
      { name: 'other scheme', id: 'https://example.org/workload', rule: /must start with/ },
      { name: 'uppercase scheme', id: 'SPIFFE://example.org/workload', rule: /scheme must be lowercase/ },
      { name: 'mixed-case scheme', id: 'Spiffe://example.org/workload', rule: /scheme must be lowercase/ },
      { name: 'single slash after scheme', id: 'spiffe:/example.org/w', rule: /must start with/ },
      { name: 'empty trust domain', id: 'spiffe://', rule: /trust domain is empty/ },
      { name: 'empty trust domain with path', id: 'spiffe:///workload', rule: /trust domain is empty/ },
      {
        name: 'uppercase trust domain',
        id: 'spiffe://Example.org/w',
        rule: /trust domain must be lowercase/,
      },
      { name: 'port', id: 'spiffe://example.org:8443/w', rule: /port is not allowed/ },
      { name: 'userinfo', id: 'spiffe://user@example.org/w', rule: /userinfo is not allowed/ },
      { name: 'userinfo with password', id: 'spiffe://u:p@example.org/w', rule: /port is not allowed/ },
      { name: 'query on trust domain', id: 'spiffe://example.org?x=1', rule: /query is not allowed/ },
      { name: 'query on path', id: 'spiffe://example.org/w?x=1', rule: /query is not allowed/ },
      { name: 'fragment on trust domain', id: 'spiffe://example.org#frag', rule: /fragment is not allowed/ },
      { name: 'fragment on path', id: 'spiffe://example.org/w#frag', rule: /fragment is not allowed/ },
      { name: 'percent-encoding in path', id: 'spiffe://example.org/w%20x', rule: /percent-encoding/ },
      { name: 'percent-encoding in trust domain', id: 'spiffe://ex%41mple.org/w', rule: /percent-encoding/ },
      { name: 'empty segment (//)', id: 'spiffe://example.org//w', rule: /empty path segments/ },
      { name: 'empty segment in the middle', id: 'spiffe://example.org/a//b', rule: /empty path segments/ },
      { name: 'dot segment (/./)', id: 'spiffe://example.org/a/./b', rule: /dot segments/ },
      { name: 'dot-dot segment (/../)', id: 'spiffe://example.org/a/../b', rule: /dot segments/ },
      { name: 'final dot segment', id: 'spiffe://example.org/a/.', rule: /dot segments/ },
      { name: 'final dot-dot segment', id: 'spiffe://example.org/..', rule: /dot segments/ },
      { name: 'trailing slash', id: 'spiffe://example.org/w/', rule: /trailing slash/ },
      { name: 'trailing slash on trust domain', id: 'spiffe://example.org/', rule: /trailing slash/ },
      { name: 'space in path', id: 'spiffe://example.org/a b', rule: /disallowed character " "/ },
      { name: 'non-ASCII in path', id: 'spiffe://example.org/caf\u00e9', rule: /disallowed character/ },
      { name: 'non-ASCII in trust domain', id: 'spiffe://\u00e9xample.org/w', rule: /disallowed character/ },
      { name: 'colon in path', id: 'spiffe://example.org/a:b', rule: /disallowed character ":"/ },
      { name: 'backslash', id: 'spiffe://example.org\\w', rule: /disallowed character/ },
      { name: 'trust domain too long', id: `spiffe://${'a'.repeat(256)}/x`, rule: /longer than 255/ },
      { name: 'ID too long', id: `spiffe://td/${'a'.repeat(2048)}`, rule: /longer than 2048 bytes/ },
      { name: 'leading whitespace', id: ' spiffe://example.org/w', rule: /must start with/ },
    ];
    for (const row of rows) {
      it(row.name, () => {
        const err = expectBrokerError(() => parseSpiffeId(row.id), 'INVALID_ARGUMENT', 'invalid_spiffe_id');
        assert.match(err.message, row.rule);
        assert.equal(err.field, 'spiffe_id');
        assert.equal(isValidSpiffeId(row.id), false);
      });
    }

    it('keeps a huge input out of the message', () => {
      const err = expectBrokerError(
        () => parseSpiffeId(`spiffe://td/${'a'.repeat(5000)}`),
        'INVALID_ARGUMENT',
        'invalid_spiffe_id',
      );
      assert.ok(err.message.length < 300, `message is ${err.message.length} chars`);
    });

    it('uses the given field name', () => {
      const err = expectBrokerError(
        () => parseSpiffeId('nope', 'agent_id'),
        'INVALID_ARGUMENT',
        'invalid_spiffe_id',
      );
      assert.equal(err.field, 'agent_id');
      assert.match(err.message, /^agent_id: /);
    });
  });

  describe('SpiffeId', () => {
    it('compares by value and checks membership', () => {
      const a = parseSpiffeId('spiffe://example.org/a');
      assert.ok(a.equals(parseSpiffeId('spiffe://example.org/a')));
      assert.ok(!a.equals(parseSpiffeId('spiffe://example.org/b')));
      assert.ok(a.isMemberOf('example.org'));
      assert.ok(!a.isMemberOf('example.com'));
      assert.equal(JSON.stringify({ id: a }), '{"id":"spiffe://example.org/a"}');
    });
  });

  describe('requireWorkloadId', () => {
    it('accepts an ID with a path', () => {
      assert.equal(requireWorkloadId('spiffe://example.org/w').path, '/w');
    });
    it('rejects a trust domain ID', () => {
      const err = expectBrokerError(
        () => requireWorkloadId('spiffe://example.org'),
        'INVALID_ARGUMENT',
        'invalid_spiffe_id',
      );
      assert.match(err.message, /non-empty path/);
    });
    it('rejects an already parsed trust domain ID', () => {
      expectBrokerError(
        () => requireWorkloadId(parseSpiffeId('spiffe://example.org')),
        'INVALID_ARGUMENT',
        'invalid_spiffe_id',
      );
    });
  });

  describe('parseTrustDomain', () => {
    const valid: Array<[string, string]> = [
      ['example.org', 'example.org'],
      ['spiffe://example.org', 'example.org'],
      ['a-b_c.9', 'a-b_c.9'],
    ];
    for (const [input, want] of valid) {
      it(`accepts ${input}`, () => assert.equal(parseTrustDomain(input), want));
    }
    const invalid: Array<[string, string, string]> = [
      ['', 'INVALID_ARGUMENT', 'invalid_trust_domain'],
      ['Example.org', 'INVALID_ARGUMENT', 'invalid_trust_domain'],
      ['example.org:443', 'INVALID_ARGUMENT', 'invalid_trust_domain'],
      ['a'.repeat(256), 'INVALID_ARGUMENT', 'invalid_trust_domain'],
      ['spiffe://example.org/w', 'INVALID_ARGUMENT', 'invalid_trust_domain'],
      ['SPIFFE://example.org', 'INVALID_ARGUMENT', 'invalid_spiffe_id'],
      ['https://example.org', 'INVALID_ARGUMENT', 'invalid_spiffe_id'],
    ];
    for (const [input, code, reason] of invalid) {
      it(`rejects ${JSON.stringify(input.slice(0, 40))}`, () => {
        expectBrokerError(() => parseTrustDomain(input), code as 'INVALID_ARGUMENT', reason);
      });
    }
  });

  describe('SPIFFE ID patterns', () => {
    const rows: Array<{ pattern: string; id: string; match: boolean }> = [
      { pattern: 'spiffe://acme.io/agents/ci', id: 'spiffe://acme.io/agents/ci', match: true },
      { pattern: 'spiffe://acme.io/agents/ci', id: 'spiffe://acme.io/agents/ci/x', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/ci/runner-1', match: true },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/ci', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/ci/a/b', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/cio', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/ci-x/y', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://other.io/agents/ci/runner-1', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'spiffe://acme.io/agents/ci/../x', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/*', id: 'SPIFFE://acme.io/agents/ci/x', match: false },
      { pattern: 'spiffe://acme.io/agents/ci/**', id: 'spiffe://acme.io/agents/ci/a/b', match: true },
      { pattern: 'spiffe://acme.io/agents/ci/**', id: 'spiffe://acme.io/agents/ci/a', match: true },
      { pattern: 'spiffe://acme.io/agents/ci/**', id: 'spiffe://acme.io/agents/ci', match: false },
      { pattern: 'spiffe://acme.io/*', id: 'spiffe://acme.io/x', match: true },
      { pattern: 'spiffe://acme.io/*', id: 'spiffe://acme.io', match: false },
      { pattern: 'spiffe://acme.io/**', id: 'spiffe://acme.io/x/y/z', match: true },
    ];
    for (const row of rows) {
      it(`${row.pattern} ${row.match ? 'matches' : 'does not match'} ${row.id}`, () => {
        assert.equal(matchSpiffeIdPattern(row.pattern, row.id), row.match);
      });
    }

    const badPatterns = [
      'spiffe://acme.io/agents/*/ci',
      'spiffe://acme.io/agents/ci*',
      'spiffe://acme.io/*/*',
      'spiffe://*.acme.io/x',
    ];
    for (const pattern of badPatterns) {
      it(`rejects pattern ${pattern}`, () => {
        expectBrokerError(
          () => SpiffeIdPattern.parse(pattern),
          'INVALID_ARGUMENT',
          'invalid_spiffe_id_pattern',
        );
      });
    }
    it('rejects a pattern whose base is not a SPIFFE ID', () => {
      expectBrokerError(
        () => SpiffeIdPattern.parse('spiffe://Acme.io/*'),
        'INVALID_ARGUMENT',
        'invalid_spiffe_id',
      );
    });
    it('round-trips through toString', () => {
      for (const p of ['spiffe://a/b', 'spiffe://a/b/*', 'spiffe://a/b/**']) {
        assert.equal(SpiffeIdPattern.parse(p).toString(), p);
      }
    });
  });

  describe('properties', () => {
    const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-_'.split(''));
    const segChar = fc.constantFrom(...'abcXYZ019.-_'.split(''));
    const trustDomain = fc.string({ unit: tdChar, minLength: 1, maxLength: 30 });
    const segment = fc
      .string({ unit: segChar, minLength: 1, maxLength: 12 })
      .filter((s) => s !== '.' && s !== '..');
    const path = fc.array(segment, { maxLength: 5 }).map((segs) => segs.map((s) => `/${s}`).join(''));

    it('every well-formed ID parses and round-trips unchanged', () => {
      fc.assert(
        fc.property(trustDomain, path, (td, p) => {
          const text = `spiffe://${td}${p}`;
          const id = parseSpiffeId(text);
          return id.toString() === text && id.trustDomain === td && id.path === p;
        }),
      );
    });

    it('parsing never normalises: whatever parses prints back identically, and failures are BrokerErrors', () => {
      const noisy = fc.oneof(
        fc.string(),
        fc
          .tuple(trustDomain, path, fc.string({ maxLength: 4 }))
          .map(([td, p, junk]) => `spiffe://${td}${p}${junk}`),
      );
      fc.assert(
        fc.property(noisy, (s) => {
          try {
            return parseSpiffeId(s).toString() === s;
          } catch (err) {
            return err instanceof Error && err.name === 'BrokerError';
          }
        }),
      );
    });

    it('a /* pattern matches exactly the direct children of its base', () => {
      fc.assert(
        fc.property(trustDomain, path, fc.array(segment, { maxLength: 3 }), (td, base, extra) => {
          const id = `spiffe://${td}${base}${extra.map((s) => `/${s}`).join('')}`;
          return matchSpiffeIdPattern(`spiffe://${td}${base}/*`, id) === (extra.length === 1);
        }),
      );
    });
  });
});
