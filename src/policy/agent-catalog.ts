/**
 * The agent catalog: SPIFFE ID patterns -> AgentGroups, from configuration. Policies name groups
 * (`principal in AgentGroup::"security"`) so that they need not list workloads; the same catalog
 * is meant to feed SPIRE registration later, so patterns follow SpiffeIdPattern: an exact ID,
 * `/*` for one more path segment, `/**` for a subtree.
 */
import { parseSpiffeId, SpiffeIdPattern, type SpiffeId } from '../identity/spiffe-id.js';

export interface AgentCatalogEntry {
  pattern: string;
  groups: readonly string[];
  /** The person who owns the agents of this entry (IdP subject or email). */
  owner?: string;
}

/** A catalog entry that cannot be used; the message names the entry by index and pattern. */
export class AgentCatalogError extends Error {
  constructor(message: string) {
    super(`policy: agent catalog: ${message}`);
    this.name = 'AgentCatalogError';
  }
}

interface CompiledEntry {
  pattern: SpiffeIdPattern;
  groups: readonly string[];
  owner: string | undefined;
}

export class AgentCatalog {
  private readonly entries: readonly CompiledEntry[];

  /** Validates every entry up front: a bad pattern found on the first request would be an outage. */
  constructor(entries: readonly AgentCatalogEntry[]) {
    this.entries = Object.freeze(entries.map(compileEntry));
  }

  /**
   * Every group of every entry that matches, each once, in catalog order. An ID that does not
   * parse belongs to no group (the identity layer has refused it before this is asked).
   */
  groupsOf(spiffeId: string): string[] {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(spiffeId);
    } catch {
      return [];
    }
    const groups = new Set<string>();
    for (const entry of this.entries) {
      if (entry.pattern.matches(id)) for (const g of entry.groups) groups.add(g);
    }
    return [...groups];
  }

  /** The owner named by the first matching entry that names one, or undefined. */
  ownerOf(spiffeId: string): string | undefined {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(spiffeId);
    } catch {
      return undefined;
    }
    return this.entries.find((e) => e.owner !== undefined && e.pattern.matches(id))?.owner;
  }
}

function compileEntry(entry: AgentCatalogEntry, index: number): CompiledEntry {
  const where = `entry ${index} (${JSON.stringify(entry.pattern)})`;
  let pattern: SpiffeIdPattern;
  try {
    pattern = SpiffeIdPattern.parse(entry.pattern, `agents[${index}].pattern`);
  } catch (err) {
    throw new AgentCatalogError(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(entry.groups) || entry.groups.length === 0) {
    throw new AgentCatalogError(`${where}: names no groups`);
  }
  for (const g of entry.groups) {
    // Group names become Cedar entity ids; an empty or padded one is surely a typo that would
    // silently never match a policy.
    if (typeof g !== 'string' || g === '' || g.trim() !== g) {
      throw new AgentCatalogError(`${where}: invalid group name ${JSON.stringify(g)}`);
    }
  }
  return { pattern, groups: Object.freeze([...entry.groups]), owner: entry.owner };
}
