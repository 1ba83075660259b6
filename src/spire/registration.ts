/**
 * SPIRE registration entries generated from the agent catalog, so that who SPIRE issues an SVID to
 * and which AgentGroups policy puts that SVID in come from one list. A catalog entry with
 * `selectors` is one workload to register; its SVID TTLs come from the entry, else the shortest
 * of its groups' (`spire.groups`), else `spire.x509SvidTtlSeconds` / `spire.jwtSvidTtlSeconds`.
 *
 * The JSON is what `spire-server entry create -data FILE` reads: `{"entries": [...]}` with
 * `spiffe_id`, `parent_id`, `selectors: [{type, value}]`, `x509_svid_ttl`, `jwt_svid_ttl` and,
 * when set, `federates_with`, `dns_names`, `admin`, `hint`.
 */
import type { AgentCatalogEntryConfig, SpireSettings } from '../config/catalog-schema.js';
import { parseSpiffeId } from '../identity/spiffe-id.js';
import { AgentCatalog } from '../policy/agent-catalog.js';

export interface SpireSelector {
  type: string;
  value: string;
}

/** One registration entry, field for field as SPIRE's `-data` JSON names them. */
export interface SpireEntry {
  spiffe_id: string;
  parent_id: string;
  selectors: SpireSelector[];
  x509_svid_ttl: number;
  jwt_svid_ttl: number;
  federates_with?: string[];
  dns_names?: string[];
  admin?: boolean;
  hint?: string;
}

/** The parts of a broker configuration the generator reads. */
export interface RegistrationCatalog {
  agents: readonly AgentCatalogEntryConfig[];
  spire: SpireSettings;
}

/** A catalog that cannot be turned into entries; the message says which agent and why. */
export class RegistrationError extends Error {
  constructor(message: string) {
    super(`spire: ${message}`);
    this.name = 'RegistrationError';
  }
}

/** `type:value`, split at the first colon as SPIRE does (the value may hold more). */
export function parseSelector(selector: string): SpireSelector {
  const at = selector.indexOf(':');
  if (at <= 0 || at === selector.length - 1) {
    throw new RegistrationError(`selector ${JSON.stringify(selector)} is not type:value`);
  }
  return { type: selector.slice(0, at), value: selector.slice(at + 1) };
}

/** The catalog entries that are workloads to register (those with selectors). */
export function registeredAgents(catalog: RegistrationCatalog): AgentCatalogEntryConfig[] {
  return catalog.agents.filter((a) => a.selectors !== undefined);
}

/** Every workload of the catalog as a SPIRE entry under `parentId` (or `spire.parentId`). */
export function generateEntries(catalog: RegistrationCatalog, parentId?: string): SpireEntry[] {
  const parent = parentId ?? catalog.spire.parentId;
  if (parent === undefined) {
    throw new RegistrationError('no parent ID: pass --parent or set spire.parentId in the catalog');
  }
  parseSpiffeId(parent, '--parent');
  const groupsOf = groupLookup(catalog);
  return registeredAgents(catalog).map((agent) => {
    const groups = groupsOf(agent.pattern);
    const entry: SpireEntry = {
      spiffe_id: agent.pattern,
      parent_id: parent,
      selectors: (agent.selectors ?? []).map(parseSelector),
      x509_svid_ttl: agent.x509SvidTtlSeconds ?? groupTtl(catalog.spire, groups, 'x509SvidTtlSeconds'),
      jwt_svid_ttl: agent.jwtSvidTtlSeconds ?? groupTtl(catalog.spire, groups, 'jwtSvidTtlSeconds'),
    };
    if (agent.federatesWith?.length) entry.federates_with = [...agent.federatesWith];
    if (agent.dnsNames?.length) entry.dns_names = [...agent.dnsNames];
    if (agent.admin === true) entry.admin = true;
    if (agent.hint !== undefined) entry.hint = agent.hint;
    return entry;
  });
}

function groupLookup(catalog: RegistrationCatalog): (id: string) => string[] {
  const agentCatalog = new AgentCatalog(catalog.agents);
  return (id) => agentCatalog.groupsOf(id);
}

/** The shortest TTL any of the groups sets, else the default: several groups never lengthen an SVID. */
function groupTtl(
  spire: SpireSettings,
  groups: readonly string[],
  key: 'x509SvidTtlSeconds' | 'jwtSvidTtlSeconds',
): number {
  const set = groups.map((g) => spire.groups[g]?.[key]).filter((ttl): ttl is number => ttl !== undefined);
  return set.length > 0 ? Math.min(...set) : spire[key];
}

/** The `-data` JSON document. */
export function formatEntriesJson(entries: readonly SpireEntry[]): string {
  return `${JSON.stringify({ entries }, null, 2)}\n`;
}

/** POSIX shell single-quoting, only where needed. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:@=,+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** One `spire-server entry create` command per entry (the flags SPIRE 1.15 takes). */
export function formatEntryCommands(entries: readonly SpireEntry[], server = 'spire-server'): string {
  return entries
    .map((e) => {
      const args = ['entry', 'create', '-parentID', e.parent_id, '-spiffeID', e.spiffe_id];
      for (const s of e.selectors) args.push('-selector', `${s.type}:${s.value}`);
      args.push('-x509SVIDTTL', String(e.x509_svid_ttl), '-jwtSVIDTTL', String(e.jwt_svid_ttl));
      for (const d of e.dns_names ?? []) args.push('-dns', d);
      for (const td of e.federates_with ?? []) args.push('-federatesWith', `spiffe://${td}`);
      if (e.admin) args.push('-admin');
      if (e.hint !== undefined) args.push('-hint', e.hint);
      return [server, ...args].map(shellQuote).join(' ');
    })
    .join('\n')
    .concat(entries.length > 0 ? '\n' : '');
}
