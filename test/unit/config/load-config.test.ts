import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseConfig, roleDefinitions } from '../../../src/config/load-config.js';
import { validatablePath } from '../deploy/deploy-fixtures.js';

/** Runs fn and returns the ConfigError it throws. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

/** The `path` part of each problem line ("a.b: message"). */
const paths = (err: ConfigError): string[] => err.problems.map((p) => p.slice(0, p.indexOf(': ')));

describe('config/load-config', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'svb-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const writeYaml = (name: string, text: string): string => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  it('with no file, yields the defaults', () => {
    const config = loadConfig({ env: {} });
    assert.deepEqual(config.environments, ['dev', 'staging', 'prod']);
    assert.deepEqual(config.roles, {});
    assert.equal(config.listen, '0.0.0.0:8443');
    assert.equal(config.httpListen, '127.0.0.1:8080');
    assert.equal(config.workloadApi.socket, 'unix:///tmp/spire-agent/public/api.sock');
    assert.equal(config.redis.url, 'redis://127.0.0.1:6379');
    assert.equal(config.redis.prefix, 'svb');
    assert.equal(config.redis.store, 'redis');
    assert.equal(config.policy.dir, 'policies');
    assert.equal(config.audit.file, 'svid-broker-audit.jsonl');
    assert.equal(config.audit.fsync, true);
    assert.deepEqual(config.tasks, { defaultTtlSeconds: 900, maxTtlSeconds: 3600 });
    assert.deepEqual(config.auth, { jwtAudiences: [], trustDomains: [] });
    assert.equal(config.log.level, 'info');
  });

  it('applies the env overrides over the defaults and ignores empty values', () => {
    const config = loadConfig({
      env: {
        SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/agent.sock',
        SVID_BROKER_LISTEN: '127.0.0.1:9443',
        SVID_BROKER_HTTP_LISTEN: '[::1]:9080',
        REDIS_URL: 'redis://redis.internal:6380/2',
        SVID_BROKER_POLICY_DIR: '/etc/svid-broker/policies',
        SVID_BROKER_AUDIT_FILE: '/var/log/svid-broker/audit.jsonl',
        SVID_BROKER_CONFIG: '',
        // Not an override: ignored.
        LISTEN: '1.2.3.4:1',
      },
    });
    assert.equal(config.workloadApi.socket, 'unix:///run/spire/agent.sock');
    assert.equal(config.workloadApi.firstUpdateTimeoutMs, 30_000);
    assert.equal(config.listen, '127.0.0.1:9443');
    assert.equal(config.httpListen, '[::1]:9080');
    assert.equal(config.redis.url, 'redis://redis.internal:6380/2');
    assert.equal(config.redis.prefix, 'svb');
    assert.equal(config.policy.dir, '/etc/svid-broker/policies');
    assert.equal(config.audit.file, '/var/log/svid-broker/audit.jsonl');
    assert.equal(config.audit.fsync, true);
    assert.deepEqual(config.environments, ['dev', 'staging', 'prod']);
    assert.deepEqual(config.roles, {});

    const blank = loadConfig({ env: { SVID_BROKER_LISTEN: '', REDIS_URL: '' } });
    assert.equal(blank.listen, '0.0.0.0:8443');
    assert.equal(blank.redis.url, 'redis://127.0.0.1:6379');
  });

  it('loads the shipped deploy/compose/broker.yaml, incident response settings included', () => {
    const config = loadConfig({ file: validatablePath('deploy/compose/broker.yaml'), env: {} });
    assert.equal(config.feed.staleAfterMs, 5000);
    assert.deepEqual(config.quarantine.triggers.denials, {
      count: 20,
      windowSeconds: 60,
      ttlSeconds: 3600,
      revokeActive: true,
    });
    assert.deepEqual(config.quarantine.triggers.restrictedData?.allowedGroups, ['security']);
    assert.deepEqual(config.replicas.allowedIds, ['spiffe://example.org/broker']);
  });

  it('reads the YAML file named by SVID_BROKER_CONFIG; env overrides win over the file', () => {
    const file = writeYaml(
      'broker.yaml',
      [
        'listen: 127.0.0.1:7443',
        'environments: [dev, prod]',
        'redis:',
        '  url: redis://from-file:6379',
        '  prefix: brokerA',
        'tasks:',
        '  defaultTtlSeconds: 300',
        '  maxTtlSeconds: 600',
        'roles:',
        '  token/demo:',
        '    maxTtlSeconds: 120',
        '    environments: [dev]',
        '    audience: demo-api',
        '    scope: demo:read',
        '',
      ].join('\n'),
    );
    const config = loadConfig({ env: { SVID_BROKER_CONFIG: file, REDIS_URL: 'redis://from-env:6379' } });
    assert.equal(config.listen, '127.0.0.1:7443');
    assert.deepEqual(config.environments, ['dev', 'prod']);
    assert.equal(config.redis.url, 'redis://from-env:6379');
    assert.equal(config.redis.prefix, 'brokerA');
    assert.equal(config.redis.retentionSeconds, 7 * 86_400);
    assert.deepEqual(config.tasks, { defaultTtlSeconds: 300, maxTtlSeconds: 600 });
    assert.deepEqual(config.roles['token/demo'], {
      description: '',
      maxTtlSeconds: 120,
      sensitivity: 'internal',
      environments: ['dev'],
      audience: 'demo-api',
      scope: 'demo:read',
    });
    // An explicit file option wins over SVID_BROKER_CONFIG; an empty file is the defaults.
    const empty = writeYaml('empty.yaml', '');
    assert.equal(loadConfig({ file: empty, env: { SVID_BROKER_CONFIG: file } }).listen, '0.0.0.0:8443');
  });

  it('names the file when it cannot be read or parsed', () => {
    const missing = configError(() => loadConfig({ env: { SVID_BROKER_CONFIG: join(dir, 'nope.yaml') } }));
    assert.equal(missing.source, join(dir, 'nope.yaml'));
    assert.match(missing.problems[0] as string, /^cannot read: .*ENOENT/);
    const bad = configError(() =>
      loadConfig({ file: writeYaml('bad.yaml', 'listen: [unclosed\n'), env: {} }),
    );
    assert.match(bad.problems[0] as string, /^not valid YAML: /);
    const list = configError(() => loadConfig({ file: writeYaml('list.yaml', '- a\n- b\n'), env: {} }));
    assert.deepEqual(list.problems, ['expected a mapping']);
    assert.match(list.message, /invalid configuration \(.*list\.yaml\):\n {2}- expected a mapping/);
  });

  it('lists every problem of a file at once, with its path', () => {
    const file = writeYaml(
      'broken.yaml',
      [
        'listen: not-an-address', // 1: listen
        'httpListen: 8080', // 2: httpListen (a number, not host:port)
        'redis:',
        '  prefix: "a{b}"', // 3: redis.prefix
        'tasks:',
        '  defaultTtlSeconds: 0', // 4: tasks.defaultTtlSeconds
        'log:',
        '  level: loud', // 5: log.level
        'roles:',
        '  token/demo:',
        '    maxTtlSeconds: 100000', // 6: roles.token/demo.maxTtlSeconds
        '    sensitivity: secret', // 7: roles.token/demo.sensitivity
        '    environments: [qa]', // 8: roles.token/demo.environments (cross-field)
        '  demo: {}', // 9: roles.demo (bad role name)
        '',
      ].join('\n'),
    );
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.equal(err.source, file);
    assert.deepEqual(paths(err).sort(), [
      'httpListen',
      'listen',
      'log.level',
      'redis.prefix',
      'roles.demo',
      'roles.token/demo.environments',
      'roles.token/demo.maxTtlSeconds',
      'roles.token/demo.sensitivity',
      'tasks.defaultTtlSeconds',
    ]);
    assert.equal(err.problems.length, 9);
    assert.ok(
      err.problems.includes(
        'roles.token/demo.environments: unknown environment "qa" (configured: dev, staging, prod)',
      ),
    );
    // The message lists each problem on its own line.
    assert.equal(err.message.split('\n').length, 1 + 9);
  });

  it('reports cross-field problems together with the others', () => {
    const err = configError(() =>
      parseConfig({
        log: { level: 'loud' },
        tasks: { defaultTtlSeconds: 7200, maxTtlSeconds: 3600 },
        roles: { 'token/a': { environments: ['qa', 'dev'] } },
      }),
    );
    assert.deepEqual(err.problems.slice().sort(), [
      'log.level: Invalid option: expected one of "trace"|"debug"|"info"|"warn"|"error"|"fatal"|"silent"',
      'roles.token/a.environments: unknown environment "qa" (configured: dev, staging, prod)',
      'tasks.defaultTtlSeconds: must not exceed tasks.maxTtlSeconds',
    ]);
  });

  it('rejects unknown keys, at the top and nested', () => {
    const err = configError(() =>
      loadConfig({
        file: writeYaml(
          'typos.yaml',
          'listne: 127.0.0.1:1\nredis:\n  urll: redis://x\naudit:\n  fsyncc: false\n',
        ),
        env: {},
      }),
    );
    assert.deepEqual(err.problems.slice().sort(), [
      '(root): Unrecognized key: "listne"',
      'audit: Unrecognized key: "fsyncc"',
      'redis: Unrecognized key: "urll"',
    ]);
  });

  it('reads replicas.allowedIds and policy.pinDigest, naming each malformed value', () => {
    const digest = 'a'.repeat(64);
    const cfg = parseConfig({
      replicas: { allowedIds: ['spiffe://example.org/broker'] },
      policy: { pinDigest: digest },
    });
    assert.deepEqual(cfg.replicas.allowedIds, ['spiffe://example.org/broker']);
    assert.equal(cfg.policy.pinDigest, digest);
    assert.deepEqual(parseConfig({}).replicas.allowedIds, []);
    const err = configError(() =>
      parseConfig({ replicas: { allowedIds: ['broker'] }, policy: { pinDigest: 'abc' } }),
    );
    assert.deepEqual(err.problems.slice().sort(), [
      'policy.pinDigest: a policy set digest: 64 lowercase hex digits',
      'replicas.allowedIds.0: must be a SPIFFE ID',
    ]);
  });

  it('rejects a role that names an environment that is not configured', () => {
    const err = configError(() =>
      parseConfig({
        environments: ['dev', 'prod'],
        roles: { 'token/x': { environments: ['dev', 'staging'] } },
      }),
    );
    assert.deepEqual(err.problems, [
      'roles.token/x.environments: unknown environment "staging" (configured: dev, prod)',
    ]);
    // The same role is fine once the environment is configured.
    assert.deepEqual(
      parseConfig({
        environments: ['dev', 'staging'],
        roles: { 'token/x': { environments: ['dev', 'staging'] } },
      }).roles['token/x']?.environments,
      ['dev', 'staging'],
    );
  });

  it('returns a deeply frozen config', () => {
    const config = loadConfig({
      file: writeYaml(
        'frozen.yaml',
        'roles:\n  token/x:\n    environments: [dev]\n    audience: [a, b]\n    scope: s\n',
      ),
      env: {},
    });
    const role = config.roles['token/x'] as Record<string, unknown>;
    for (const obj of [
      config,
      config.redis,
      config.tasks,
      config.environments,
      config.roles,
      role,
      role.environments,
      role.audience,
    ]) {
      assert.ok(Object.isFrozen(obj), `not frozen: ${JSON.stringify(obj)}`);
    }
    assert.throws(() => {
      (config as { listen: string }).listen = '0.0.0.0:1';
    }, TypeError);
    assert.throws(() => {
      (config.tasks as { maxTtlSeconds: number }).maxTtlSeconds = 1;
    }, TypeError);
    assert.throws(() => (config.environments as string[]).push('qa'), TypeError);
    assert.throws(() => (role.audience as string[]).push('c'), TypeError);
    assert.equal(config.tasks.maxTtlSeconds, 3600);
    assert.deepEqual(config.environments, ['dev', 'staging', 'prod']);
  });

  it('roleDefinitions splits the generic keys from the backend settings', () => {
    const config = parseConfig({
      roles: {
        'token/demo': {
          description: 'Demo token',
          maxTtlSeconds: 300,
          sensitivity: 'confidential',
          environments: ['dev'],
          audience: ['demo-api', 'other-api'],
          scope: 'demo:read demo:write',
        },
        'vault/db-ro': { path: 'database/creds/ro' },
      },
    });
    const roles = roleDefinitions(config);
    assert.deepEqual([...roles.keys()], ['token/demo', 'vault/db-ro']);
    assert.deepEqual(roles.get('token/demo'), {
      name: 'token/demo',
      backend: 'token',
      maxTtlSeconds: 300,
      sensitivity: 'confidential',
      environments: ['dev'],
      description: 'Demo token',
      settings: { audience: ['demo-api', 'other-api'], scope: 'demo:read demo:write' },
    });
    // Defaults for the generic keys; everything else is a setting.
    assert.deepEqual(roles.get('vault/db-ro'), {
      name: 'vault/db-ro',
      backend: 'vault',
      maxTtlSeconds: 900,
      sensitivity: 'internal',
      environments: [],
      description: '',
      settings: { path: 'database/creds/ro' },
    });
    assert.ok(Object.isFrozen(roles.get('token/demo')));
    // A copy: the definition's environments do not alias the (frozen) config.
    assert.notEqual(roles.get('token/demo')?.environments, config.roles['token/demo']?.environments);
  });
});
