/**
 * Imports flow down the layers (README "Source layout and layers"): a part of src/ imports only
 * from parts in lower layers, never from its own layer's neighbours or from above. Each source
 * file's relative imports (static, dynamic and `export ... from`) are read with TypeScript's own
 * pre-processor, so a type-only import counts as much as a value import.
 */
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Lowest first. A part is a folder of src/ or a file at its top (without `.ts`). */
const LAYERS: readonly (readonly string[])[] = [
  ['errors', 'package-root', 'util'],
  ['redis', 'identity'],
  ['credentials'],
  ['config'],
  ['audit', 'feed'],
  ['observability', 'policy', 'leases'],
  ['approvals', 'budgets', 'humans'],
  ['quarantine', 'notifications'],
  ['broker'],
  ['server', 'dev', 'spire'],
  ['client'],
  ['mcp', 'console'],
  ['main'],
  ['cli'],
];

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src');

interface ImportEdge {
  file: string;
  from: string;
  to: string;
}

function partOf(path: string): string {
  return (relative(SRC, path).split('/')[0] as string).replace(/\.[jt]s$/, '');
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import that crosses from one part of src/ to another. */
function crossPartImports(files: readonly string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of info.importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const from = partOf(file);
      const to = partOf(resolve(dirname(file), fileName));
      if (from !== to) edges.push({ file: relative(SRC, file), from, to });
    }
  }
  return edges;
}

function layerOf(part: string): number {
  return LAYERS.findIndex((layer) => layer.includes(part));
}

/** The imports that go sideways or up, as `file: from -> to` lines. */
function upwardImports(edges: readonly ImportEdge[]): string[] {
  return edges
    .filter((e) => layerOf(e.to) < 0 || layerOf(e.to) >= layerOf(e.from))
    .map((e) => `${e.file}: ${e.from} (layer ${layerOf(e.from)}) -> ${e.to} (layer ${layerOf(e.to)})`);
}

describe('import layers', () => {
  const files = sourceFiles(SRC);

  it('places every part of src/ in exactly one layer', () => {
    const parts = [...new Set(files.map(partOf))].sort();
    const unplaced = parts.filter((p) => layerOf(p) < 0);
    assert.deepEqual(unplaced, [], `add these parts of src/ to LAYERS: ${unplaced.join(', ')}`);
    const listed = LAYERS.flat();
    assert.equal(new Set(listed).size, listed.length, 'a part is listed twice');
    const stale = listed.filter((p) => !parts.includes(p));
    assert.deepEqual(stale, [], `LAYERS names parts src/ no longer has: ${stale.join(', ')}`);
  });

  it('finds cross-part imports to check (the reader works)', () => {
    const edges = crossPartImports(files);
    assert.ok(edges.some((e) => e.from === 'broker' && e.to === 'leases'));
    assert.ok(edges.some((e) => e.from === 'cli' && e.to === 'main'));
  });

  it('has no import that goes sideways or up a layer', () => {
    assert.deepEqual(upwardImports(crossPartImports(files)), []);
  });

  it('reports an upward, a sideways and an unplaced import', () => {
    const edges: ImportEdge[] = [
      { file: 'leases/lease-records.ts', from: 'leases', to: 'quarantine' },
      { file: 'quarantine/quarantine-service.ts', from: 'quarantine', to: 'broker' },
      { file: 'leases/types.ts', from: 'leases', to: 'policy' },
      { file: 'broker/broker.ts', from: 'broker', to: 'leases' },
      { file: 'broker/x.ts', from: 'broker', to: 'nowhere' },
    ];
    assert.deepEqual(upwardImports(edges), [
      'leases/lease-records.ts: leases (layer 5) -> quarantine (layer 7)',
      'quarantine/quarantine-service.ts: quarantine (layer 7) -> broker (layer 8)',
      'leases/types.ts: leases (layer 5) -> policy (layer 5)',
      'broker/x.ts: broker (layer 8) -> nowhere (layer -1)',
    ]);
  });
});
