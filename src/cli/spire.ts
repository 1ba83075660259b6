/**
 * `svid-broker spire entries` and `svid-broker spire check`: SPIRE registration generated from,
 * and checked against, the agent catalog in a broker config file (a file with only `agents:` and
 * `spire:` works too).
 *   spire entries --catalog FILE [--parent ID] [--format json|commands|k8s]
 *   spire check --catalog FILE --entries FILE
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { formatClusterSpiffeIds, generateClusterSpiffeIds } from '../spire/cluster-spiffe-id.js';
import { checkEntries, parseEntriesDocument } from '../spire/entry-check.js';
import {
  formatEntriesJson,
  formatEntryCommands,
  generateEntries,
  RegistrationError,
  type RegistrationCatalog,
} from '../spire/registration.js';

const FORMATS = ['json', 'commands', 'k8s'] as const;

/** Reads the catalog from a config file as written (no env overrides). */
export function readCatalog(file: string): RegistrationCatalog {
  const config = loadConfig({ file, env: {} });
  return { agents: config.agents, spire: config.spire };
}

/** Runs `body`, turning catalog and registration problems into a message and exit 1. */
function reporting(body: () => number): number {
  try {
    return body();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RegistrationError) {
      console.error(`svid-broker: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

export function runSpireEntries(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      catalog: { type: 'string' },
      parent: { type: 'string' },
      format: { type: 'string', default: 'json' },
    },
  });
  const format = values.format as (typeof FORMATS)[number];
  if (!values.catalog || !FORMATS.includes(format)) {
    console.error(
      'usage: svid-broker spire entries --catalog FILE [--parent ID] [--format json|commands|k8s]',
    );
    return 2;
  }
  const catalogFile = values.catalog;
  return reporting(() => {
    const catalog = readCatalog(catalogFile);
    if (format === 'k8s') {
      process.stdout.write(formatClusterSpiffeIds(generateClusterSpiffeIds(catalog)));
      return 0;
    }
    const entries = generateEntries(catalog, values.parent);
    process.stdout.write(format === 'json' ? formatEntriesJson(entries) : formatEntryCommands(entries));
    return 0;
  });
}

/** Exit 0 when catalog and entries agree, 1 with a line per difference. */
export function runSpireCheck(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: { catalog: { type: 'string' }, entries: { type: 'string' } },
  });
  if (!values.catalog || !values.entries) {
    console.error('usage: svid-broker spire check --catalog FILE --entries FILE');
    return 2;
  }
  const { catalog: catalogFile, entries: entriesFile } = values;
  return reporting(() => {
    const catalog = readCatalog(catalogFile);
    let text: string;
    try {
      text = readFileSync(entriesFile, 'utf8');
    } catch (err) {
      throw new RegistrationError(
        `cannot read ${entriesFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const entries = parseEntriesDocument(text, entriesFile);
    const report = checkEntries(catalog, entries);
    for (const id of report.unregistered)
      console.log(`missing entry: ${id} (in the catalog, not registered)`);
    for (const id of report.unknown) console.log(`unknown agent: ${id} (registered, in no catalog group)`);
    for (const d of report.differs) console.log(`differs: ${d.spiffeId}: ${d.problems.join('; ')}`);
    const problems = report.unregistered.length + report.unknown.length + report.differs.length;
    console.log(
      problems === 0
        ? `ok: ${entries.length} entries match the catalog`
        : `${problems} problem(s): catalog and SPIRE entries disagree`,
    );
    return problems === 0 ? 0 : 1;
  });
}
