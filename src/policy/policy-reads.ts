/**
 * What a policy's conditions read of a request beyond its scope: the context keys and the
 * principal's and resource's attributes. Read statically from Cedar's JSON policy format, and
 * erring towards "everything": a read this cannot place counts as reading all there is.
 */

import { unionValueUses, valueUsesOf, type ValueUses } from './policy-value-classes.js';

/** Keys read, or `all` when the thing is used whole or in a way not recognised here. */
export type KeyReads = ReadonlySet<string> | 'all';

export interface PolicyReads {
  context: KeyReads;
  principal: KeyReads;
  resource: KeyReads;
  /**
   * Whether an attribute is read of some other entity (an entity literal, an attribute's value,
   * a tag): then every entity of the request is handed to Cedar as built.
   */
  otherEntities: boolean;
  /** Context keys only compared with literals (policy-value-classes.ts); none when undefined. */
  contextValues?: ValueUses;
}

interface Acc {
  context: Set<string> | 'all';
  principal: Set<string> | 'all';
  resource: Set<string> | 'all';
  otherEntities: boolean;
}

const PROJECTED_VARS = ['context', 'principal', 'resource'] as const;
type ProjectedVar = (typeof PROJECTED_VARS)[number];

/** The reads of a policy's conditions (the `conditions[].body` of its JSON form). */
export function readsOf(bodies: readonly unknown[]): PolicyReads {
  const acc: Acc = { context: new Set(), principal: new Set(), resource: new Set(), otherEntities: false };
  for (const body of bodies) collect(body, acc);
  return { ...acc, contextValues: valueUsesOf(bodies) };
}

/** The union of several policies' reads. */
export function unionReads(all: readonly PolicyReads[]): PolicyReads {
  const union = (pick: (r: PolicyReads) => KeyReads): KeyReads => {
    const keys = new Set<string>();
    for (const r of all) {
      const k = pick(r);
      if (k === 'all') return 'all';
      for (const key of k) keys.add(key);
    }
    return keys;
  };
  return {
    context: union((r) => r.context),
    principal: union((r) => r.principal),
    resource: union((r) => r.resource),
    otherEntities: all.some((r) => r.otherEntities),
    contextValues: unionValueUses(
      all.map((r) => ({ uses: r.contextValues ?? new Map(), reads: (key) => readsKey(r.context, key) })),
    ),
  };
}

export function readsKey(reads: KeyReads, key: string): boolean {
  return reads === 'all' || reads.has(key);
}

function collect(node: unknown, acc: Acc): void {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, acc);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const record = node as Record<string, unknown>;
  const whole = projectedVar(record);
  if (whole !== undefined) {
    // `context` used whole (compared, passed to a function); for principal and resource the
    // bare variable is the entity reference, which needs no attributes.
    if (whole === 'context') acc.context = 'all';
    return;
  }
  if ('getTag' in record || 'hasTag' in record) acc.otherEntities = true;
  for (const op of ['.', 'has']) {
    const access = record[op] as { left?: unknown; attr?: unknown } | undefined;
    if (access === undefined || typeof access.attr !== 'string') continue;
    const owner = projectedVar(access.left);
    if (owner !== undefined) {
      add(acc, owner, access.attr);
      return;
    }
    // An attribute of something else: a record inside the context, or another entity.
    if (!rootedInContext(access.left)) acc.otherEntities = true;
  }
  for (const value of Object.values(record)) collect(value, acc);
}

function add(acc: Acc, owner: ProjectedVar, attr: string): void {
  const keys = acc[owner];
  if (keys !== 'all') keys.add(attr);
}

function projectedVar(node: unknown): ProjectedVar | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const v = (node as Record<string, unknown>)['Var'];
  return PROJECTED_VARS.find((name) => name === v);
}

/** `context.a`, `context.a.b`, ...: a record reached from the context, never an entity. */
function rootedInContext(node: unknown): boolean {
  if (projectedVar(node) === 'context') return true;
  if (node === null || typeof node !== 'object') return false;
  const access = (node as Record<string, unknown>)['.'] as { left?: unknown } | undefined;
  return access !== undefined && rootedInContext(access.left);
}
