/**
 * Policies and their evaluation, kept to what the broker meets: path patterns (exact, `+` for one
 * segment, a trailing `*` for a prefix) mapped to capabilities. As in Vault, all of a token's policies
 * are merged, the most specific matching pattern alone decides, and `deny` wins over everything.
 */
import type { Operation } from './types.js';

export const CAPABILITIES = ['create', 'read', 'update', 'patch', 'delete', 'list', 'sudo', 'deny'] as const;
export type Capability = (typeof CAPABILITIES)[number];

/** Path pattern -> capabilities, e.g. `{ 'database/creds/*': ['read'] }`. Paths are namespace-relative. */
export type PolicyRules = Readonly<Record<string, readonly Capability[]>>;

/** Vault's built-in `default` policy, reduced to the paths the emulator serves. */
export const DEFAULT_POLICY: PolicyRules = {
  'auth/token/lookup-self': ['read'],
  'auth/token/renew-self': ['update'],
  'auth/token/revoke-self': ['update'],
  'sys/capabilities-self': ['update'],
  'sys/leases/lookup': ['update'],
  'sys/leases/renew': ['update'],
  'sys/renew': ['update'],
  'sys/wrapping/wrap': ['update'],
  'sys/wrapping/lookup': ['update'],
  'sys/wrapping/unwrap': ['update'],
};

/** Vault's internal policy of response-wrapping tokens: they can unwrap and nothing else. */
export const RESPONSE_WRAPPING_POLICY: PolicyRules = {
  'sys/wrapping/unwrap': ['update'],
  'sys/wrapping/lookup': ['update'],
};

const ALL_CAPABILITIES: ReadonlySet<Capability> = new Set(CAPABILITIES.filter((c) => c !== 'deny'));

interface CompiledPattern {
  readonly pattern: string;
  readonly regexp: RegExp;
  readonly glob: boolean;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function compile(pattern: string): CompiledPattern {
  const glob = pattern.endsWith('*');
  const body = glob ? pattern.slice(0, -1) : pattern;
  const source = body
    .split('/')
    .map((seg) => (seg === '+' ? '[^/]+' : escapeRegExp(seg)))
    .join('/');
  return { pattern, regexp: new RegExp(`^${source}${glob ? '.*' : ''}$`, 's'), glob };
}

function firstWildcard(p: string): number {
  const i = p.search(/[+*]/);
  return i === -1 ? p.length : i;
}

function plusCount(p: string): number {
  return p.split('/').filter((s) => s === '+').length;
}

/** True when `a` takes priority over `b`, by Vault's documented rules for overlapping patterns. */
function higherPriority(a: string, b: string): boolean {
  if (firstWildcard(a) !== firstWildcard(b)) return firstWildcard(a) > firstWildcard(b);
  const aGlob = a.endsWith('*');
  if (aGlob !== b.endsWith('*')) return !aGlob;
  if (plusCount(a) !== plusCount(b)) return plusCount(a) < plusCount(b);
  if (a.length !== b.length) return a.length > b.length;
  return a > b;
}

function validateRules(name: string, rules: PolicyRules): void {
  for (const [pattern, caps] of Object.entries(rules)) {
    const star = pattern.indexOf('*');
    if (star !== -1 && star !== pattern.length - 1) {
      throw new Error(`vault-emulator: policy ${name}: '*' is only allowed at the end of "${pattern}"`);
    }
    for (const c of caps) {
      if (!(CAPABILITIES as readonly string[]).includes(c)) {
        throw new Error(`vault-emulator: policy ${name}: unknown capability "${c}"`);
      }
    }
  }
}

export class PolicyStore {
  /** namespace path -> policy name -> rules. */
  private readonly byNamespace = new Map<string, Map<string, PolicyRules>>();

  set(namespacePath: string, name: string, rules: PolicyRules): void {
    const normalized = name.trim().toLowerCase();
    if (normalized === 'root' || normalized === 'response-wrapping') {
      throw new Error(`vault-emulator: policy "${normalized}" is built in and cannot be changed`);
    }
    validateRules(normalized, rules);
    let policies = this.byNamespace.get(namespacePath);
    if (policies === undefined) {
      policies = new Map();
      this.byNamespace.set(namespacePath, policies);
    }
    policies.set(normalized, { ...rules });
  }

  private rules(namespacePath: string, name: string): PolicyRules | undefined {
    const custom = this.byNamespace.get(namespacePath)?.get(name);
    if (custom !== undefined) return custom;
    if (name === 'default') return DEFAULT_POLICY;
    if (name === 'response-wrapping') return RESPONSE_WRAPPING_POLICY;
    // A token may name a policy that does not exist; Vault ignores it, granting nothing.
    return undefined;
  }

  /** The capabilities `policies` (defined in `namespacePath`) grant on the namespace-relative `path`. */
  capabilities(namespacePath: string, policies: readonly string[], path: string): Set<Capability> {
    if (policies.includes('root')) return new Set(ALL_CAPABILITIES);
    const merged = new Map<string, Set<Capability>>();
    for (const name of policies) {
      for (const [pattern, caps] of Object.entries(this.rules(namespacePath, name) ?? {})) {
        const set = merged.get(pattern) ?? new Set<Capability>();
        for (const c of caps) set.add(c);
        merged.set(pattern, set);
      }
    }
    let best: string | undefined;
    for (const pattern of merged.keys()) {
      const compiled = compile(pattern);
      if (!compiled.regexp.test(path)) continue;
      // An exact (wildcard-free) match always wins over globs.
      if (firstWildcard(pattern) === pattern.length) {
        best = pattern;
        break;
      }
      if (best === undefined || higherPriority(pattern, best)) best = pattern;
    }
    const caps = best === undefined ? undefined : merged.get(best);
    if (caps === undefined || caps.has('deny')) return new Set();
    return new Set(caps);
  }
}

/** Whether `caps` allow `operation`. */
export function allows(caps: ReadonlySet<Capability>, operation: Operation): boolean {
  return caps.has(operation);
}

/**
 * Vault's policy sanitising: trimmed, lowercased, deduplicated, sorted; a list naming `root` is just
 * `root`; `default` is added unless asked not to.
 */
export function sanitizePolicies(policies: readonly string[], addDefault: boolean): string[] {
  const set = new Set(policies.map((p) => p.trim().toLowerCase()).filter((p) => p !== ''));
  if (set.has('root')) return ['root'];
  if (addDefault) set.add('default');
  return [...set].sort();
}
