/**
 * A request's shape: what the schema check of a request looks at. The action, the principal's
 * and resource's types, each entity's type, parents' types and attribute types, and the
 * context's types, nested. Two requests of one shape are valid or invalid together under a schema
 * whose check is one of types (policy-projection.ts says which schemas those are).
 */
import type { CedarValueJson, EntityJson, StatefulAuthorizationCall } from '@cedar-policy/cedar-wasm/nodejs';
import { entityRef } from './policy-slices.js';

export function shapeOf(call: StatefulAuthorizationCall): string {
  let out = `${call.preparsedPolicySetId}|${entityRef(call.action).id}|${entityRef(call.principal).type}|${entityRef(call.resource).type}|`;
  for (const entity of call.entities as EntityJson[]) out += entityShape(entity);
  return `${out}|${valueShape(call.context as CedarValueJson)}`;
}

function entityShape(entity: EntityJson): string {
  let out = `${entityRef(entity.uid).type}<`;
  for (const parent of entity.parents) out += `${entityRef(parent).type},`;
  return `${out}>${valueShape(entity.attrs as CedarValueJson)}${'tags' in entity ? 'T' : ''};`;
}

/**
 * s(tring), l(ong), b(ool), [element shapes], {key:shape,...}; keys in the order given, each
 * prefixed by its length, so no key can pass for another key and its shape.
 */
function valueShape(value: CedarValueJson): string {
  if (typeof value === 'string') return 's';
  if (typeof value === 'number') return 'l';
  if (typeof value === 'boolean') return 'b';
  if (Array.isArray(value)) return setShape(value);
  if (value === null) return 'n';
  let out = '{';
  for (const [key, v] of Object.entries(value)) out += `${key.length}'${key}:${valueShape(v)},`;
  return `${out}}`;
}

function setShape(values: readonly CedarValueJson[]): string {
  const shapes: string[] = [];
  for (const v of values) {
    const s = valueShape(v);
    if (!shapes.includes(s)) shapes.push(s);
  }
  return `[${shapes.sort().join(',')}]`;
}
