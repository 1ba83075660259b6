/**
 * The catalog's workloads as spire-controller-manager `ClusterSPIFFEID` resources
 * (spire.spiffe.io/v1alpha1), for clusters where the controller registers pods. Only `k8s:`
 * selectors mean anything there: `k8s:ns:<ns>` becomes the namespaceSelector (required, so a
 * resource never reaches every namespace), `k8s:pod-label:<key>:<value>` the podSelector, and
 * the rest (`k8s:sa:<name>`, `k8s:container-name:<name>`, ...) workload selector templates.
 */
import { stringify as toYaml } from 'yaml';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import {
  generateEntries,
  RegistrationError,
  type RegistrationCatalog,
  type SpireEntry,
} from './registration.js';

interface LabelSelector {
  matchLabels: Record<string, string>;
}

export interface ClusterSpiffeId {
  apiVersion: 'spire.spiffe.io/v1alpha1';
  kind: 'ClusterSPIFFEID';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    spiffeIDTemplate: string;
    namespaceSelector: LabelSelector;
    podSelector?: LabelSelector;
    workloadSelectorTemplates?: string[];
    ttl: string;
    jwtTtl: string;
    dnsNameTemplates?: string[];
    federatesWith?: string[];
    admin?: boolean;
    hint?: string;
    className?: string;
  };
}

/** A DNS-1123 name for the resource, from the SPIFFE ID's trust domain and path. */
export function resourceName(spiffeId: string): string {
  const id = parseSpiffeId(spiffeId);
  const name = `${id.trustDomain}${id.path}`
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return name.slice(0, 253).replace(/-+$/, '');
}

function toResource(entry: SpireEntry, className: string | undefined): ClusterSpiffeId {
  const who = entry.spiffe_id;
  const namespaces: string[] = [];
  const podLabels: Record<string, string> = {};
  const templates: string[] = [];
  for (const s of entry.selectors) {
    if (s.type !== 'k8s') {
      throw new RegistrationError(
        `${who}: selector "${s.type}:${s.value}" is not a k8s selector (--format k8s)`,
      );
    }
    if (s.value.startsWith('ns:')) namespaces.push(s.value.slice('ns:'.length));
    else if (s.value.startsWith('pod-label:')) {
      const [key, ...rest] = s.value.slice('pod-label:'.length).split(':');
      if (!key || rest.length === 0)
        throw new RegistrationError(`${who}: "k8s:${s.value}" is not pod-label:key:value`);
      podLabels[key] = rest.join(':');
    } else templates.push(`k8s:${s.value}`);
  }
  const [namespace] = namespaces;
  if (namespaces.length !== 1 || namespace === undefined) {
    throw new RegistrationError(`${who}: --format k8s needs exactly one k8s:ns:<namespace> selector`);
  }
  const spec: ClusterSpiffeId['spec'] = {
    spiffeIDTemplate: entry.spiffe_id,
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
    ttl: `${entry.x509_svid_ttl}s`,
    jwtTtl: `${entry.jwt_svid_ttl}s`,
  };
  if (Object.keys(podLabels).length > 0) spec.podSelector = { matchLabels: podLabels };
  if (templates.length > 0) spec.workloadSelectorTemplates = templates;
  if (entry.dns_names) spec.dnsNameTemplates = [...entry.dns_names];
  if (entry.federates_with) spec.federatesWith = [...entry.federates_with];
  if (entry.admin) spec.admin = true;
  if (entry.hint !== undefined) spec.hint = entry.hint;
  if (className !== undefined) spec.className = className;
  return {
    apiVersion: 'spire.spiffe.io/v1alpha1',
    kind: 'ClusterSPIFFEID',
    metadata: {
      name: resourceName(entry.spiffe_id),
      labels: { 'app.kubernetes.io/managed-by': 'svid-broker' },
    },
    spec,
  };
}

/** Every workload of the catalog as a ClusterSPIFFEID (the controller sets each entry's parent). */
export function generateClusterSpiffeIds(catalog: RegistrationCatalog): ClusterSpiffeId[] {
  // The parent is the node the pod runs on, which the controller knows; any valid ID satisfies the generator.
  const entries = generateEntries(
    catalog,
    catalog.spire.parentId ?? 'spiffe://k8s.invalid/controller-sets-parent',
  );
  const resources = entries.map((e) => toResource(e, catalog.spire.className));
  // Names are lossy (agents/ci-runner and agents/ci/runner alike): kubectl apply would let the
  // second resource replace the first, and one workload would silently get no SVID.
  const byName = new Map<string, string>();
  for (const r of resources) {
    const other = byName.get(r.metadata.name);
    if (other !== undefined) {
      throw new RegistrationError(
        `${other} and ${r.spec.spiffeIDTemplate} would both be ClusterSPIFFEID ${r.metadata.name}: rename one`,
      );
    }
    byName.set(r.metadata.name, r.spec.spiffeIDTemplate);
  }
  return resources;
}

/** A multi-document YAML stream, for `kubectl apply -f -`. */
export function formatClusterSpiffeIds(resources: readonly ClusterSpiffeId[]): string {
  return resources.map((r) => `---\n${toYaml(r)}`).join('');
}
