/**
 * Turns a PolicyRequest's parts into Cedar JSON: entities (principal, resource and their parents)
 * and the context. The shapes follow policies/schema.cedarschema.
 */
import type { CedarValueJson, Context, EntityJson, EntityUidJson } from '@cedar-policy/cedar-wasm/nodejs';
import type { RoleDefinition } from '../credentials/backend.js';
import type { ContextValue, HumanPrincipal } from './types.js';

/** The request cannot be expressed in Cedar; the engine denies it rather than guess. */
export class MalformedPolicyRequestError extends Error {
  constructor(message: string) {
    super(`policy: ${message}`);
    this.name = 'MalformedPolicyRequestError';
  }
}

const SPIFFE_SCHEME = 'spiffe://';

export function agentUid(spiffeId: string): EntityUidJson {
  return { type: 'Agent', id: spiffeId };
}

/** The agent and its groups. Group entities are listed so later group attributes have a home. */
export function agentEntities(spiffeId: string, groups: readonly string[]): EntityJson[] {
  // The identity layer has verified the ID already; this split only feeds the attributes.
  if (!spiffeId.startsWith(SPIFFE_SCHEME)) {
    throw new MalformedPolicyRequestError(`principal is not a SPIFFE ID: ${JSON.stringify(spiffeId)}`);
  }
  const rest = spiffeId.slice(SPIFFE_SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const idPath = slash < 0 ? '' : rest.slice(slash);
  if (trustDomain === '') throw new MalformedPolicyRequestError('principal has an empty trust domain');

  const parents = groups.map((g): EntityUidJson => ({ type: 'AgentGroup', id: g }));
  return [
    { uid: agentUid(spiffeId), attrs: { trustDomain, path: idPath }, parents },
    ...parents.map((uid): EntityJson => ({ uid, attrs: {}, parents: [] })),
  ];
}

export function humanUid(human: HumanPrincipal): EntityUidJson {
  return { type: 'Human', id: human.sub };
}

/** The person and their IdP groups, as attributes and as HumanGroup parents. */
export function humanEntities(human: HumanPrincipal): EntityJson[] {
  if (human.sub === '') throw new MalformedPolicyRequestError('human principal has an empty subject');
  const groups = [...new Set(human.groups)];
  const parents = groups.map((g): EntityUidJson => ({ type: 'HumanGroup', id: g }));
  return [
    { uid: humanUid(human), attrs: { sub: human.sub, email: human.email, groups }, parents },
    ...parents.map((uid): EntityJson => ({ uid, attrs: {}, parents: [] })),
  ];
}

/** `RoleDefinition.name` is already `<backend>/<role>`, which is the Role entity's id. */
export function roleUid(role: RoleDefinition): EntityUidJson {
  return { type: 'Role', id: role.name };
}

export function roleEntities(role: RoleDefinition): EntityJson[] {
  const backend: EntityUidJson = { type: 'Backend', id: role.backend };
  return [
    {
      uid: roleUid(role),
      attrs: {
        backend: role.backend,
        sensitivity: role.sensitivity,
        environments: [...role.environments],
        maxTtlSeconds: role.maxTtlSeconds,
        description: role.description,
      },
      parents: [backend],
    },
    { uid: backend, attrs: {}, parents: [] },
  ];
}

export function environmentUid(name: string): EntityUidJson {
  return { type: 'Environment', id: name };
}

export function environmentEntities(name: string): EntityJson[] {
  return [{ uid: environmentUid(name), attrs: {}, parents: [] }];
}

/** There is one broker; admin actions name it as their resource. */
export const BROKER_ENTITY_ID = 'svid-broker';

export function brokerUid(): EntityUidJson {
  return { type: 'Broker', id: BROKER_ENTITY_ID };
}

export function brokerEntities(): EntityJson[] {
  return [{ uid: brokerUid(), attrs: {}, parents: [] }];
}

export function toolUid(name: string): EntityUidJson {
  return { type: 'Tool', id: name };
}

/** Cedar JSON reads these keys as entity references or extension calls, not as data. */
const RESERVED_KEYS = new Set(['__entity', '__extn', '__expr']);

/** Numbers become Longs (integers only: Cedar has no floats); arrays become Sets. */
export function toCedarContext(context: Readonly<Record<string, ContextValue>>): Context {
  const out: Context = {};
  for (const [key, value] of Object.entries(context)) out[key] = toCedarValue(value, `context.${key}`);
  return out;
}

function toCedarValue(value: ContextValue, where: string): CedarValueJson {
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new MalformedPolicyRequestError(`${where} must be an integer, got ${value}`);
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => toCedarValue(v, `${where}[${i}]`));
  const record: { [k: string]: CedarValueJson } = {};
  for (const [k, v] of Object.entries(value)) {
    if (RESERVED_KEYS.has(k)) throw new MalformedPolicyRequestError(`${where} uses the reserved key ${k}`);
    record[k] = toCedarValue(v, `${where}.${k}`);
  }
  return record;
}
