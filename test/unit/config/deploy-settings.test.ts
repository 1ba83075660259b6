/**
 * The settings a real deployment adds: the broker's expected SPIFFE ID, and the Redis login
 * (ACL user, password file, CA file) read at connect time without the password ever entering the
 * configuration or an error message.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig } from '../../../src/config/load-config.js';
import { loginOptions } from '../../../src/redis/connect.js';

const dir = mkdtempSync(join(tmpdir(), 'svb-deploy-settings-'));
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('deploy settings', () => {
  it('workloadApi.expectedId must be a SPIFFE ID; SVID_BROKER_ID sets it', () => {
    assert.throws(
      () => parseConfig({ workloadApi: { expectedId: 'broker' } }),
      (err: unknown) =>
        err instanceof ConfigError && /workloadApi\.expectedId: must be a SPIFFE ID/.test(err.message),
    );
    const config = loadConfig({ env: { SVID_BROKER_ID: 'spiffe://acme.io/broker' } });
    assert.equal(config.workloadApi.expectedId, 'spiffe://acme.io/broker');
    assert.equal(parseConfig({}).workloadApi.expectedId, undefined);
  });

  it('reads the Redis password from its file, without the trailing newline', () => {
    const login = loginOptions({
      username: 'svid-broker',
      passwordFile: file('pw', 's3cret-value\n'),
      caFile: file('ca.pem', '-----BEGIN CERTIFICATE-----\n'),
    });
    assert.deepEqual(login, {
      username: 'svid-broker',
      password: 's3cret-value',
      tls: { ca: '-----BEGIN CERTIFICATE-----\n' },
    });
    assert.deepEqual(loginOptions({}), {});
  });

  it('a missing or empty password file stops startup naming the file, never its contents', () => {
    assert.throws(
      () => loginOptions({ passwordFile: join(dir, 'absent') }),
      /redis: cannot read the password file .*absent: ENOENT/,
    );
    assert.throws(
      () => loginOptions({ passwordFile: file('empty', '\n') }),
      /password file .*empty is empty/,
    );
    assert.throws(
      () => loginOptions({ caFile: join(dir, 'no-ca.pem') }),
      /cannot read the CA file .*no-ca\.pem/,
    );
  });

  it('refuses a CA without TLS and a password in two places', () => {
    assert.throws(
      () => parseConfig({ redis: { url: 'redis://redis:6379', caFile: '/ca.pem' } }),
      /redis\.caFile: needs a rediss:\/\/ url/,
    );
    const err = (() => {
      try {
        parseConfig({ redis: { url: 'rediss://:hunter2@redis:6379', passwordFile: '/pw' } });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    assert.match(err?.message ?? '', /redis\.passwordFile: the url carries a password too/);
    assert.doesNotMatch(err?.message ?? '', /hunter2/);
  });
});
