import { strict as assert } from 'node:assert';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { AUDIT_EVENT_EXAMPLES } from '../../../src/audit/event-examples.js';
import { AUDIT_EVENT_TYPES } from '../../../src/audit/event-types.js';
import { packageRoot } from '../../../src/package-root.js';
import { formattedCatalogue, readmeCatalogue } from '../../support/write-audit-catalogue.js';

const ROOT = packageRoot();

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/**
 * Every record type the code writes: the dotted literals in the expression after `type:` (a
 * ternary counts every branch) and in refusalType(err, denied, failed).
 */
export function writtenTypes(text: string): string[] {
  const found: string[] = [];
  const literals = (expr: string): void => {
    for (const m of expr.matchAll(/'([a-z]+\.[a-z_]+)'/g)) found.push(m[1] as string);
  };
  for (const m of text.matchAll(/\btype:\s*([^,;{}]*)/g)) literals(m[1] as string);
  for (const m of text.matchAll(/refusalType\(([^)]*)\)/g)) literals(m[1] as string);
  return found;
}

/** The README's table of audit record types: `| \`type\` | meaning |` rows. */
function readmeTypes(): Map<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## Audit trail'),
    readme.indexOf('\n## ', readme.indexOf('## Audit trail') + 1),
  );
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([a-z]+\.[a-z_]+)` +\| (.*?) *\|$/gm))
    rows.set(m[1] as string, m[2] as string);
  return rows;
}

describe('audit event types: code, catalogue and README agree', () => {
  const catalogue = new Map<string, string>(Object.entries(AUDIT_EVENT_TYPES));
  const written = new Map<string, string>();
  for (const file of sourceFiles(join(ROOT, 'src'))) {
    if (file.endsWith(join('audit', 'event-types.ts'))) continue;
    for (const t of writtenTypes(readFileSync(file, 'utf8'))) written.set(t, relative(ROOT, file));
  }

  it('finds the records written in ternaries and refusalType calls', () => {
    const sample =
      "type: ok ? 'lease.expired' : 'lease.revoke_queued', agent\nrefusalType(err, 'task.denied', 'task.failed')";
    assert.deepEqual(writtenTypes(sample), [
      'lease.expired',
      'lease.revoke_queued',
      'task.denied',
      'task.failed',
    ]);
  });

  it('every type the code writes is in src/audit/event-types.ts', () => {
    const missing = [...written].filter(([t]) => !catalogue.has(t)).map(([t, f]) => `${t} (written in ${f})`);
    assert.deepEqual(
      missing,
      [],
      `add to AUDIT_EVENT_TYPES in src/audit/event-types.ts: ${missing.join(', ')}`,
    );
  });

  it('every type in the catalogue is written somewhere in src/', () => {
    const unused = [...catalogue.keys()].filter((t) => !written.has(t));
    assert.deepEqual(
      unused,
      [],
      `in src/audit/event-types.ts but nothing in src/ writes it: ${unused.join(', ')}`,
    );
  });

  it("the README's table lists exactly the catalogue, with the same meanings", () => {
    const readme = readmeTypes();
    const missing = [...catalogue.keys()].filter((t) => !readme.has(t));
    assert.deepEqual(missing, [], `missing from the README's "Audit trail" table: ${missing.join(', ')}`);
    const extra = [...readme.keys()].filter((t) => !catalogue.has(t));
    assert.deepEqual(
      extra,
      [],
      `in the README's table but not in src/audit/event-types.ts: ${extra.join(', ')}`,
    );
    for (const [t, meaning] of catalogue) {
      assert.equal(readme.get(t), meaning, `README row for ${t} differs from src/audit/event-types.ts`);
    }
  });

  it('every type has one example record, of its own type and agent', () => {
    assert.deepEqual(Object.keys(AUDIT_EVENT_EXAMPLES), [...catalogue.keys()]);
    for (const [t, { example }] of Object.entries(AUDIT_EVENT_EXAMPLES)) {
      assert.equal(typeof example.agent, 'string', t);
      assert.equal('type' in example, false, `${t}: the type is the key, not a field`);
    }
  });

  it("the README's catalogue block is the one generated from the catalogue (run test/support/write-audit-catalogue.ts)", async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = readmeCatalogue(readme);
    assert.ok(block, 'README lacks the audit-catalogue block');
    assert.equal(
      block,
      await formattedCatalogue(),
      'README lags the audit catalogue: npx tsx test/support/write-audit-catalogue.ts',
    );
  });
});
