import assert from 'node:assert/strict';
import { CedarPolicyEngine } from '../../../src/policy/cedar-engine.js';
import { MAX_APPROVALS } from '../../../src/policy/policy-bundle.js';
import { PolicyLoadError } from '../../../src/policy/policy-load-error.js';
import { SHIPPED_POLICY_DIR, SHIPPED_SCHEMA, policyDir, removePolicyDirs } from './policy-fixtures.js';

const PERMIT = '@id("base") permit (principal, action == Action::"BeginTask", resource);\n';

/** A forbid an approval lifts, annotated with `annotation` (verbatim, e.g. `@approvals("2")`). */
function gated(annotation: string, id = 'gated'): string {
  return `// a comment line\n@id("${id}")\n${annotation}\nforbid (principal, action == Action::"IssueCredential", resource)\nunless { context.approved };\n`;
}

function load(files: Record<string, string>): CedarPolicyEngine {
  return CedarPolicyEngine.load({ policyDir: policyDir(files), schemaPath: SHIPPED_SCHEMA });
}

describe('@approvals annotation', () => {
  after(removePolicyDirs);

  it('gives the annotated count, and 1 when a policy has none or is unknown', () => {
    const engine = load({
      'a.cedar': PERMIT + gated('@approvals("3")') + gated('', 'plain'),
      'b.cedar': gated('@approvals("1")', 'one'),
    });
    assert.equal(engine.approvalsRequired('gated'), 3);
    assert.equal(engine.approvalsRequired('one'), 1);
    assert.equal(engine.approvalsRequired('plain'), 1);
    assert.equal(engine.approvalsRequired('base'), 1);
    assert.equal(engine.approvalsRequired('no-such-policy'), 1);
    assert.equal(engine.approvalsRequired(String(MAX_APPROVALS)), 1);
  });

  it('reads the shipped annotations', () => {
    const engine = CedarPolicyEngine.load({ policyDir: SHIPPED_POLICY_DIR });
    assert.equal(engine.approvalsRequired('prod-destructive-needs-approval'), 1);
    assert.equal(engine.approvalsRequired('prod-admin-role-needs-two-approvals'), 2);
  });

  it(`accepts up to ${MAX_APPROVALS}`, () => {
    const engine = load({ 'a.cedar': gated(`@approvals("${MAX_APPROVALS}")`) });
    assert.equal(engine.approvalsRequired('gated'), MAX_APPROVALS);
  });

  // Zero approvers must never become a free pass, and nothing is rounded or guessed.
  const refused: Array<[string, string]> = [
    ['zero', '@approvals("0")'],
    ['negative', '@approvals("-1")'],
    ['non-numeric', '@approvals("two")'],
    ['a float', '@approvals("1.5")'],
    ['an exponent', '@approvals("1e1")'],
    ['hexadecimal', '@approvals("0x2")'],
    ['a leading zero', '@approvals("02")'],
    ['padding', '@approvals(" 2")'],
    ['empty', '@approvals("")'],
    ['no value', '@approvals'],
    ['too many', `@approvals("${MAX_APPROVALS + 1}")`],
    ['beyond safe integers', '@approvals("99999999999999999999")'],
  ];
  for (const [what, annotation] of refused) {
    it(`refuses ${what} at load, naming the file, line and policy`, () => {
      const dir = policyDir({ 'a.cedar': PERMIT, 'gate.cedar': gated(annotation) });
      let caught: unknown;
      try {
        CedarPolicyEngine.load({ policyDir: dir, schemaPath: SHIPPED_SCHEMA });
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof PolicyLoadError, `expected PolicyLoadError, got ${String(caught)}`);
      assert.equal(caught.problems.length, 1);
      const [problem] = caught.problems;
      assert.equal(problem?.file, 'gate.cedar');
      assert.equal(problem?.line, 2, 'the line where the policy starts');
      assert.equal(problem?.policyId, 'gated');
      assert.match(problem?.message ?? '', /@approvals/);
      assert.match(caught.message, /gate\.cedar:2:1 \[gated\]: @approvals/);
    });
  }
});
