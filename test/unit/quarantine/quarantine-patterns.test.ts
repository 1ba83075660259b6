/**
 * Quarantine patterns (src/quarantine/types.ts): exact, `/*` (one more segment), `/**` (any depth);
 * put-lease's Lua (includes/quarantine-match.lua) and the lease selection must agree with these,
 * which the lease store contract tests check on Redis.
 */
import { strict as assert } from 'node:assert';
import { patternMatches } from '../../../src/identity/pattern-match.js';
import { findQuarantine, type Quarantine } from '../../../src/quarantine/types.js';

const BASE = 'spiffe://example.org/agents';

describe('patternMatches', () => {
  const cases: [pattern: string, id: string, matches: boolean][] = [
    [`${BASE}/a`, `${BASE}/a`, true],
    [`${BASE}/a`, `${BASE}/a/b`, false],
    [`${BASE}/a`, `${BASE}/ab`, false],
    [`${BASE}/*`, `${BASE}/a`, true],
    [`${BASE}/*`, `${BASE}/a/b`, false],
    [`${BASE}/*`, BASE, false],
    [`${BASE}/*`, `${BASE}/`, false],
    [`${BASE}/*`, `${BASE}x/a`, false],
    [`${BASE}/**`, `${BASE}/a`, true],
    [`${BASE}/**`, `${BASE}/a/b/c`, true],
    [`${BASE}/**`, BASE, false],
    [`${BASE}/**`, `${BASE}/`, false],
    [`${BASE}/**`, `${BASE}x/a`, false],
    ['spiffe://example.org/**', 'spiffe://example.org.evil/a', false],
    ['spiffe://example.org/**', 'spiffe://other.org/a', false],
  ];
  for (const [pattern, id, matches] of cases) {
    it(`${pattern} ${matches ? 'covers' : 'does not cover'} ${id}`, () => {
      assert.equal(patternMatches(pattern, id), matches);
    });
  }
});

describe('findQuarantine', () => {
  const q = (pattern: string, expiresAt = 0): Quarantine => ({
    pattern,
    reason: 'r',
    by: 'b',
    trigger: 'manual',
    createdAt: 0,
    expiresAt,
  });

  it('picks the most specific covering pattern in force (exact, then /*, then /**, then longer), whatever the order', () => {
    const list = [q(`${BASE}/**`), q(`${BASE}/a/bc`), q(`${BASE}/a/*`)];
    assert.equal(findQuarantine(list, `${BASE}/a/bc`, 10)?.pattern, `${BASE}/a/bc`);
    assert.equal(findQuarantine([...list].reverse(), `${BASE}/a/bc`, 10)?.pattern, `${BASE}/a/bc`);
    assert.equal(findQuarantine(list, `${BASE}/a/c`, 10)?.pattern, `${BASE}/a/*`);
    assert.equal(findQuarantine(list, `${BASE}/z`, 10)?.pattern, `${BASE}/**`);
    assert.equal(findQuarantine(list, 'spiffe://example.org/other', 10), undefined);
    // An exact ID beats a longer subtree pattern.
    const mixed = [q(`${BASE}/a/**`), q(`${BASE}/a/b`)];
    assert.equal(findQuarantine(mixed, `${BASE}/a/b`, 10)?.pattern, `${BASE}/a/b`);
    assert.equal(findQuarantine([...mixed].reverse(), `${BASE}/a/b`, 10)?.pattern, `${BASE}/a/b`);
  });

  it('skips quarantines that expired at or before now; 0 never expires', () => {
    const list = [q(`${BASE}/aaaa`, 100), q(`${BASE}/**`, 50)];
    assert.equal(findQuarantine(list, `${BASE}/aaaa`, 49)?.pattern, `${BASE}/aaaa`);
    assert.equal(findQuarantine(list, `${BASE}/z`, 49)?.pattern, `${BASE}/**`);
    assert.equal(findQuarantine(list, `${BASE}/z`, 50), undefined);
    assert.equal(findQuarantine(list, `${BASE}/aaaa`, 99)?.pattern, `${BASE}/aaaa`);
    assert.equal(findQuarantine(list, `${BASE}/aaaa`, 100), undefined);
    assert.equal(
      findQuarantine([q(`${BASE}/a`, 0)], `${BASE}/a`, Number.MAX_SAFE_INTEGER)?.pattern,
      `${BASE}/a`,
    );
  });
});
