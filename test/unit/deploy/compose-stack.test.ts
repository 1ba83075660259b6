/**
 * What can be checked of the compose stack without a Docker engine: every file parses, images are
 * pinned, and the files agree with each other and with the broker (socket paths, env var names,
 * trust domain, JWT issuer, Vault binding, Redis login and persistence, mounted config and
 * policies that validate).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { validateConfigFile } from '../../../src/cli/config-validate.js';
import { readCatalog } from '../../../src/cli/spire.js';
import { ENV_OVERRIDES, loadConfig } from '../../../src/config/load-config.js';
import type { BrokerConfig } from '../../../src/config/schema.js';
import { isValidSpiffeId, parseSpiffeId } from '../../../src/identity/spiffe-id.js';
import { readPolicyBundle } from '../../../src/policy/policy-bundle.js';
import { generateEntries } from '../../../src/spire/registration.js';
import {
  hclPlugins,
  hclValue,
  readText,
  readYaml,
  readYamlDocuments,
  repoPath,
  validatablePath,
} from './deploy-fixtures.js';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  secrets?: string[];
  labels?: Record<string, string>;
  pid?: string;
  depends_on?: unknown;
}
interface Compose {
  services: Record<string, Service>;
  secrets: Record<string, { file: string }>;
  volumes: Record<string, unknown>;
}

const COMPOSE_DIR = repoPath('deploy/compose');
const compose = readYaml('deploy/compose/docker-compose.yml') as Compose;
const service = (name: string): Service => {
  const s = compose.services[name];
  assert.ok(s, `compose has no service ${name}`);
  return s;
};
const config: Readonly<BrokerConfig> = loadConfig({
  file: validatablePath('deploy/compose/broker.yaml'),
  env: {},
});
const serverConf = readText('spire/server.conf');
const agentConf = readText('spire/agent.conf');
const oidcConf = readText('spire/oidc-discovery-provider.conf');
const vaultInit = readText('deploy/compose/vault-init.sh');
const TRUST_DOMAIN = hclValue(serverConf, 'trust_domain');

/** `source:target[:ro]` of a service's volume whose target is `target`. */
function mountAt(s: Service, target: string): string | undefined {
  for (const v of s.volumes ?? []) {
    const [source, to] = v.split(':');
    if (to === target) return source;
  }
  return undefined;
}

