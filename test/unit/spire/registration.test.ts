/**
 * SPIRE registration from the agent catalog: entries in SPIRE's `-data` JSON format, one
 * `spire-server entry create` per entry, ClusterSPIFFEIDs, and the check of entries against the
 * catalog; then the CLI commands over them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { validateConfigFile } from '../../../src/cli/config-validate.js';
import { main } from '../../../src/cli/cli.js';
import { parseConfig } from '../../../src/config/load-config.js';
import { generateClusterSpiffeIds, resourceName } from '../../../src/spire/cluster-spiffe-id.js';
import { checkEntries, parseEntriesDocument } from '../../../src/spire/entry-check.js';
import {
  formatEntriesJson,
  formatEntryCommands,
  generateEntries,
  type RegistrationCatalog,
} from '../../../src/spire/registration.js';

const CATALOG_YAML = `
agents:
  - { pattern: 'spiffe://acme.io/agents/*', groups: [agents] }
  - { pattern: 'spiffe://acme.io/agents/ci/**', groups: [ci] }
  - { pattern: 'spiffe://acme.io/security/*', groups: [security] }
  - pattern: spiffe://acme.io/agents/deployer
    groups: [agents, deployers]
    selectors: ['unix:uid:1001', 'docker:label:app:deployer']
    dnsNames: [deployer.internal]
    federatesWith: [partner.test]
    hint: deployer
  - pattern: spiffe://acme.io/agents/ci/runner
    groups: [ci]
    selectors: ['k8s:ns:ci', 'k8s:sa:runner', 'k8s:pod-label:app:runner']
    x509SvidTtlSeconds: 600
  - pattern: spiffe://acme.io/security/alice
    groups: [security]
    selectors: ['unix:user:alice']
    admin: true
spire:
  parentId: spiffe://acme.io/node/host-1
  groups:
    security: { x509SvidTtlSeconds: 900, jwtSvidTtlSeconds: 120 }
    ci: { x509SvidTtlSeconds: 1800 }
    deployers: { jwtSvidTtlSeconds: 200 }
    agents: { jwtSvidTtlSeconds: 250 }
`;

const dir = mkdtempSync(join(tmpdir(), 'svb-spire-'));
const write = (name: string, text: string): string => {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
};
const catalogFile = write('catalog.yaml', CATALOG_YAML);

function catalogOf(yaml: string): RegistrationCatalog {
  const config = parseConfig(parseAllDocuments(yaml)[0]?.toJS() ?? {});
  return { agents: config.agents, spire: config.spire };
}
const catalog = catalogOf(CATALOG_YAML);

/** Runs a CLI command with stdout and stderr captured. */
async function run(fn: () => number | Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const write = process.stdout.write.bind(process.stdout);
  const { log, error } = console;
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  console.log = (...a: unknown[]) => void (out += `${a.map(String).join(' ')}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.map(String).join(' ')}\n`);
  try {
    return { code: await fn(), out, err };
  } finally {
    process.stdout.write = write;
    console.log = log;
    console.error = error;
  }
}

