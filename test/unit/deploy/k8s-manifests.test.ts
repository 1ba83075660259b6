/**
 * The Kubernetes example, checked without a cluster: the Deployment's shape (replicas, PDB,
 * Service, probes, resources, the CSI-mounted Workload API socket), the ConfigMaps built from files
 * of this repository that validate, and ClusterSPIFFEIDs that are exactly what the generator makes
 * from the catalog.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { validateConfigFile } from '../../../src/cli/config-validate.js';
import { readCatalog } from '../../../src/cli/spire.js';
import { loadConfig } from '../../../src/config/load-config.js';
import { formatClusterSpiffeIds, generateClusterSpiffeIds } from '../../../src/spire/cluster-spiffe-id.js';
import { readText, readYaml, readYamlDocuments, repoPath, validatablePath } from './deploy-fixtures.js';

interface Probe {
  httpGet: { path: string; port: string };
}
interface Container {
  image: string;
  env?: Array<{ name: string; value: string }>;
  ports: Array<{ name: string; containerPort: number }>;
  readinessProbe: Probe;
  livenessProbe: Probe;
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  volumeMounts: Array<{ name: string; mountPath: string }>;
}
interface Resource {
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown> & {
    replicas?: number;
    minAvailable?: number;
    template?: {
      spec: {
        containers: Container[];
        volumes: Array<{ name: string; csi?: { driver: string }; configMap?: { name: string } }>;
      };
    };
  };
}

const K8S = 'deploy/k8s';
const resources = readYamlDocuments(K8S, 'broker.k8s.yaml') as Resource[];
const byKind = (kind: string): Resource => {
  const r = resources.find((x) => x.kind === kind);
  assert.ok(r, `no ${kind}`);
  return r;
};
const config = loadConfig({ file: validatablePath(K8S, 'broker.yaml'), env: {} });

describe('deploy/k8s manifests (no cluster needed)', () => {
  const deployment = byKind('Deployment');
  const pod = deployment.spec.template?.spec;
  const container = pod?.containers[0] as Container;
  const mountOf = (volume: string): string | undefined =>
    container.volumeMounts.find((m) => m.name === volume)?.mountPath;

  it('runs 3 replicas with a PodDisruptionBudget and a Service', () => {
    assert.equal(deployment.spec.replicas, 3);
    assert.equal(byKind('PodDisruptionBudget').spec.minAvailable, 2);
    assert.equal(byKind('Service').metadata.name, 'svid-broker');
  });

  it('probes /healthz and /readyz on the ops port the config listens on, with requests and limits', () => {
    assert.deepEqual(container.livenessProbe.httpGet, { path: '/healthz', port: 'ops' });
    assert.deepEqual(container.readinessProbe.httpGet, { path: '/readyz', port: 'ops' });
    const ops = container.ports.find((p) => p.name === 'ops');
    assert.equal(`0.0.0.0:${ops?.containerPort}`, config.httpListen);
    assert.equal(`0.0.0.0:${container.ports.find((p) => p.name === 'grpc')?.containerPort}`, config.listen);
    for (const k of ['cpu', 'memory']) {
      assert.ok(container.resources.requests[k] && container.resources.limits[k], k);
    }
  });

  it('mounts the Workload API socket from the SPIFFE CSI driver where the config expects it', () => {
    const csi = pod?.volumes.find((v) => v.csi?.driver === 'csi.spiffe.io');
    assert.ok(csi);
    assert.equal(mountOf(csi.name), dirname(config.workloadApi.socket.replace(/^unix:\/\//, '')));
  });

  it('builds its ConfigMaps from this repository: the config validates, the policies are all of policies/', async () => {
    const kustomization = readYaml(K8S, 'kustomization.yaml') as {
      resources: string[];
      configMapGenerator: Array<{ name: string; files: string[] }>;
    };
    for (const r of kustomization.resources) assert.ok(existsSync(repoPath(K8S, r)), r);
    const generated = new Map(kustomization.configMapGenerator.map((g) => [g.name, g.files]));
    const policyFiles = (generated.get('svid-broker-policies') ?? []).map((f) => resolve(repoPath(K8S), f));
    const shipped = readdirSync(repoPath('policies'))
      .filter((f) => f.endsWith('.cedar') || f.endsWith('.cedarschema'))
      .map((f) => repoPath('policies', f));
    assert.deepEqual(policyFiles.sort(), shipped.sort());
    assert.deepEqual(generated.get('svid-broker-config'), ['broker.yaml']);

    const volumes = pod?.volumes ?? [];
    const mountedMap = (name: string): string | undefined =>
      mountOf(volumes.find((v) => v.configMap?.name === name)?.name ?? '');
    assert.equal(mountedMap('svid-broker-policies'), config.policy.dir);
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    assert.equal(env['SVID_BROKER_CONFIG'], `${mountedMap('svid-broker-config') ?? ''}/broker.yaml`);
    assert.equal(mountOf('redis'), dirname(config.redis.passwordFile ?? ''));
    assert.equal(mountOf('audit'), dirname(config.audit.file));

    const report = await validateConfigFile(validatablePath(K8S, 'broker.yaml'));
    assert.deepEqual(report.problems, []);
    assert.deepEqual(report.warnings, []);
  });

  it('ships ClusterSPIFFEIDs that are exactly the generator output for the catalog', () => {
    const generated = formatClusterSpiffeIds(
      generateClusterSpiffeIds(readCatalog(validatablePath(K8S, 'broker.yaml'))),
    );
    const shipped = readText(K8S, 'spire/cluster-spiffe-ids.yaml').replace(/^#.*\n/gm, '');
    assert.equal(
      shipped,
      generated,
      'regenerate: svid-broker spire entries --format k8s --catalog deploy/k8s/broker.yaml',
    );
    const ids = readYamlDocuments(K8S, 'spire/cluster-spiffe-ids.yaml') as Array<{
      spec: { spiffeIDTemplate: string };
    }>;
    assert.ok(ids.some((r) => r.spec.spiffeIDTemplate === config.workloadApi.expectedId));
  });

  it('has notes for Redis and SPIRE on Kubernetes', () => {
    const notes = readText(K8S, 'README.md');
    for (const topic of [
      'Sentinel',
      'Cluster',
      'StatefulSet',
      'DaemonSet',
      'ClusterSPIFFEID',
      'csi.spiffe.io',
    ]) {
      assert.ok(notes.includes(topic), topic);
    }
  });
});
