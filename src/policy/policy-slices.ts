/**
 * Policy slicing: a request is decided against only the policies whose scope can match it.
 *
 * A Cedar policy applies only when its scope matches (`principal in AgentGroup::"demo"`,
 * `action == Action::"IssueCredential"`, `resource is Role`, ...): the scope is conjoined with the
 * conditions, so a policy whose scope does not match is neither satisfied nor can it error. The
 * decision, the deciding policies and the errors of a request are therefore the same over the
 * slice as over the whole set (test/unit/policy/policy-slices.property.test.ts compares both).
 *
 * The slice depends only on what the scopes can see: the action, the principal's and resource's
 * types, and which entities named in some scope are the principal, the resource or one of their
 * ancestors. That is the index key, so every agent of the same groups shares one slice. Equal
 * slices share one preparsed set in the wasm cache, named by their content (engines over the
 * same bundle may build it in any order). The wasm cache cannot evict: past MAX_SLICES distinct
 * slices or MAX_KEYS keys, requests are decided against the whole set (the same answer, slower).
 */
import { createHash } from 'node:crypto';
import { policyToJson, type EntityUidJson } from '@cedar-policy/cedar-wasm/nodejs';
import { readsKey, readsOf, unionReads, type PolicyReads } from './policy-reads.js';
import type { PolicyAction } from './types.js';

/** Distinct preparsed slices per policy set. */
export const MAX_SLICES = 512;
/** Distinct index keys per policy set (each names a slice). */
export const MAX_KEYS = 8192;

/** An entity as a type and an id. */
export interface EntityRef {
  type: string;
  id: string;
}

/** Cedar JSON writes an entity uid either plainly or under `__entity`. */
export function entityRef(uid: EntityUidJson): EntityRef {
  return '__entity' in uid ? uid.__entity : uid;
}

/** What slicing needs to know of a request: the scope's view of it. */
export interface SliceRequest {
  action: string;
  principal: EntityRef;
  /** Every ancestor of the principal among the request's entities (its groups). */
  principalAncestors: readonly EntityRef[];
  resource: EntityRef;
  resourceAncestors: readonly EntityRef[];
}

/** A preparsed subset of the set, and what its policies read of the context. */
export interface PolicySlice {
  readonly psetId: string;
  readonly policyIds: readonly string[];
  /** Whether a policy of the slice (or of `policyIds`) may read `context.<key>` (true when unsure). */
  reads(contextKey: string, policyIds?: readonly string[]): boolean;
  /** What the slice's policies read of the request beyond their scopes, all together. */
  readonly readsAll: PolicyReads;
}

/** Preparses `policies` under `psetId` in the wasm cache. */
export type PreparseSlice = (psetId: string, policies: Record<string, string>) => void;

interface ScopedPolicy {
  id: string;
  text: string;
  principal: Scope;
  action: Scope;
  resource: Scope;
  /** What the conditions read: context keys, the principal's and resource's attributes. */
  reads: PolicyReads;
}

/** A scope constraint as Cedar's JSON policy format writes it (only the parts read here). */
interface Scope {
  op: string;
  entity?: EntityUidJson;
  entities?: EntityUidJson[];
  entity_type?: string;
  in?: { entity?: EntityUidJson };
}

/** The broker's actions; an `action in [...]` naming anything else may name an action group. */
const LEAF_ACTIONS: ReadonlySet<string> = new Set<string>([
  'BeginTask',
  'IssueCredential',
  'DecideApproval',
  'BreakGlass',
  'ListLeases',
  'RevokeLeases',
  'Quarantine',
  'ReleaseQuarantine',
  'ListQuarantines',
  'WatchAudit',
  'EvaluateAccess',
  'CallTool',
] satisfies PolicyAction[]);

export class PolicySlices {
  private readonly policies: readonly ScopedPolicy[];
  private readonly whole: PolicySlice;
  private readonly namedPrincipals: ReadonlySet<string>;
  private readonly namedResources: ReadonlySet<string>;
  private readonly byKey = new Map<string, PolicySlice>();
  private readonly byContent = new Map<string, PolicySlice>();

  /** `policies`: id -> text of the whole set, already preparsed as `wholeSetId`. */
  constructor(
    private readonly wholeSetId: string,
    policies: Readonly<Record<string, string>>,
    private readonly preparse: PreparseSlice,
  ) {
    this.policies = Object.entries(policies).map(([id, text]) => scopedPolicy(id, text));
    this.whole = sliceOf(wholeSetId, this.policies);
    this.namedPrincipals = namedIn(this.policies.map((p) => p.principal));
    this.namedResources = namedIn(this.policies.map((p) => p.resource));
  }

  /** The whole set, as a slice. */
  get all(): PolicySlice {
    return this.whole;
  }

  /** The slice that decides `req` exactly as the whole set would. */
  for(req: SliceRequest): PolicySlice {
    const key = this.keyOf(req);
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    if (this.byKey.size >= MAX_KEYS) return this.whole;
    const slice = this.build(this.policies.filter((p) => applies(p, req)));
    this.byKey.set(key, slice);
    return slice;
  }

