import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CedarPolicyEngine, validatePolicyDir } from '../../../src/policy/cedar-engine.js';
import { PolicyLoadError, type PolicyProblem } from '../../../src/policy/policy-load-error.js';
import { SHIPPED_POLICY_DIR, SHIPPED_SCHEMA, policyDir, removePolicyDirs } from './policy-fixtures.js';

const GOOD = '@id("ok") permit (principal, action == Action::"BeginTask", resource);\n';

/** Loads `dir` expecting a PolicyLoadError, and returns its problems. */
function loadProblems(dir: string, schemaPath = SHIPPED_SCHEMA): readonly PolicyProblem[] {
  try {
    CedarPolicyEngine.load({ policyDir: dir, schemaPath });
  } catch (err) {
    assert.ok(err instanceof PolicyLoadError, `expected PolicyLoadError, got ${String(err)}`);
    assert.equal(err.problems.length > 0, true);
    return err.problems;
  }
  assert.fail('expected the load to fail');
}

describe('policy loading', () => {
  after(removePolicyDirs);

  it('validates the shipped policies against the shipped schema', () => {
    assert.deepEqual(validatePolicyDir(SHIPPED_POLICY_DIR, SHIPPED_SCHEMA), {
      ok: true,
      errors: [],
      warnings: [],
    });
    // The schema path defaults to the one inside the policy directory.
    assert.equal(validatePolicyDir(SHIPPED_POLICY_DIR).ok, true);
  });

  it('refuses an unknown context attribute, naming file, line, policy and attribute', () => {
    const dir = policyDir({
      'a.cedar': GOOD,
      'bad.cedar':
        '// first line\n@id("nope")\npermit (principal, action == Action::"IssueCredential", resource)\n  when { context.nope == "x" };\n',
    });
    const problems = loadProblems(dir);
    assert.equal(problems.length, 1);
    const [p] = problems;
    assert.equal(p?.file, 'bad.cedar');
    assert.equal(p?.policyId, 'nope');
    assert.equal(p?.line, 4, 'points at the attribute, not at the policy');
    assert.match(p?.message ?? '', /attribute `nope` in context/);
  });

  it('refuses a type error', () => {
    const problems = loadProblems(
      policyDir({
        'types.cedar':
          'permit (principal, action == Action::"IssueCredential", resource) when { context.ttlSeconds == "long" };',
      }),
    );
    assert.equal(problems[0]?.file, 'types.cedar');
    assert.equal(problems[0]?.policyId, 'types.cedar:0');
    assert.match(problems[0]?.message ?? '', /type|Long|String/);
  });

  it('refuses a syntax error with its location, and says so in the message', () => {
    const dir = policyDir({
      'a.cedar': GOOD,
      'syntax.cedar': 'permit (principal, action, resource)\nwhen { 1 == };\n',
    });
    try {
      CedarPolicyEngine.load({ policyDir: dir, schemaPath: SHIPPED_SCHEMA });
      assert.fail('expected the load to fail');
    } catch (err) {
      assert.ok(err instanceof PolicyLoadError);
      assert.equal(err.problems[0]?.file, 'syntax.cedar');
      assert.equal(err.problems[0]?.line, 2);
      assert.match(err.message, /syntax\.cedar:2:\d+: unexpected token/);
    }
  });

  it('lists every problem across files, not just the first', () => {
    const problems = loadProblems(
      policyDir({
        'one.cedar': 'permit (principal, action, resource) when { context.nope };',
        'two.cedar': 'permit (principal, action, resource',
        'three.cedar':
          'permit (principal, action == Action::"BeginTask", resource) when { resource.nope == 1 };',
      }),
    );
    assert.deepEqual([...new Set(problems.map((p) => p.file))].sort(), [
      'one.cedar',
      'three.cedar',
      'two.cedar',
    ]);
  });

  it('refuses a duplicate @id across files', () => {
    const problems = loadProblems(policyDir({ 'a.cedar': GOOD, 'b.cedar': `\n\n${GOOD}` }));
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.file, 'b.cedar');
    assert.equal(problems[0]?.line, 3);
    assert.match(problems[0]?.message ?? '', /duplicate policy id "ok" \(first used in a\.cedar:1\)/);
  });

  it('refuses an @id that collides with a generated id', () => {
    const problems = loadProblems(
      policyDir({
        'a.cedar': 'permit (principal, action, resource);',
        'b.cedar': '@id("a.cedar:0") forbid (principal, action, resource);',
      }),
    );
    assert.match(problems[0]?.message ?? '', /duplicate policy id "a\.cedar:0"/);
  });

  it('refuses empty annotations, templates, and directories without policies', () => {
    assert.match(
      loadProblems(policyDir({ 'a.cedar': '@id permit (principal, action, resource);' }))[0]?.message ?? '',
      /@id needs/,
    );
    assert.match(
      loadProblems(policyDir({ 'a.cedar': '@reason("") permit (principal, action, resource);' }))[0]
        ?.message ?? '',
      /@reason needs/,
    );
    assert.match(
      loadProblems(policyDir({ 'a.cedar': 'permit (principal == ?principal, action, resource);' }))[0]
        ?.message ?? '',
      /templates are not supported/,
    );
    assert.match(
      loadProblems(policyDir({ 'README.md': 'no policies here' }))[0]?.message ?? '',
      /no \*\.cedar files/,
    );
    assert.match(
      loadProblems(policyDir({ 'a.cedar': '// only a comment\n' }))[0]?.message ?? '',
      /no policies/,
    );
  });

  it('refuses a missing or broken schema', () => {
    const dir = policyDir({ 'a.cedar': GOOD, 'broken.cedarschema': 'entity Agent {' });
    assert.match(
      loadProblems(dir, path.join(dir, 'missing.cedarschema'))[0]?.message ?? '',
      /cannot read schema/,
    );
    const broken = loadProblems(dir, path.join(dir, 'broken.cedarschema'));
    assert.equal(broken[0]?.file, path.join(dir, 'broken.cedarschema'));
    assert.equal(broken[0]?.line, 1);
  });

  it('reads only regular *.cedar files, following symlinks and skipping dotfiles', () => {
    const dir = policyDir({ 'a.cedar': GOOD, 'notes.txt': 'not cedar', '.#a.cedar': 'not cedar either (' });
    mkdirSync(path.join(dir, 'dir.cedar'));
    const target = path.join(dir, 'target.txt');
    writeFileSync(target, '@id("linked") permit (principal, action == Action::"BeginTask", resource);');
    symlinkSync(target, path.join(dir, 'linked.cedar'));
    assert.deepEqual(validatePolicyDir(dir, SHIPPED_SCHEMA), { ok: true, errors: [], warnings: [] });
  });

  describe('digest', () => {
    const files = { 'a.cedar': GOOD, 'b.cedar': '@id("b") forbid (principal, action, resource);' };
    const digestOf = (dir: string, schemaPath = SHIPPED_SCHEMA): string =>
      CedarPolicyEngine.load({ policyDir: dir, schemaPath }).digest;

    it('is stable for the same content, wherever the directory is', () => {
      assert.equal(digestOf(policyDir(files)), digestOf(policyDir(files)));
    });

    it('changes when a file changes, is renamed, is added or the schema changes', () => {
      const dir = policyDir(files);
      const before = digestOf(dir);
      writeFileSync(path.join(dir, 'b.cedar'), '@id("b") forbid (principal, action, resource);\n');
      const edited = digestOf(dir);
      assert.notEqual(edited, before);

      const renamed = policyDir({ 'a.cedar': GOOD, 'c.cedar': files['b.cedar'] });
      assert.notEqual(digestOf(renamed), before);

      const added = policyDir({ ...files, 'c.cedar': 'permit (principal, action, resource);' });
      assert.notEqual(digestOf(added), before);

      const schemaCopy = path.join(dir, 'schema.cedarschema');
      writeFileSync(schemaCopy, `${readFileSync(SHIPPED_SCHEMA, 'utf8')}\n// a comment\n`);
      assert.notEqual(digestOf(dir, schemaCopy), edited);
      rmSync(schemaCopy);
      assert.equal(digestOf(dir), edited, 'and is stable again once the change is undone');
    });
  });
});
