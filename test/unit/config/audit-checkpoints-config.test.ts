import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../src/config/load-config.js';

describe('config: audit.rotate and audit.checkpoints', () => {
  it('defaults: no rotation; checkpoints on, every 1000 records or 60 s', () => {
    const { audit } = parseConfig({});
    assert.deepEqual(audit.rotate, {});
    assert.deepEqual(audit.checkpoints, { enabled: true, everyRecords: 1000, intervalSeconds: 60 });
  });

  it('refuses an origin the signed note cannot carry as its key name (a space or a +)', () => {
    for (const origin of ['svid broker', 'a+b']) {
      assert.throws(
        () => parseConfig({ audit: { checkpoints: { origin } } }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.problems.some(
            (p) => p.startsWith('audit.checkpoints.origin: ') && p.includes("no spaces or '+'"),
          ),
        origin,
      );
    }
    assert.equal(
      parseConfig({ audit: { checkpoints: { origin: 'example.org/audit' } } }).audit.checkpoints.origin,
      'example.org/audit',
    );
  });
});
