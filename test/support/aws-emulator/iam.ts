/** IAM actions (API reference 2010-05-08): PutRolePolicy, GetRolePolicy. */
import { AwsError, type QueryParams, constraint, validationError } from './query.js';
import type { Role } from './state.js';

const POLICY_NAME = /^[\w+=,.@-]+$/;

function roleByName(roles: Map<string, Role>, name: string | undefined): Role {
  if (name === undefined)
    throw validationError(
      "1 validation error detected: Value null at 'roleName' failed to satisfy constraint: Member must not be null",
    );
  const role = [...roles.values()].find((r) => r.name === name);
  if (!role) throw new AwsError(404, 'NoSuchEntity', `The role with name ${name} cannot be found.`);
  return role;
}

export function putRolePolicy(roles: Map<string, Role>, p: QueryParams): undefined {
  const role = roleByName(roles, p.get('RoleName'));
  const name = p.get('PolicyName') ?? '';
  if (name.length < 1 || name.length > 128 || !POLICY_NAME.test(name)) {
    throw constraint(name, 'policyName', 'satisfy regular expression pattern: [\\w+=,.@-]+');
  }
  const doc = p.get('PolicyDocument') ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(doc);
  } catch {
    throw new AwsError(400, 'MalformedPolicyDocument', 'Syntax errors in policy.');
  }
  if (!parsed || typeof parsed !== 'object' || !('Statement' in parsed)) {
    throw new AwsError(400, 'MalformedPolicyDocument', 'Policy document must contain a Statement.');
  }
  if (doc.length > 10_240)
    throw new AwsError(409, 'LimitExceeded', 'Maximum policy size of 10240 bytes exceeded for role.');
  role.inlinePolicies.set(name, doc);
  return undefined;
}

export function getRolePolicy(roles: Map<string, Role>, p: QueryParams): Record<string, unknown> {
  const role = roleByName(roles, p.get('RoleName'));
  const name = p.get('PolicyName') ?? '';
  const doc = role.inlinePolicies.get(name);
  if (doc === undefined)
    throw new AwsError(404, 'NoSuchEntity', `The role policy with name ${name} cannot be found.`);
  return { RoleName: role.name, PolicyName: name, PolicyDocument: encodeURIComponent(doc) };
}

/** True when an inline Deny with `DateLessThan aws:TokenIssueTime` covers a session issued at `issuedAt`. */
export function deniedByIssueTime(role: Role, issuedAt: number): boolean {
  for (const doc of role.inlinePolicies.values()) {
    const statements = (JSON.parse(doc) as { Statement: unknown }).Statement;
    for (const st of (Array.isArray(statements) ? statements : [statements]) as Array<
      Record<string, unknown>
    >) {
      const cut = (st.Condition as { DateLessThan?: Record<string, string> } | undefined)?.DateLessThan?.[
        'aws:TokenIssueTime'
      ];
      if (st.Effect === 'Deny' && st.Action === '*' && cut !== undefined && issuedAt < Date.parse(cut))
        return true;
    }
  }
  return false;
}