describe('SPIRE registration from the agent catalog', () => {
  it('makes one entry per catalog workload, in the -data JSON format field by field', () => {
    const entries = generateEntries(catalog);
    assert.deepEqual(JSON.parse(formatEntriesJson(entries)), {
      entries: [
        {
          spiffe_id: 'spiffe://acme.io/agents/deployer',
          parent_id: 'spiffe://acme.io/node/host-1',
          selectors: [
            { type: 'unix', value: 'uid:1001' },
            { type: 'docker', value: 'label:app:deployer' },
          ],
          // No group sets an X.509 TTL: the default. JWT: the shortest of agents (250), deployers (200).
          x509_svid_ttl: 3600,
          jwt_svid_ttl: 200,
          federates_with: ['partner.test'],
          dns_names: ['deployer.internal'],
          hint: 'deployer',
        },
        {
          spiffe_id: 'spiffe://acme.io/agents/ci/runner',
          parent_id: 'spiffe://acme.io/node/host-1',
          selectors: [
            { type: 'k8s', value: 'ns:ci' },
            { type: 'k8s', value: 'sa:runner' },
            { type: 'k8s', value: 'pod-label:app:runner' },
          ],
          // Its own TTL wins over its group's 1800.
          x509_svid_ttl: 600,
          jwt_svid_ttl: 300,
        },
        {
          spiffe_id: 'spiffe://acme.io/security/alice',
          parent_id: 'spiffe://acme.io/node/host-1',
          selectors: [{ type: 'unix', value: 'user:alice' }],
          x509_svid_ttl: 900,
          jwt_svid_ttl: 120,
          admin: true,
        },
      ],
    });
  });

  it('--parent overrides spire.parentId, and one of them is required', () => {
    assert.ok(
      generateEntries(catalog, 'spiffe://acme.io/node/other').every(
        (e) => e.parent_id === 'spiffe://acme.io/node/other',
      ),
    );
    const noParent = { ...catalog, spire: { ...catalog.spire, parentId: undefined } };
    assert.throws(() => generateEntries(noParent), /no parent ID: pass --parent or set spire.parentId/);
    assert.throws(() => generateEntries(catalog, 'not-an-id'), /--parent/);
  });

  it('writes one spire-server entry create per entry, quoting for the shell', () => {
    const [deployer] = generateEntries(catalog);
    assert.ok(deployer);
    const text = formatEntryCommands([{ ...deployer, hint: "it's" }]);
    assert.equal(
      text,
      'spire-server entry create -parentID spiffe://acme.io/node/host-1 -spiffeID spiffe://acme.io/agents/deployer ' +
        '-selector unix:uid:1001 -selector docker:label:app:deployer -x509SVIDTTL 3600 -jwtSVIDTTL 200 ' +
        "-dns deployer.internal -federatesWith spiffe://partner.test -hint 'it'\\''s'\n",
    );
  });

  it('the catalog schema refuses selectors on a pattern and SPIRE fields without selectors', () => {
    assert.throws(
      () =>
        catalogOf(
          `agents: [{ pattern: 'spiffe://acme.io/agents/*', groups: [a], selectors: ['unix:uid:1'] }]`,
        ),
      /agents\.0\.pattern: an entry with selectors must be one SPIFFE ID/,
    );
    assert.throws(
      () => catalogOf(`agents: [{ pattern: 'spiffe://acme.io/agents/x', groups: [a], hint: h }]`),
      /agents\.0\.hint: only used with selectors/,
    );
    assert.throws(
      () =>
        catalogOf(`agents: [{ pattern: 'spiffe://acme.io/agents/x', groups: [a], selectors: ['nocolon'] }]`),
      /selectors are "type:value"/,
    );
  });

  it('emits ClusterSPIFFEIDs for k8s selectors and refuses anything else', () => {
    const k8sOnly = {
      ...catalog,
      agents: catalog.agents.filter((a) => a.pattern.endsWith('/runner') || !a.selectors),
    };
    assert.deepEqual(generateClusterSpiffeIds(k8sOnly), [
      {
        apiVersion: 'spire.spiffe.io/v1alpha1',
        kind: 'ClusterSPIFFEID',
        metadata: {
          name: 'acme-io-agents-ci-runner',
          labels: { 'app.kubernetes.io/managed-by': 'svid-broker' },
        },
        spec: {
          spiffeIDTemplate: 'spiffe://acme.io/agents/ci/runner',
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ci' } },
          podSelector: { matchLabels: { app: 'runner' } },
          workloadSelectorTemplates: ['k8s:sa:runner'],
          ttl: '600s',
          jwtTtl: '300s',
        },
      },
    ]);
    assert.throws(
      () => generateClusterSpiffeIds(catalog),
      /deployer: selector "unix:uid:1001" is not a k8s selector/,
    );
    const noNamespace = catalogOf(`
agents: [{ pattern: 'spiffe://acme.io/agents/x', groups: [a], selectors: ['k8s:sa:x'] }]`);
    assert.throws(() => generateClusterSpiffeIds(noNamespace), /exactly one k8s:ns:<namespace> selector/);
    assert.equal(resourceName('spiffe://acme.io/Team_A/bot.v2'), 'acme-io-team-a-bot-v2');
  });

  it('refuses two workloads whose ClusterSPIFFEIDs would share a name (one would replace the other)', () => {
    const alike = catalogOf(`
agents:
  - { pattern: 'spiffe://acme.io/agents/ci-runner', groups: [a], selectors: ['k8s:ns:ci', 'k8s:sa:a'] }
  - { pattern: 'spiffe://acme.io/agents/ci/runner', groups: [a], selectors: ['k8s:ns:ci', 'k8s:sa:b'] }`);
    assert.throws(
      () => generateClusterSpiffeIds(alike),
      /spiffe:\/\/acme\.io\/agents\/ci-runner and spiffe:\/\/acme\.io\/agents\/ci\/runner would both be ClusterSPIFFEID acme-io-agents-ci-runner/,
    );
  });

  describe('check against the catalog', () => {
    it('agrees with what it generated', () => {
      const entries = parseEntriesDocument(formatEntriesJson(generateEntries(catalog)), 'generated');
      assert.deepEqual(checkEntries(catalog, entries), { unregistered: [], unknown: [], differs: [] });
    });

    it('reports missing, unknown and drifted entries; reads entry show -output json; skips node entries', () => {
      const live = JSON.stringify({
        entries: [
          // entry show -output json: IDs as {trust_domain, path}
          {
            id: 'e1',
            spiffe_id: { trust_domain: 'acme.io', path: '/agents/deployer' },
            parent_id: { trust_domain: 'acme.io', path: '/node/host-1' },
            selectors: [{ type: 'unix', value: 'uid:1001' }],
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 200,
          },
          {
            spiffe_id: 'spiffe://acme.io/security/alice',
            parent_id: 'spiffe://acme.io/node/host-1',
            selectors: [{ type: 'unix', value: 'user:alice' }],
            x509_svid_ttl: 900,
            jwt_svid_ttl: 120,
          },
          {
            spiffe_id: 'spiffe://acme.io/rogue/thing',
            parent_id: 'spiffe://acme.io/node/host-1',
            selectors: [{ type: 'unix', value: 'uid:7' }],
          },
          // A join token's node alias and a -node entry: SPIRE's own.
          {
            spiffe_id: 'spiffe://acme.io/node/host-1',
            parent_id: 'spiffe://acme.io/spire/agent/join_token/abc',
            selectors: [{ type: 'spiffe_id', value: 'spiffe://acme.io/spire/agent/join_token/abc' }],
          },
          {
            spiffe_id: 'spiffe://acme.io/nodes/all',
            parent_id: 'spiffe://acme.io/spire/server',
            selectors: [{ type: 'k8s_psat', value: 'cluster:c' }],
          },
        ],
      });
      const report = checkEntries(catalog, parseEntriesDocument(live, 'live.json'));
      assert.deepEqual(report.unregistered, ['spiffe://acme.io/agents/ci/runner']);
      assert.deepEqual(report.unknown, ['spiffe://acme.io/rogue/thing']);
      assert.deepEqual(report.differs, [
        {
          spiffeId: 'spiffe://acme.io/agents/deployer',
          problems: ['selectors [unix:uid:1001], catalog says [docker:label:app:deployer, unix:uid:1001]'],
        },
      ]);
    });

    it('refuses a file that is not an entries document, naming it', () => {
      assert.throws(() => parseEntriesDocument('{', 'x.json'), /x\.json: not JSON/);
      assert.throws(
        () => parseEntriesDocument('{"entries":[{"spiffe_id":"nope"}]}', 'x.json'),
        /invalid SPIFFE ID nope/,
      );
    });
  });

  describe('CLI', () => {
    it('spire entries prints the JSON, the commands or the k8s resources', async () => {
      const json = await run(() => main(['spire', 'entries', '--catalog', catalogFile]));
      assert.equal(json.code, 0);
      assert.equal(JSON.parse(json.out).entries.length, 3);
      const commands = await run(() =>
        main([
          'spire',
          'entries',
          '--catalog',
          catalogFile,
          '--format',
          'commands',
          '--parent',
          'spiffe://acme.io/node/x',
        ]),
      );
      assert.equal(commands.out.trim().split('\n').length, 3);
      assert.match(commands.out, /^spire-server entry create -parentID spiffe:\/\/acme\.io\/node\/x /);
      const k8s = await run(() => main(['spire', 'entries', '--catalog', catalogFile, '--format', 'k8s']));
      assert.equal(k8s.code, 1);
      assert.match(k8s.err, /is not a k8s selector/);
      const bad = await run(() => main(['spire', 'entries', '--catalog', catalogFile, '--format', 'xml']));
      assert.equal(bad.code, 2);
    });

    it('spire check exits 0 when they agree and 1 listing each difference', async () => {
      const good = write('good.json', formatEntriesJson(generateEntries(catalog)));
      const ok = await run(() => main(['spire', 'check', '--catalog', catalogFile, '--entries', good]));
      assert.deepEqual([ok.code, ok.out.trim()], [0, 'ok: 3 entries match the catalog']);
      const partial = write('partial.json', formatEntriesJson(generateEntries(catalog).slice(1)));
      const missing = await run(() =>
        main(['spire', 'check', '--catalog', catalogFile, '--entries', partial]),
      );
      assert.equal(missing.code, 1);
      assert.match(
        missing.out,
        /^missing entry: spiffe:\/\/acme\.io\/agents\/deployer \(in the catalog, not registered\)$/m,
      );
    });

    it('config validate lists every problem, or prints a summary', async () => {
      const good = await run(() => main(['config', 'validate', catalogFile]));
      assert.equal(good.code, 0);
      assert.match(
        good.out,
        /ok: .*catalog\.yaml: 0 roles \(backends: none\), 6 catalog entries, 3 SPIRE workloads/,
      );
      const bad = write(
        'bad.yaml',
        `
redis: { url: 'redis://:secret@redis:6379', caFile: /ca.pem, passwordFile: /pw }
roles:
  s3/read: { maxTtlSeconds: 60 }
  vault/db: { kind: dynamic, path: database/creds/ro }
  token/x: { audience: api, scope: x }
  token/noaud: { scope: x }
spire: { groups: { nobody: { x509SvidTtlSeconds: 60 } } }
`,
      );
      const schema = await validateConfigFile(bad);
      assert.deepEqual(schema.problems, [
        'redis.caFile: needs a rediss:// url (TLS)',
        'redis.passwordFile: the url carries a password too: keep it in one place (the file)',
      ]);
      const fixedRedis = write(
        'roles.yaml',
        (await import('node:fs')).readFileSync(bad, 'utf8').replace(/^redis:.*$/m, ''),
      );
      const roles = await validateConfigFile(fixedRedis);
      assert.deepEqual(roles.problems, [
        'roles.s3/read: unknown backend "s3" (available: token, vault, aws, github, gcp, azure)',
        'roles.vault/db: needs backends.vault',
        'roles.token/noaud: settings.audience: required (a non-empty string or array of strings)',
        'spire.groups.nobody: no catalog entry has this group',
      ]);
      assert.ok(roles.warnings.some((w) => /not rediss/.test(w)));
      const printed = await run(() => main(['config', 'validate', fixedRedis]));
      assert.equal(printed.code, 1);
      assert.match(printed.err, /problem\(s\): the broker would not start with this file/);
    });

    it('config validate reads cloud roles as their backends do (it named them unknown)', async () => {
      const cloud = write(
        'cloud.yaml',
        `
backends:
  aws: { region: us-east-1, credentials: { source: default_chain } }
roles:
  aws/deploy: { maxTtlSeconds: 900, roleArn: 'arn:aws:iam::123456789012:role/agent-deploy' }
  aws/typo: { maxTtlSeconds: 900, roleArn: nope }
  azure/blob:
    maxTtlSeconds: 900
    tenantId: 11111111-2222-3333-4444-555555555555
    clientId: 66666666-7777-8888-9999-000000000000
    scope: https://storage.azure.com/.default
`,
      );
      const report = await validateConfigFile(cloud);
      assert.equal(report.problems.length, 2, report.problems.join('\n'));
      assert.match(report.problems[0] as string, /^roles\.aws\/typo: roleArn/);
      assert.equal(report.problems[1], 'roles.azure/blob: needs backends.azure');
    });
  });
});
