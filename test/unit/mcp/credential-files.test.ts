import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssuedCredential } from '../../../src/client/agent-client.js';
import { CredentialFiles } from '../../../src/mcp/credential-files.js';

const issued = (leaseId: string): IssuedCredential => ({
  status: 'issued',
  leaseId,
  taskId: 'task-1',
  role: 'token/demo',
  environment: 'dev',
  expiresAt: new Date('2030-01-01T00:00:00Z'),
  ttlSeconds: 300,
  policyIds: [],
  breakGlass: false,
  credential: { kind: 'jwt', token: 'secret-token', data: {}, metadata: {} },
});

describe('mcp: CredentialFiles', () => {
  let root: string;
  let files: CredentialFiles;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'svb-creds-'));
    files = new CredentialFiles(join(root, 'creds'));
    files.prepare();
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('writes both files 0600 in a 0700 directory and removes them with the task', () => {
    const written = files.write(issued('lease-1'));
    assert.equal(statSync(files.dir).mode & 0o777, 0o700);
    assert.equal(statSync(written.path).mode & 0o777, 0o600);
    assert.equal(statSync(written.envPath).mode & 0o777, 0o600);
    assert.equal(files.removeTask('task-1'), 2);
    assert.deepEqual(readdirSync(files.dir), []);
  });

  it('leaves no credential behind when the second file cannot be written', () => {
    // Something already sits where the env file goes: 'wx' refuses to follow or overwrite it.
    writeFileSync(join(files.dir, 'lease-2.env'), 'placed by someone else\n');
    assert.throws(() => files.write(issued('lease-2')), /EEXIST/);
    assert.equal(existsSync(join(files.dir, 'lease-2.json')), false, 'the JSON file with the secret stayed');
    assert.ok(existsSync(join(files.dir, 'lease-2.env')), "someone else's file is not ours to remove");
  });
});
