/**
 * Projected evaluation: a request handed to Cedar with only what its slice's policies read.
 *
 * Most of a decision's cost is the wasm boundary: every context value and entity attribute is
 * converted one field at a time, and the schema check walks them all again (bench/cedar-micro.ts).
 * A slice's policies read a few context keys and attributes (policy-reads.ts), so the rest can
 * stay on this side. Two facts make that exact:
 *
 * - Validation. The schema check is a check of types: the principal's and resource's types, the
 *   context's and each entity's attribute types and parents' types. A request whose shape (those
 *   types, policy-shape.ts) was once checked in full is valid whenever the shape recurs, so the
 *   check runs once per shape, and the projected call goes without the schema. That needs a
 *   schema whose check is only of types: no enumerated entity types (ids checked), no action
 *   groups (the schema's action hierarchy), no extension types (values parsed by the schema);
 *   for any other schema nothing is projected.
 * - Evaluation. A policy that reads no `context.x` cannot tell whether `x` was there, nor the
 *   absent attribute of an entity it reads no attribute of, nor an entity without attributes or
 *   parents from one never named (Cedar looks entities up only for their attributes and
 *   ancestors). Keys a policy tests with `has` count as read.
 *
 * The first request of each shape is decided both ways; the shape is projected from then on only
 * when the answers agree (decision, deciding policies, errors), so a reading this module gets
 * wrong costs speed, not correctness. At most MAX_SHAPES shapes are remembered; past that, new
 * shapes are decided in full.
 *
 * Cedar's answer is a function of the preparsed set and the call alone, so the answers to the
 * last MAX_ANSWERS distinct projected calls are kept and a repeated call (an agent asking for the
 * same role again, where nothing its policies read has changed) is answered without crossing
 * into wasm. The key is the whole projected call, the set's content-addressed id included, with
 * the values of context keys the slice only compares with literals replaced by their classes
 * (policy-value-classes.ts): a TTL on the same side of every limit is the same call to Cedar.
 */
