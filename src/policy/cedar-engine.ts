/**
 * The PolicyEngine over Cedar. The policy set and schema are parsed once at load, into the wasm
 * module's cache, and every request refers to them by id: handing Cedar the policy text per call
 * costs about three times as much (bench/cedar-micro.ts).
 *
 * An engine never changes once built; a reload builds a new one beside it (policy-manager.ts).
 */
import {
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  type AuthorizationAnswer,
  type CheckParseAnswer,
  type EntityJson,
  type EntityUidJson,
  type Context,
  type StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
import { setFlagsFromString } from 'node:v8';
import type { RoleDefinition } from '../credentials/backend.js';
import {
  readPolicyBundle,
  type PolicyBundle,
  type PolicyBundleResult,
  type PolicySources,
} from './policy-bundle.js';
import { PolicyLoadError, type PolicyProblem } from './policy-load-error.js';
import {
  MalformedPolicyRequestError,
  agentEntities,
  agentUid,
  brokerEntities,
  brokerUid,
  environmentEntities,
  environmentUid,
  humanEntities,
  humanUid,
  roleEntities,
  roleUid,
  toolUid,
  toCedarContext,
} from './request-entities.js';
import { ProjectedEvaluation, schemaAllowsProjection, type ProjectionStats } from './policy-projection.js';
import { PolicySlices, entityRef, type PolicySlice } from './policy-slices.js';
import type { PolicyDecision, PolicyEngine, PolicyRequest, PreparedPolicyRequest } from './types.js';

// Works around a V8 bug that aborted the broker under load (bench/run.ts, about one run in five):
// TurboFan inlines JS->Wasm calls, and cedar-wasm's entry points return an externref, which
// V8 11.3/12.x cannot rebuild when the calling function is lazily deoptimized while the call is on
// the stack ("Fatal error: unreachable code" in Deoptimizer::DoComputeBuiltinContinuation; the
// deoptimizer's TranslatedValueForWasmReturnKind knows only numeric return kinds). The wasm calls
// back into JS, which can invalidate the caller's optimized code at exactly that moment. Without
// the inlining, the call goes through the ordinary JS-to-Wasm wrapper and the deopt is safe. It
// must be set before the first authorize() is optimized, so it is set when this module loads.
setFlagsFromString('--no-turbo-inline-js-wasm-calls');
// The 4 MB module tiers up to TurboFan on background threads as soon as the policies are
// validated; with one thread per core, each thread's malloc arena keeps its compiler garbage, about
// 40 MB of RSS for good. One compilation thread keeps that to one arena and decides no faster or
// slower afterwards (bench/cedar-micro.ts).
setFlagsFromString('--wasm-num-compilation-tasks=1');

/** The reason given when no permit matched; the broker shows it to the caller. */
export const DEFAULT_DENY_REASON = 'no policy permits this request';
/** The reason given when the request does not fit the schema (a broker bug, not a caller's). */
export const INVALID_REQUEST_REASON = 'the request does not match the policy schema';

export interface CedarEngineOptions {
  policyDir: string;
  /** Defaults to `<policyDir>/schema.cedarschema`. */
  schemaPath?: string;
  /** The AgentGroups a SPIFFE ID belongs to (from configuration). Called once per request. */
  agentGroups?: (spiffeId: string) => readonly string[];
  /**
   * Decide each request against only the policies that can apply to it (policy-slices.ts), with
   * only what they read (policy-projection.ts); default true. The answers are the same either
   * way; false is for comparing the two.
   */
  slicing?: boolean;
}

export interface PolicyDirValidation {
  ok: boolean;
  errors: PolicyProblem[];
  warnings: PolicyProblem[];
}

/** For the CLI and CI: every problem the engine would refuse to load with, without loading. */
export function validatePolicyDir(policyDir: string, schemaPath?: string): PolicyDirValidation {
  const { problems, warnings } = readPolicyBundle(policyDir, schemaPath);
  return { ok: problems.length === 0, errors: problems, warnings };
}

export class CedarPolicyEngine implements PolicyEngine {
  readonly digest: string;
  /** Validator warnings from load; they did not block it. */
  readonly warnings: readonly PolicyProblem[];
  private readonly psetId: string;
  private readonly schemaName: string;
  private readonly reasons: ReadonlyMap<string, string>;
  private readonly approvals: ReadonlyMap<string, number>;
  private readonly agentGroups: (spiffeId: string) => readonly string[];
  /** Role entities depend only on the role; cached for frozen roles, whose content cannot change. */
  private readonly roleEntityCache = new WeakMap<RoleDefinition, EntityJson[]>();
  private readonly ids: readonly string[];
  private readonly slices: PolicySlices;
  private readonly slicing: boolean;
  /** Absent when slicing is off or the schema's check is not one of types alone. */
  private readonly projection: ProjectedEvaluation | undefined;
  /** The texts this set was built from (another replica can build the same set from them). */
  readonly sources: PolicySources;

  private constructor(
    bundle: PolicyBundle,
    warnings: readonly PolicyProblem[],
    agentGroups: (spiffeId: string) => readonly string[],
    slicing: boolean,
  ) {
    this.digest = bundle.digest;
    this.sources = bundle.sources;
    this.warnings = warnings;
    this.reasons = bundle.reasons;
    this.approvals = bundle.approvals;
    this.agentGroups = agentGroups;
    this.ids = Object.freeze(Object.keys(bundle.policies));
    // Content-addressed ids: engines over different bundles never share a cache slot, so a
    // reload can build the new engine beside the old one and swap. The wasm cache has no evict,
    // so equal bundles sharing a slot also bounds what repeated reloads leave behind.
    this.psetId = `svid-broker/policies/${bundle.digest}`;
    this.schemaName = `svid-broker/schema/${bundle.digest}`;
    ensureParsed(preparseSchema(this.schemaName, bundle.schemaText), 'schema');
    ensureParsed(preparsePolicySet(this.psetId, { staticPolicies: { ...bundle.policies } }), 'policy set');
    this.slicing = slicing;
    this.projection =
      slicing && schemaAllowsProjection(bundle.schemaText) ? new ProjectedEvaluation() : undefined;
    this.slices = new PolicySlices(this.psetId, bundle.policies, (id, policies) =>
      ensureParsed(preparsePolicySet(id, { staticPolicies: policies }), 'policy slice'),
    );
  }

  /** Reads, validates and preparses a policy directory; throws PolicyLoadError listing every problem. */
  static load(options: CedarEngineOptions): CedarPolicyEngine {
    return CedarPolicyEngine.fromBundle(options, readPolicyBundle(options.policyDir, options.schemaPath));
  }

  /**
   * An engine over a bundle already read, so a reload can compare digests before paying for
   * preparsing. Throws PolicyLoadError when the read found problems.
   */
  static fromBundle(options: CedarEngineOptions, read: PolicyBundleResult): CedarPolicyEngine {
    if (read.bundle === undefined) throw new PolicyLoadError(options.policyDir, read.problems);
    return new CedarPolicyEngine(
      read.bundle,
      read.warnings,
      options.agentGroups ?? (() => []),
      options.slicing ?? true,
    );
  }

  /** What projection has learned (policy-projection.ts); undefined when it is off. */
  get projectionStats(): ProjectionStats | undefined {
    return this.projection?.stats;
  }

  /** Policy ids in the set, in file order. */
  get policyIds(): readonly string[] {
    return this.ids;
  }

  approvalsRequired(policyId: string): number {
    // Load refused anything but a positive integer, so this can never be 0.
    return this.approvals.get(policyId) ?? 1;
  }

  authorize(req: PolicyRequest): PolicyDecision {
    return this.prepare(req).authorize();
  }

  /** Entities, context and slice built once; each authorize() is one wasm call. */
  prepare(req: PolicyRequest): PreparedPolicyRequest {
    let built: BuiltRequest;
    try {
      built = this.build(req);
    } catch (err) {
      if (!(err instanceof MalformedPolicyRequestError)) throw err;
      const invalid = this.invalidRequest([err.message]);
      return { authorize: () => ({ ...invalid, errors: [...invalid.errors] }), reads: () => true };
    }
    const { slice, context, call } = built;
    return {
      authorize: (overrides) => {
        let ctx = context;
        if (overrides !== undefined) ctx = { ...context, ...toCedarContext(overrides) };
        return this.toDecision(this.evaluate(slice, { ...call, context: ctx }));
      },
      reads: (key, ids) => slice.reads(key, ids),
    };
  }

  /** The only authorization calls in the engine: always against a preparsed set. */
  private evaluate(slice: PolicySlice, call: StatefulAuthorizationCall): AuthorizationAnswer {
    if (this.projection === undefined) return statefulIsAuthorized(call);
    return this.projection.evaluate(call, slice.readsAll);
  }

  private build(req: PolicyRequest): BuiltRequest {
    const [resource, resourceEntities] = this.resourceOf(req.resource);
    const principal = this.principalOf(req.principal);
    const slice = this.slicing
      ? this.slices.for({
          action: req.action,
          principal: entityRef(principal.uid),
          // An agent's AgentGroups, a person's HumanGroups: the principal entity's parents.
          principalAncestors: (principal.entities[0]?.parents ?? []).map(entityRef),
          resource: entityRef(resource),
          resourceAncestors: (resourceEntities[0]?.parents ?? []).map(entityRef),
        })
      : this.slices.all;
    const call = {
      principal: principal.uid,
      action: { type: 'Action', id: req.action },
      resource,
      entities: [...principal.entities, ...resourceEntities],
      preparsedPolicySetId: slice.psetId,
      // Checking each request against the schema keeps the validator's promise: a validated
      // policy cannot error at run time, so a forbid is never skipped over a malformed context.
      preparsedSchemaName: this.schemaName,
      validateRequest: true,
    };
    return { slice, context: toCedarContext(req.context), call };
  }

  private resourceOf(resource: PolicyRequest['resource']): [EntityUidJson, EntityJson[]] {
    switch (resource.type) {
      case 'Role':
        return [roleUid(resource.role), this.roleEntitiesOf(resource.role)];
      case 'Environment':
        return [environmentUid(resource.id), environmentEntities(resource.id)];
      case 'Broker':
        return [brokerUid(), brokerEntities()];
      case 'Tool': {
        const uid = toolUid(resource.id);
        return [uid, [{ uid, attrs: {}, parents: [] }]];
      }
    }
  }

  private principalOf(principal: PolicyRequest['principal']): { uid: EntityUidJson; entities: EntityJson[] } {
    if (typeof principal === 'string') {
      return { uid: agentUid(principal), entities: agentEntities(principal, this.agentGroups(principal)) };
    }
    return { uid: humanUid(principal), entities: humanEntities(principal) };
  }

  private roleEntitiesOf(role: RoleDefinition): EntityJson[] {
    const cached = this.roleEntityCache.get(role);
    if (cached !== undefined) return cached;
    const entities = roleEntities(role);
    if (Object.isFrozen(role) && Object.isFrozen(role.environments)) this.roleEntityCache.set(role, entities);
    return entities;
  }

  private toDecision(answer: AuthorizationAnswer): PolicyDecision {
    if (answer.type === 'failure') return this.invalidRequest(answer.errors.map((e) => e.message));
    const { decision, diagnostics } = answer.response;
    const policyIds = [...diagnostics.reason];
    const reasons: string[] = [];
    for (const id of policyIds) {
      const reason = this.reasons.get(id);
      if (reason !== undefined) reasons.push(reason);
    }
    if (decision === 'deny' && policyIds.length === 0) reasons.push(DEFAULT_DENY_REASON);
    return {
      decision,
      policyIds,
      reasons,
      errors: diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`),
      policyDigest: this.digest,
    };
  }

  private invalidRequest(errors: string[]): PolicyDecision {
    return {
      decision: 'deny',
      policyIds: [],
      reasons: [INVALID_REQUEST_REASON],
      errors,
      policyDigest: this.digest,
    };
  }
}

interface BuiltRequest {
  slice: PolicySlice;
  context: Context;
  call: Omit<StatefulAuthorizationCall, 'context'>;
}

function ensureParsed(answer: CheckParseAnswer, what: string): void {
  // The bundle was validated from the same text, so this failing means a cedar-wasm bug.
  if (answer.type === 'failure') {
    throw new Error(
      `policy: preparsing the ${what} failed: ${answer.errors.map((e) => e.message).join('; ')}`,
    );
  }
}
