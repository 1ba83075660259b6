/**
 * Writes the audit record catalogue into the README (between its markers), formatted as prettier
 * formats the README: `npx tsx test/support/write-audit-catalogue.ts`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format } from 'prettier';
import {
  CATALOGUE_BEGIN,
  CATALOGUE_END,
  renderAuditCatalogue,
} from '../../src/audit/event-catalogue-markdown.js';
import { packageRoot } from '../../src/package-root.js';

export const README = join(packageRoot(), 'README.md');

/** The catalogue as the README holds it. */
export async function formattedCatalogue(): Promise<string> {
  const options = { parser: 'markdown', singleQuote: true, printWidth: 110, trailingComma: 'all' } as const;
  return (await format(renderAuditCatalogue(), options)).trimEnd();
}

/** The README's block between the markers (markers included), or undefined when it has none. */
export function readmeCatalogue(readme: string): string | undefined {
  const start = readme.indexOf(CATALOGUE_BEGIN);
  const end = readme.indexOf(CATALOGUE_END);
  if (start < 0 || end < start) return undefined;
  return readme.slice(start, end + CATALOGUE_END.length);
}

async function main(): Promise<void> {
  const readme = readFileSync(README, 'utf8');
  const current = readmeCatalogue(readme);
  if (current === undefined) throw new Error(`README has no ${CATALOGUE_BEGIN} ... ${CATALOGUE_END} block`);
  writeFileSync(README, readme.replace(current, await formattedCatalogue()));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