  private build(matching: readonly ScopedPolicy[]): PolicySlice {
    if (matching.length === this.policies.length) return this.whole;
    const content = JSON.stringify(matching.map((p) => p.id));
    const known = this.byContent.get(content);
    if (known !== undefined) return known;
    if (this.byContent.size >= MAX_SLICES) return this.whole;
    const digest = createHash('sha256').update(content).digest('hex').slice(0, 32);
    const slice = sliceOf(`${this.wholeSetId}/slice/${digest}`, matching);
    this.preparse(slice.psetId, Object.fromEntries(matching.map((p) => [p.id, p.text])));
    this.byContent.set(content, slice);
    return slice;
  }

  private keyOf(req: SliceRequest): string {
    return [
      req.action,
      req.principal.type,
      ...namedOf(this.namedPrincipals, req.principal, req.principalAncestors),
      '\u0001',
      req.resource.type,
      ...namedOf(this.namedResources, req.resource, req.resourceAncestors),
    ].join('\u0000');
  }
}

function sliceOf(psetId: string, policies: readonly ScopedPolicy[]): PolicySlice {
  const readsAll = unionReads(policies.map((p) => p.reads));
  const byId = new Map(policies.map((p) => [p.id, p.reads]));
  const policyReads = (id: string, key: string): boolean => {
    const reads = byId.get(id);
    return reads === undefined || readsKey(reads.context, key);
  };
  return {
    psetId,
    policyIds: policies.map((p) => p.id),
    readsAll,
    reads: (key, ids) =>
      ids === undefined ? readsKey(readsAll.context, key) : ids.some((id) => policyReads(id, key)),
  };
}

function scopedPolicy(id: string, text: string): ScopedPolicy {
  const answer = policyToJson(text);
  // The bundle was validated from the same text: a failure here means a cedar-wasm bug. Such a
  // policy matches every request and reads everything, so nothing is ever sliced away wrongly.
  if (answer.type !== 'success') {
    const all: Scope = { op: 'All' };
    const reads = { context: 'all', principal: 'all', resource: 'all', otherEntities: true } as const;
    return { id, text, principal: all, action: all, resource: all, reads };
  }
  const json = answer.json as unknown as {
    principal: Scope;
    action: Scope;
    resource: Scope;
    conditions: Array<{ body: unknown }>;
  };
  return {
    id,
    text,
    principal: json.principal,
    action: json.action,
    resource: json.resource,
    reads: readsOf(json.conditions.map((c) => c.body)),
  };
}

function uidKey(uid: EntityUidJson): string {
  const { type, id } = entityRef(uid);
  return `${type}::${id}`;
}

/** Every entity a principal or resource scope names (`==`, `in`, `is ... in`). */
function namedIn(scopes: readonly Scope[]): ReadonlySet<string> {
  const named = new Set<string>();
  for (const s of scopes) {
    const entity = s.entity ?? s.in?.entity;
    if (entity !== undefined) named.add(uidKey(entity));
  }
  return named;
}

/** The entity and its ancestors, keeping only those some scope names. */
function namedOf(named: ReadonlySet<string>, self: EntityRef, ancestors: readonly EntityRef[]): string[] {
  const out: string[] = [];
  for (const uid of [self, ...ancestors]) {
    const key = uidKey(uid);
    if (named.has(key)) out.push(key);
  }
  return out;
}

function applies(p: ScopedPolicy, req: SliceRequest): boolean {
  return (
    actionMatches(p.action, req.action) &&
    entityMatches(p.principal, req.principal, req.principalAncestors) &&
    entityMatches(p.resource, req.resource, req.resourceAncestors)
  );
}

function entityMatches(scope: Scope, self: EntityRef, ancestors: readonly EntityRef[]): boolean {
  const isOrIn = (e: EntityUidJson): boolean =>
    uidKey(e) === uidKey(self) || ancestors.some((a) => uidKey(a) === uidKey(e));
  const selfType = self.type;
  switch (scope.op) {
    case '==':
      return scope.entity === undefined || uidKey(scope.entity) === uidKey(self);
    case 'in':
      return scope.entity === undefined || isOrIn(scope.entity);
    case 'is':
      return scope.entity_type === selfType && (scope.in?.entity === undefined || isOrIn(scope.in.entity));
    default:
      // `All`, and anything this reading does not know: the policy may apply.
      return true;
  }
}

function actionMatches(scope: Scope, action: string): boolean {
  const names = (e: EntityUidJson): boolean => {
    const id = entityRef(e).id;
    return id === action || !LEAF_ACTIONS.has(id); // an unknown name may be a group holding it
  };
  switch (scope.op) {
    case '==':
      return scope.entity === undefined || entityRef(scope.entity).id === action;
    case 'in':
      if (scope.entities !== undefined) return scope.entities.some(names);
      return scope.entity === undefined || names(scope.entity);
    default:
      return true;
  }
}
