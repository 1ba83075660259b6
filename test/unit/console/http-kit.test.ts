import assert from 'node:assert/strict';
import { hostCookie, localPath } from '../../../src/console/http-kit.js';

describe('console http kit', () => {
  it('a return target is a local path of printable ASCII, or the fallback', () => {
    assert.equal(localPath('/leases?task=1&state=any'), '/leases?task=1&state=any');
    for (const bad of [
      '//evil.example/x',
      'https://evil.example/',
      '/\\evil',
      '/a\r\nSet-Cookie: x=1',
      '/é',
      '',
      null,
    ]) {
      assert.equal(localPath(bad), '/approvals', String(bad));
    }
  });

  it('cookies are __Host- cookies: Secure, HttpOnly, Path=/, no Domain', () => {
    assert.equal(
      hostCookie('svb_session', 'a b', 60, 'Strict'),
      '__Host-svb_session=a%20b; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60',
    );
  });
});