import {
  schemaToJson,
  statefulIsAuthorized,
  type AuthorizationAnswer,
  type Context,
  type EntityJson,
  type StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { KeyReads, PolicyReads } from './policy-reads.js';
import { shapeOf } from './policy-shape.js';
import { classedContext } from './policy-value-classes.js';
import { entityRef, type EntityRef } from './policy-slices.js';

/** Shapes remembered per engine (each a short string). */
export const MAX_SHAPES = 4096;
/** Answers to projected calls remembered per engine, least recently used first out. */
export const MAX_ANSWERS = 1024;

/** A request as the engine builds it: the full call, checked against the schema. */
export type FullCall = StatefulAuthorizationCall;

/** What an engine's projection has learned and done, for the bench and tests. */
export interface ProjectionStats {
  /** Shapes decided projected from now on. */
  projectedShapes: number;
  /** Shapes decided in full: the schema refused them, or the two answers differed. */
  fullShapes: number;
  /** Projected calls answered from memory, and those that crossed into wasm. */
  remembered: number;
  evaluated: number;
}

export class ProjectedEvaluation {
  /** Shape -> whether its projected answers agree with the full ones. */
  private readonly shapes = new Map<string, boolean>();
  private readonly answers = new Map<string, AuthorizationAnswer>();
  private remembered = 0;
  private evaluated = 0;

  get stats(): ProjectionStats {
    const projected = [...this.shapes.values()].filter(Boolean).length;
    return {
      projectedShapes: projected,
      fullShapes: this.shapes.size - projected,
      remembered: this.remembered,
      evaluated: this.evaluated,
    };
  }

  /** The answer to `call`, projected to `reads` when its shape allows. */
  evaluate(call: FullCall, reads: PolicyReads): AuthorizationAnswer {
    const shape = shapeOf(call);
    const known = this.shapes.get(shape);
    if (known === true) return this.answer(project(call, reads), reads);
    const answer = statefulIsAuthorized(call);
    if (known === undefined) this.learn(shape, call, reads, answer);
    return answer;
  }

  /**
   * Cedar's answer to a projected call, remembered, keyed by the call with its classed context
   * values replaced by their classes (policy-value-classes.ts). Callers only read it.
   */
  private answer(projected: StatefulAuthorizationCall, reads: PolicyReads): AuthorizationAnswer {
    const context = classedContext(projected.context as Record<string, unknown>, reads.contextValues);
    const key = JSON.stringify(context === projected.context ? projected : { ...projected, context });
    const known = this.answers.get(key);
    if (known !== undefined) {
      this.remembered++;
      this.answers.delete(key);
      this.answers.set(key, known);
      return known;
    }
    this.evaluated++;
    const answer = statefulIsAuthorized(projected);
    if (this.answers.size >= MAX_ANSWERS) this.answers.delete(this.answers.keys().next().value as string);
    this.answers.set(key, answer);
    return answer;
  }

  private learn(shape: string, call: FullCall, reads: PolicyReads, full: AuthorizationAnswer): void {
    if (this.shapes.size >= MAX_SHAPES) return;
    // A request the schema refused is never projected: each one of its shape is refused alike.
    const agrees = full.type === 'success' && sameAnswer(full, statefulIsAuthorized(project(call, reads)));
    this.shapes.set(shape, agrees);
  }
}

/** Whether the schema's check of a request is one of types alone (see the module comment). */
export function schemaAllowsProjection(schemaText: string): boolean {
  const answer = schemaToJson(schemaText);
  if (answer.type !== 'success') return false;
  const text = JSON.stringify(answer.json);
  if (/"Extension"|"(ipaddr|decimal|datetime|duration)"/.test(text)) return false;
  for (const ns of Object.values(answer.json as Record<string, SchemaNamespace>)) {
    if (Object.values(ns.entityTypes ?? {}).some((t) => t.enum !== undefined)) return false;
    if (Object.values(ns.actions ?? {}).some((a) => (a.memberOf ?? []).length > 0)) return false;
  }
  return true;
}

interface SchemaNamespace {
  entityTypes?: Record<string, { enum?: unknown }>;
  actions?: Record<string, { memberOf?: unknown[] }>;
}

/** The call with only what `reads` names, and no schema (its shape was checked). */
export function project(call: FullCall, reads: PolicyReads): StatefulAuthorizationCall {
  return {
    principal: call.principal,
    action: call.action,
    resource: call.resource,
    context: pick(call.context, reads.context) as Context,
    entities: reads.otherEntities ? call.entities : projectEntities(call, reads),
    preparsedPolicySetId: call.preparsedPolicySetId,
  };
}

function projectEntities(call: FullCall, reads: PolicyReads): EntityJson[] {
  const principal = entityRef(call.principal);
  const resource = entityRef(call.resource);
  const out: EntityJson[] = [];
  for (const built of call.entities as EntityJson[]) {
    const attrReads = attributeReadsOf(entityRef(built.uid), principal, resource, reads);
    const entity = attrReads === undefined ? built : { ...built, attrs: pick(built.attrs, attrReads) };
    if (Object.keys(entity.attrs).length > 0 || entity.parents.length > 0 || 'tags' in entity) {
      out.push(entity);
    }
  }
  return out;
}

/** The attributes read of this entity: the principal's, the resource's, or undefined for any other. */
function attributeReadsOf(
  ref: EntityRef,
  principal: EntityRef,
  resource: EntityRef,
  reads: PolicyReads,
): KeyReads | undefined {
  const isPrincipal = sameRef(ref, principal);
  const isResource = sameRef(ref, resource);
  if (isPrincipal && isResource) return 'all';
  if (isPrincipal) return reads.principal;
  if (isResource) return reads.resource;
  return undefined;
}

function sameRef(a: EntityRef, b: EntityRef): boolean {
  return a.type === b.type && a.id === b.id;
}

function pick<V>(record: Readonly<Record<string, V>>, keys: KeyReads): Record<string, V> {
  if (keys === 'all') return record as Record<string, V>;
  const out: Record<string, V> = {};
  for (const key of keys) {
    const value = record[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function sameAnswer(a: AuthorizationAnswer, b: AuthorizationAnswer): boolean {
  if (a.type !== 'success' || b.type !== 'success') return false;
  const key = (answer: typeof a): string =>
    JSON.stringify([
      answer.response.decision,
      [...answer.response.diagnostics.reason].sort(),
      answer.response.diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`).sort(),
    ]);
  return key(a) === key(b);
}
