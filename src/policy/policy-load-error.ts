/**
 * Why a policy set was refused. Loading happens at startup and on reload (policy-manager.ts),
 * never on a caller's request, so this is a plain Error for operators rather than a caller-facing
 * BrokerError.
 */

/** One problem with a policy directory. `line`/`column` are 1-based and point into `file`. */
export interface PolicyProblem {
  /** File name relative to the policy directory (or the schema's path). */
  file: string;
  policyId?: string;
  line?: number;
  column?: number;
  message: string;
}

/** Renders `file:line:col [policy id]: message`, the shape editors and CI logs link on. */
export function formatPolicyProblem(p: PolicyProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  const id = p.policyId === undefined ? '' : ` [${p.policyId}]`;
  return `${where}${id}: ${p.message}`;
}

export class PolicyLoadError extends Error {
  /** Every problem found, not just the first: fixing them one restart at a time is slow. */
  readonly problems: readonly PolicyProblem[];

  constructor(dir: string, problems: readonly PolicyProblem[]) {
    const lines = problems.map((p) => `  ${formatPolicyProblem(p)}`).join('\n');
    super(`policy: ${problems.length} problem(s) in ${dir}:\n${lines}`);
    this.name = 'PolicyLoadError';
    this.problems = problems;
  }
}
