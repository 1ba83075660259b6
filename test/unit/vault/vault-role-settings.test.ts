/**
 * validateRole for `vault/*` roles: every problem listed at once, defaults filled in.
 */
import { strict as assert } from 'node:assert';
import type { RoleDefinition } from '../../../src/credentials/backend.js';
import { createVaultBackend } from '../../../src/credentials/vault/vault-backend.js';
import { VaultAuth } from '../../../src/credentials/vault/vault-auth.js';
import { VaultClient } from '../../../src/credentials/vault/vault-client.js';
import { readVaultRoleSettings } from '../../../src/credentials/vault/vault-role-settings.js';

function role(settings: Record<string, unknown>, maxTtlSeconds = 900): RoleDefinition {
  return {
    name: 'vault/test',
    backend: 'vault',
    maxTtlSeconds,
    sensitivity: 'internal',
    environments: [],
    description: '',
    settings,
  };
}

// validateRole needs no Vault: a client pointing nowhere is enough.
const client = new VaultClient({ endpoint: 'http://127.0.0.1:1', timeoutMs: 100, insecure: true });
const backend = createVaultBackend({
  client,
  auth: new VaultAuth({ client, method: { method: 'token_file', path: '/nonexistent' } }),
});

describe('vault role settings', () => {
  it('accepts a dynamic role, defaulting method GET, no ttl param, no wrap', () => {
    assert.deepEqual(backend.validateRole(role({ kind: 'dynamic', path: 'database/creds/readonly' })), []);
    assert.deepEqual(readVaultRoleSettings({ kind: 'dynamic', path: 'database/creds/readonly' }, 900), {
      ok: true,
      settings: {
        kind: 'dynamic',
        path: 'database/creds/readonly',
        method: 'GET',
        ttlParam: false,
        wrap: false,
        wrapTtlSeconds: 60,
      },
    });
  });

  it('defaults to POST for <mount>/sts/<role>, and takes an explicit method', () => {
    const sts = readVaultRoleSettings({ kind: 'dynamic', path: 'aws/sts/deploy', ttlParam: true }, 900);
    assert.ok(sts.ok && sts.settings.kind === 'dynamic');
    assert.equal(sts.settings.method, 'POST');
    assert.equal(sts.settings.ttlParam, true);
    const creds = readVaultRoleSettings({ kind: 'dynamic', path: 'aws/creds/x', method: 'POST' }, 900);
    assert.ok(creds.ok && creds.settings.kind === 'dynamic');
    assert.equal(creds.settings.method, 'POST');
  });

  it('accepts a token role, defaulting to an orphan, non-renewable, unlimited-use token', () => {
    const read = readVaultRoleSettings({ kind: 'token', policies: ['ci-read'], meta: { team: 'ci' } }, 900);
    assert.deepEqual(read, {
      ok: true,
      settings: {
        kind: 'token',
        policies: ['ci-read'],
        orphan: true,
        renewable: false,
        numUses: 0,
        meta: { team: 'ci' },
        wrap: false,
        wrapTtlSeconds: 60,
      },
    });
    const wrapped = readVaultRoleSettings(
      { kind: 'token', policies: ['p'], wrap: true, wrapTtlSeconds: 30, explicitMaxTtlSeconds: 600 },
      900,
    );
    assert.ok(wrapped.ok && wrapped.settings.kind === 'token');
    assert.equal(wrapped.settings.wrapTtlSeconds, 30);
    assert.equal(wrapped.settings.explicitMaxTtlSeconds, 600);
  });

  it('lists every problem of a role at once', () => {
    const problems = backend.validateRole(
      role(
        {
          kind: 'token',
          policies: [],
          orphan: 'yes',
          numUses: -1,
          explicitMaxTtlSeconds: 0,
          meta: { spiffe_id: 'forged', team: 7 },
          path: 'database/creds/x',
          colour: 'blue',
          wrapTtlSeconds: 30,
        },
        900,
      ),
    );
    const expected = [
      /settings\.path: only for kind dynamic/,
      /settings\.colour: unknown setting/,
      /settings\.wrapTtlSeconds: only meaningful with wrap: true/,
      /settings\.policies: must be a non-empty list/,
      /settings\.orphan: must be true or false/,
      /settings\.numUses: must be an integer >= 0/,
      /settings\.explicitMaxTtlSeconds: must be an integer >= 1/,
      /settings\.meta\.spiffe_id: reserved/,
      /settings\.meta\.team: must be a string/,
    ];
    for (const pattern of expected) {
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `missing ${pattern}: ${problems.join(' | ')}`,
      );
    }
    assert.equal(problems.length, expected.length, problems.join(' | '));
  });

  it('refuses a missing or unknown kind, bad paths and methods, and the root policy', () => {
    assert.deepEqual(backend.validateRole(role({})), ['settings.kind: required (dynamic or token)']);
    assert.match(backend.validateRole(role({ kind: 'kv' }))[0] ?? '', /must be dynamic or token/);
    for (const path of ['/database/creds/x', 'database/../sys/raw', 'database/creds/x?ttl=1', '', 7]) {
      const problems = backend.validateRole(role({ kind: 'dynamic', path }));
      assert.equal(problems.length, 1, `path ${JSON.stringify(path)}: ${problems.join(' | ')}`);
      assert.match(problems[0] ?? '', /settings\.path/);
    }
    assert.match(backend.validateRole(role({ kind: 'dynamic' }))[0] ?? '', /settings\.path: required/);
    assert.match(
      backend.validateRole(role({ kind: 'dynamic', path: 'a/b', method: 'DELETE' }))[0] ?? '',
      /settings\.method/,
    );
    assert.match(backend.validateRole(role({ kind: 'token', policies: ['root'] }))[0] ?? '', /root/);
    assert.match(backend.validateRole(role({ kind: 'token' }))[0] ?? '', /settings\.policies: required/);
  });

  it('refuses a wrap TTL longer than the role allows any credential to live', () => {
    const problems = backend.validateRole(
      role({ kind: 'dynamic', path: 'database/creds/x', wrap: true, wrapTtlSeconds: 120 }, 60),
    );
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /wrapTtlSeconds: 120s exceeds the role's maxTtlSeconds/);
  });
});
