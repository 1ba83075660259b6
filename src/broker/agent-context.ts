/**
 * Agent-supplied context: what an agent says about the call it makes (the tool and tool call,
 * its session, its model, a digest of its prompt, its plan). The broker cannot check any of it,
 * so it is validated for shape only, recorded as given with `asserted_by: "agent"`, and handed to
 * policy as `context.agentContext` (policies/schema.cedarschema). One trail then holds the
 * prompts, tool calls and the decisions they led to.
 */
import { invalidArgument } from '../errors.js';
import { boundedText } from './validate.js';

/** The fields, as they travel in the proto (`AgentContext`) and in audit records. */
export const AGENT_CONTEXT_FIELDS = [
  'tool_name',
  'tool_call_id',
  'session_id',
  'model',
  'prompt_digest',
  'plan',
] as const;

export type AgentContextField = (typeof AGENT_CONTEXT_FIELDS)[number];

/** As received: every field optional, empty = not given. */
export type AgentContextInput = Partial<Record<AgentContextField, string>>;

/** Validated and non-empty: only the fields the agent gave. */
export type AgentContext = Partial<Record<AgentContextField, string>>;

/** Characters per field: identifiers are short; the plan is bounded free text. */
export const AGENT_CONTEXT_LIMITS: Readonly<Record<AgentContextField, number>> = {
  tool_name: 128,
  tool_call_id: 128,
  session_id: 128,
  model: 128,
  prompt_digest: 137, // "sha512:" + 128 hex digits
  plan: 2048,
};

/** `<algorithm>:<lowercase hex>`: sha256 (64 digits), sha384 (96) or sha512 (128). */
const DIGEST = /^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$/;

/**
 * The context checked field by field (INVALID_ARGUMENT naming `context.<field>`), or undefined
 * when the agent gave none (absent, or every field empty).
 */
export function validAgentContext(input: AgentContextInput | null | undefined): AgentContext | undefined {
  if (!input) return undefined;
  const out: AgentContext = {};
  for (const field of AGENT_CONTEXT_FIELDS) {
    const value = input[field] ?? '';
    if (value === '') continue;
    const name = `context.${field}`;
    boundedText(value, name, AGENT_CONTEXT_LIMITS[field]);
    if (field === 'prompt_digest' && !DIGEST.test(value)) {
      throw invalidArgument(name, 'must be "sha256:<64 hex>", "sha384:<96 hex>" or "sha512:<128 hex>"');
    }
    out[field] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The validated context, or undefined when it is bad or absent (for the record of a refusal). */
export function agentContextOrNothing(input: AgentContextInput | null | undefined): AgentContext | undefined {
  try {
    return validAgentContext(input);
  } catch {
    return undefined;
  }
}

/** Audit record fields: `context: {...fields, asserted_by: "agent"}`, nothing when none was given. */
export function agentContextFields(context: AgentContext | undefined): Record<string, unknown> {
  return context ? { context: { ...context, asserted_by: 'agent' } } : {};
}

/** Policy context: `agentContext` (all attributes optional in the schema), nothing when none was given. */
export function agentContextPolicy(context: AgentContext | undefined): { agentContext?: AgentContext } {
  return context ? { agentContext: context } : {};
}
