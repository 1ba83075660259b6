/**
 * `svid-broker spire check`: compares SPIRE registration entries with the agent catalog. Reads
 * the `-data` JSON (`spiffe_id` as a string) and `spire-server entry show -output json` (the API
 * shape, `spiffe_id: {trust_domain, path}`), so it checks a live server as well as a file.
 */
import { z } from 'zod';
import { isValidSpiffeId } from '../identity/spiffe-id.js';
import { AgentCatalog } from '../policy/agent-catalog.js';
import {
  generateEntries,
  registeredAgents,
  RegistrationError,
  type RegistrationCatalog,
  type SpireEntry,
} from './registration.js';

const spiffeIdField = z.union([
  z.string(),
  z
    .object({ trust_domain: z.string(), path: z.string() })
    .transform((id) => `spiffe://${id.trust_domain}${id.path}`),
]);

const entriesFileSchema = z.object({
  entries: z
    .array(
      z.object({
        spiffe_id: spiffeIdField,
        parent_id: spiffeIdField.optional(),
        selectors: z.array(z.object({ type: z.string(), value: z.string() })).default([]),
        x509_svid_ttl: z.number().int().optional(),
        jwt_svid_ttl: z.number().int().optional(),
      }),
    )
    .default([]),
});

export type CheckedEntry = z.infer<typeof entriesFileSchema>['entries'][number];

/** Parses an entries document; throws RegistrationError naming the first problem. */
export function parseEntriesDocument(text: string, source: string): CheckedEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RegistrationError(`${source}: not JSON: ${(err as Error).message}`);
  }
  const parsed = entriesFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RegistrationError(`${source}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  for (const e of parsed.data.entries) {
    if (!isValidSpiffeId(e.spiffe_id))
      throw new RegistrationError(`${source}: invalid SPIFFE ID ${e.spiffe_id}`);
  }
  return parsed.data.entries;
}

export interface EntryCheckReport {
  /** Catalog workloads (entries with selectors) that no registration entry names. */
  unregistered: string[];
  /** Entries whose SPIFFE ID no catalog pattern matches: policy would put them in no group. */
  unknown: string[];
  /** Catalog workloads registered with other selectors or TTLs than the catalog says. */
  differs: Array<{ spiffeId: string; problems: string[] }>;
}

/**
 * Node entries are SPIRE's own business, not workloads: `-node` entries (parent: the server) and
 * the alias a join token creates (its one selector is `spiffe_id:<agent id>`).
 */
function isNodeEntry(e: CheckedEntry): boolean {
  if (e.parent_id !== undefined && /^spiffe:\/\/[^/]+\/spire\/server$/.test(e.parent_id)) return true;
  return e.selectors.length > 0 && e.selectors.every((s) => s.type === 'spiffe_id');
}

const selectorKey = (s: { type: string; value: string }): string => `${s.type}:${s.value}`;

function differences(want: SpireEntry, have: CheckedEntry): string[] {
  const problems: string[] = [];
  const wantSel = want.selectors.map(selectorKey).sort().join(', ');
  const haveSel = have.selectors.map(selectorKey).sort().join(', ');
  if (wantSel !== haveSel) problems.push(`selectors [${haveSel}], catalog says [${wantSel}]`);
  for (const key of ['x509_svid_ttl', 'jwt_svid_ttl'] as const) {
    if (have[key] !== undefined && have[key] !== 0 && have[key] !== want[key]) {
      problems.push(`${key} ${have[key]}, catalog says ${want[key]}`);
    }
  }
  return problems;
}

/** What differs between the catalog and the entries (empty lists: they agree). */
export function checkEntries(
  catalog: RegistrationCatalog,
  entries: readonly CheckedEntry[],
): EntryCheckReport {
  const agentCatalog = new AgentCatalog(catalog.agents);
  const wanted = registeredAgents(catalog).length
    ? generateEntries(catalog, catalog.spire.parentId ?? 'spiffe://check.invalid/any-parent')
    : [];
  const byId = new Map<string, CheckedEntry[]>();
  for (const e of entries.filter((e) => !isNodeEntry(e)))
    byId.set(e.spiffe_id, [...(byId.get(e.spiffe_id) ?? []), e]);
  const report: EntryCheckReport = { unregistered: [], unknown: [], differs: [] };
  for (const want of wanted) {
    const have = byId.get(want.spiffe_id);
    if (!have) {
      report.unregistered.push(want.spiffe_id);
      continue;
    }
    // Several entries may share an ID (one per node, say): any one matching the catalog will do.
    const problems = have.map((h) => differences(want, h));
    if (problems.every((p) => p.length > 0))
      report.differs.push({ spiffeId: want.spiffe_id, problems: problems[0] ?? [] });
  }
  for (const id of byId.keys()) {
    if (agentCatalog.groupsOf(id).length === 0) report.unknown.push(id);
  }
  return report;
}
