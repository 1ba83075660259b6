import { strict as assert } from 'node:assert';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  backendIdFields,
  hmacKeyFileFor,
  identifierHmac,
  readHmacKey,
} from '../../../src/audit/identifier-hmac.js';

describe('audit: HMAC of sensitive identifiers', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'svb-hmac-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('the key file defaults to <audit.file>.hmac-key, unless audit.hmacKeyFile names one', () => {
    assert.equal(hmacKeyFileFor({ file: '/var/lib/a.jsonl' }), '/var/lib/a.jsonl.hmac-key');
    assert.equal(hmacKeyFileFor({ file: '/var/lib/a.jsonl', hmacKeyFile: '/etc/k' }), '/etc/k');
  });

  it('creates a missing key (32 random bytes, 0600) and reads the same key afterwards', () => {
    const file = join(dir, 'k');
    const key = readHmacKey(file, { create: true });
    assert.equal(key.length, 32);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readHmacKey(file, { create: true }), key);
    assert.deepEqual(readFileSync(file), key);
  });

  it('never creates one when asked not to, and refuses a short key', () => {
    assert.throws(() => readHmacKey(join(dir, 'missing'), { create: false }), /ENOENT/);
    writeFileSync(join(dir, 'short'), Buffer.alloc(16));
    assert.throws(() => readHmacKey(join(dir, 'short'), { create: false }), /16 bytes, at least 32/);
  });

  it('is HMAC-SHA256 under the key, prefixed; only the listed metadata keys are taken', () => {
    const key = Buffer.alloc(32, 7);
    const hmac = identifierHmac(key);
    const expected = `hmac-sha256:${createHmac('sha256', key).update('acc-1').digest('hex')}`;
    assert.equal(hmac('acc-1'), expected);
    assert.deepEqual(backendIdFields({ accessor: 'acc-1', policies: 'a,b', kid: 'k' }, hmac), {
      backend_ids: { accessor: expected },
    });
    assert.deepEqual(backendIdFields({ kid: 'k' }, hmac), {});
    assert.deepEqual(backendIdFields({ accessor: 'acc-1' }, undefined), {});
  });
});