const unixPath = (uri: string): string => uri.replace(/^unix:\/\//, '');
const brokers = ['broker-1', 'broker-2'];

function filesUnder(dir: string): string[] {
  return readdirSync(repoPath(dir)).flatMap((f) => {
    const rel = join(dir, f);
    return statSync(repoPath(rel)).isDirectory() ? filesUnder(rel) : [rel];
  });
}

describe('deploy files (no Docker needed)', () => {
  it('every YAML and JSON file in deploy/ and spire/ parses', () => {
    const files = [...filesUnder('deploy'), ...filesUnder('spire')].filter((f) => /\.(ya?ml|json)$/.test(f));
    assert.ok(files.length >= 7, files.join(', '));
    for (const f of files) {
      if (f.endsWith('.json')) JSON.parse(readText(f));
      else assert.ok(readYamlDocuments(f).length >= 1, f);
    }
  });

  it('pins every image to an explicit version', () => {
    const pinned = /^[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$/;
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.build !== undefined || s.image === 'svid-broker:dev') continue; // built from this checkout
      assert.match(s.image ?? '', pinned, `compose service ${name}`);
    }
    const dockerfile = readText('deploy/Dockerfile');
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:\d+\.\d+\.\d+-bookworm-slim$/m);
    const docs = readYamlDocuments('deploy/k8s/broker.k8s.yaml') as Array<{
      spec?: { template?: { spec?: { containers?: Array<{ image: string }> } } };
    }>;
    const containers = docs.flatMap((d) => d.spec?.template?.spec?.containers ?? []);
    assert.ok(containers.length > 0);
    for (const c of containers) assert.match(c.image, pinned);
  });

  it('the Dockerfile is multi-stage, runs as its own non-root user through the launcher and checks /healthz', () => {
    const dockerfile = readText('deploy/Dockerfile');
    assert.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 3);
    assert.match(dockerfile, /^USER 10001:10001$/m);
    assert.match(dockerfile, /^HEALTHCHECK .*\n.*\/healthz/m);
    assert.match(dockerfile, /npm ci --omit=dev/);
    // Only dist/, bin/, proto/, package.json and production node_modules reach the final stage.
    const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const copies = [...final.matchAll(/^COPY (?:--from=\S+ )?(\S+)/gm)].map((m) => m[1]);
    assert.deepEqual(copies.sort(), ['/src/dist', '/src/node_modules', 'bin', 'package.json', 'proto']);
    // The launcher is the entrypoint, so the broker starts with its memory settings.
    assert.match(dockerfile, /^ENTRYPOINT \["\/app\/bin\/svid-broker"\]$/m);
  });

  it('one trust domain: SPIRE, the catalog, the broker, Vault and the generated entries', () => {
    assert.equal(hclValue(agentConf, 'trust_domain'), TRUST_DOMAIN);
    for (const a of config.agents)
      assert.equal(parseSpiffeId(a.pattern.replace(/\/\*\*?$/, '/x')).trustDomain, TRUST_DOMAIN);
    assert.equal(parseSpiffeId(config.workloadApi.expectedId ?? '').trustDomain, TRUST_DOMAIN);
    for (const s of ['demo-agent', 'security-oncall']) {
      assert.equal(service(s).environment?.['SVID_BROKER_ID'], config.workloadApi.expectedId);
    }
    assert.match(vaultInit, new RegExp(`^BROKER_ID="${config.workloadApi.expectedId ?? ''}"$`, 'm'));
    assert.match(
      readText('deploy/compose/up.sh'),
      new RegExp(`^NODE_ID=${config.spire.parentId ?? ''}$`, 'm'),
    );
  });

  it('the broker is given the socket the SPIRE agent serves, mounted from the agent', () => {
    const socket = hclValue(agentConf, 'socket_path');
    const socketDir = dirname(socket);
    assert.equal(unixPath(config.workloadApi.socket), socket);
    const volume = mountAt(service('spire-agent'), socketDir);
    assert.ok(
      volume && compose.volumes[volume] !== undefined,
      'the agent socket directory is a named volume',
    );
    for (const name of [...brokers, 'demo-agent', 'security-oncall']) {
      assert.equal(mountAt(service(name), socketDir), volume, `${name} mounts the agent socket`);
    }
    for (const name of ['demo-agent', 'security-oncall']) {
      assert.equal(unixPath(service(name).environment?.['SPIFFE_ENDPOINT_SOCKET'] ?? ''), socket);
    }
    // The docker attestor resolves callers through the host PID namespace and the Docker API.
    assert.equal(service('spire-agent').pid, 'host');
    assert.equal(mountAt(service('spire-agent'), '/var/run/docker.sock'), '/var/run/docker.sock');
  });

  it('each workload container carries exactly the label its catalog entry selects', () => {
    const entries = generateEntries(readCatalog(validatablePath('deploy/compose/broker.yaml')));
    const byLabel = new Map<string, string>(
      entries.flatMap((e) => e.selectors.map((s) => [`${s.type}:${s.value}`, e.spiffe_id] as const)),
    );
    const expected: Record<string, string> = {
      'broker-1': config.workloadApi.expectedId ?? '',
      'broker-2': config.workloadApi.expectedId ?? '',
      'demo-agent': 'spiffe://example.org/agents/demo',
      'security-oncall': 'spiffe://example.org/security/oncall',
    };
    for (const [name, id] of Object.entries(expected)) {
      const labels = Object.entries(service(name).labels ?? {}).map(([k, v]) => `docker:label:${k}:${v}`);
      assert.deepEqual(
        labels.map((l) => byLabel.get(l)),
        [id],
        `${name}: ${labels.join(', ')}`,
      );
    }
    // The broker's hint is what it selects by.
    assert.equal(
      entries.find((e) => e.spiffe_id === config.workloadApi.expectedId)?.hint,
      config.workloadApi.hint,
    );
  });

  it('the env vars given to the broker and the agents are ones the README documents', () => {
    const known = new Set([...Object.keys(ENV_OVERRIDES), 'SVID_BROKER_ADDR']);
    for (const name of [...brokers, 'demo-agent', 'security-oncall']) {
      for (const key of Object.keys(service(name).environment ?? {}))
        assert.ok(known.has(key), `${name}: ${key}`);
    }
    const readme = readText('README.md');
    for (const key of known) assert.match(readme, new RegExp(`\`${key}\``), `README documents ${key}`);
  });

  it('mounts the config and policies of this repository, and both validate', async () => {
    for (const name of brokers) {
      const s = service(name);
      assert.equal(
        resolve(COMPOSE_DIR, mountAt(s, '/etc/svid-broker/broker.yaml') ?? ''),
        repoPath('deploy/compose/broker.yaml'),
      );
      assert.equal(resolve(COMPOSE_DIR, mountAt(s, config.policy.dir) ?? ''), repoPath('policies'));
      assert.equal(s.environment?.['SVID_BROKER_CONFIG'], '/etc/svid-broker/broker.yaml');
      assert.ok(mountAt(s, dirname(config.audit.file)), `${name} mounts a volume for the audit trail`);
    }
    const report = await validateConfigFile(validatablePath('deploy/compose/broker.yaml'));
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
    const { bundle, problems } = readPolicyBundle(repoPath('policies'));
    assert.deepEqual(problems, []);
    assert.ok(bundle);
  });

  it('every AgentGroup the policies name is one the catalogs define', () => {
    const named = new Set(
      readdirSync(repoPath('policies'))
        .filter((f) => f.endsWith('.cedar'))
        .flatMap((f) =>
          [...readText('policies', f).matchAll(/AgentGroup::"([^"]+)"/g)].map((m) => m[1] as string),
        ),
    );
    assert.ok(named.size >= 3);
    for (const file of ['deploy/compose/broker.yaml', 'deploy/k8s/broker.yaml']) {
      const groups = new Set(
        readCatalog(validatablePath(...file.split('/'))).agents.flatMap((a) => a.groups),
      );
      for (const g of named) assert.ok(groups.has(g), `${file} defines AgentGroup ${g}`);
    }
    // And no policy names a trust domain: the catalog is the one place that does.
    for (const f of readdirSync(repoPath('policies')).filter((f) => f.endsWith('.cedar'))) {
      assert.doesNotMatch(
        readText('policies', f).replace(/^\s*\/\/.*$/gm, ''),
        /spiffe:\/\/|trustDomain ==/,
        f,
      );
    }
  });

  it("SPIRE's jwt_issuer is what the discovery provider serves and what Vault's bound_issuer requires", () => {
    const issuer = hclValue(serverConf, 'jwt_issuer');
    assert.equal(hclValue(oidcConf, 'jwt_issuer'), issuer);
    assert.match(vaultInit, new RegExp(`^ISSUER="${issuer}"$`, 'm'));
    assert.match(vaultInit, /oidc_discovery_url="\$ISSUER" bound_issuer="\$ISSUER"/);
    const url = new URL(issuer);
    assert.ok(compose.services[url.hostname], `a compose service answers at ${url.hostname}`);
    assert.equal(hclValue(oidcConf, 'insecure_addr'), `:${url.port}`);
    assert.match(oidcConf, new RegExp(`domains = \\["${url.hostname}"\\]`));
    assert.equal(
      hclValue(oidcConf, 'address'),
      `unix://${hclValue(serverConf, 'socket_path')}`,
      'the provider reads keys from the server socket',
    );
  });

  it("Vault's role binds the broker's SPIFFE ID, audience and role as the broker config names them", () => {
    const vault = config.backends.vault;
    assert.ok(vault && vault.auth.method === 'jwt');
    assert.match(vaultInit, new RegExp(`auth/jwt/role/${vault.auth.role} `));
    assert.match(
      vaultInit,
      new RegExp(`bound_audiences=${vault.auth.audience} bound_subject="\\$BROKER_ID"`),
    );
    // token_ttl covers the longest vault/* role.
    const longest = Math.max(
      ...Object.entries(config.roles)
        .filter(([n]) => n.startsWith('vault/'))
        .map(([, r]) => r.maxTtlSeconds),
    );
    const ttl = /token_ttl=(\d+)h/.exec(vaultInit);
    assert.ok(ttl && Number(ttl[1]) * 3600 >= longest);
    assert.equal(new URL(vault.address).hostname, 'vault');
    assert.equal(mountAt(service('broker-1'), dirname(vault.caFile ?? '')), 'vault-tls');
  });

  it('Redis: TLS only, the ACL user, AOF fsynced on every write, no eviction', () => {
    const cmd = (service('redis').command ?? []).join(' ');
    for (const flag of [
      '--port 0',
      '--tls-port 6379',
      '--appendonly yes',
      '--appendfsync always',
      '--maxmemory-policy noeviction',
    ]) {
      assert.ok(cmd.includes(flag), flag);
    }
    assert.match(cmd, /--aclfile \/run\/secrets\/redis-users-acl/);
    assert.equal(config.redis.url, 'rediss://redis:6379');
    const acl = readText('deploy/redis/users.acl.in');
    assert.match(
      acl,
      new RegExp(
        `^user ${config.redis.username ?? '-'} on #@SVID_BROKER_PASSWORD_SHA256@ resetkeys ~\\{${config.redis.prefix}\\}:\\* `,
        'm',
      ),
    );
    assert.match(acl, /^user default off$/m);
    // The password file is the compose secret of that name; the CA is mounted where the config says.
    assert.equal(config.redis.passwordFile, '/run/secrets/redis-broker-password');
    for (const name of brokers) {
      assert.ok(service(name).secrets?.includes('redis-broker-password'));
      assert.ok(mountAt(service(name), config.redis.caFile ?? ''));
    }
    assert.ok(compose.secrets['redis-broker-password']);
    assert.equal(
      (readYaml('deploy/compose/broker.yaml') as { redis: { durability?: string } }).redis.durability,
      'fsync',
    );
  });

  it('HCL: server.conf and agent.conf carry what the stack needs and agree with compose', () => {
    assert.equal(hclValue(serverConf, 'data_dir'), '/var/lib/spire/server');
    assert.ok(mountAt(service('spire-server'), '/var/lib/spire/server'));
    assert.ok(mountAt(service('spire-server'), dirname(hclValue(serverConf, 'socket_path'))));
    assert.deepEqual(hclPlugins(serverConf), ['DataStore sql', 'NodeAttestor join_token', 'KeyManager disk']);
    assert.deepEqual(hclPlugins(agentConf), [
      'NodeAttestor join_token',
      'KeyManager disk',
      'WorkloadAttestor docker',
    ]);
    assert.equal(hclValue(agentConf, 'data_dir'), '/var/lib/spire/agent');
    assert.ok(mountAt(service('spire-agent'), '/var/lib/spire/agent'));
    assert.equal(hclValue(agentConf, 'server_address'), 'spire-server');
    assert.equal(hclValue(agentConf, 'server_port'), hclValue(serverConf, 'bind_port'));
    assert.deepEqual(service('spire-server').command, ['-config', '/etc/spire/server.conf']);
    assert.equal(
      resolve(COMPOSE_DIR, mountAt(service('spire-server'), '/etc/spire/server.conf') ?? ''),
      repoPath('spire/server.conf'),
    );
    assert.equal(
      resolve(COMPOSE_DIR, mountAt(service('spire-agent'), '/etc/spire/agent.conf') ?? ''),
      repoPath('spire/agent.conf'),
    );
    assert.ok(existsSync(repoPath('spire/register.sh')));
  });

  it('generated entries match the SPIRE entry JSON format field by field', () => {
    const entries = generateEntries(readCatalog(validatablePath('deploy/compose/broker.yaml')));
    const allowed = [
      'spiffe_id',
      'parent_id',
      'selectors',
      'x509_svid_ttl',
      'jwt_svid_ttl',
      'federates_with',
      'dns_names',
      'admin',
      'hint',
    ];
    assert.equal(entries.length, 3);
    for (const e of JSON.parse(JSON.stringify({ entries })).entries as Array<Record<string, unknown>>) {
      for (const key of Object.keys(e)) assert.ok(allowed.includes(key), key);
      assert.ok(isValidSpiffeId(e['spiffe_id'] as string));
      assert.ok(isValidSpiffeId(e['parent_id'] as string));
      for (const s of e['selectors'] as Array<Record<string, unknown>>) {
        assert.deepEqual(Object.keys(s).sort(), ['type', 'value']);
        assert.equal(typeof s['type'], 'string');
        assert.equal(typeof s['value'], 'string');
      }
      assert.ok(Number.isInteger(e['x509_svid_ttl']) && Number.isInteger(e['jwt_svid_ttl']));
    }
  });
});
