import assert from 'node:assert/strict';
import { humansConfigSchema } from '../../../src/config/humans-schema.js';

describe('humans config', () => {
  it('is off by default, with the documented defaults', () => {
    const h = humansConfigSchema.parse({});
    assert.equal(h.console.listen, undefined);
    assert.deepEqual(h.oidc.scopes, ['openid', 'email', 'profile']);
    assert.equal(h.oidc.groupsClaim, 'groups');
    assert.equal(h.oidc.stepUpMaxAgeSeconds, 300);
    assert.equal(h.sessionTtlSeconds, 3600);
    assert.deepEqual(h.productionEnvironments, ['prod']);
  });

  it('with console.listen, lists every missing setting at once', () => {
    const r = humansConfigSchema.safeParse({
      console: { listen: '0.0.0.0:8444' },
      oidc: { scopes: ['email'] },
    });
    assert.equal(r.success, false);
    const paths = r.error.issues.map((i) => i.path.join('.')).sort();
    assert.deepEqual(paths, [
      'console.certFile',
      'console.keyFile',
      'oidc.clientId',
      'oidc.issuer',
      'oidc.redirectUrl',
      'oidc.scopes',
    ]);
  });

  it('refuses an issuer that is not an http(s) URL and unknown keys', () => {
    assert.equal(humansConfigSchema.safeParse({ oidc: { issuer: 'ftp://idp' } }).success, false);
    assert.equal(humansConfigSchema.safeParse({ oidc: { clientSecret: 'inline' } }).success, false);
  });
});
