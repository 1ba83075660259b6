/**
 * `svid-broker spire entries` and `svid-broker spire check`: SPIRE registration generated from,
 * and checked against, the agent catalog in a broker config file (a file with only `agents:` and
 * `spire:` works too).
 */
import { readFileSync } from 'node:fs';
import { required, str, usageError, type Command } from './command.js';
import { loadConfig } from '../config/load-config.js';
import { formatClusterSpiffeIds, generateClusterSpiffeIds } from '../spire/cluster-spiffe-id.js';
import { checkEntries, parseEntriesDocument, type CheckedEntry } from '../spire/entry-check.js';
import {
  formatEntriesJson,
  formatEntryCommands,
  generateEntries,
  RegistrationError,
  type RegistrationCatalog,
} from '../spire/registration.js';

const FORMATS = ['json', 'commands', 'k8s'] as const;
type SpireFormat = (typeof FORMATS)[number];
const isFormat = (f: string): f is SpireFormat => (FORMATS as readonly string[]).includes(f);

/** Reads the catalog from a config file as written (no env overrides). */
export function readCatalog(file: string): RegistrationCatalog {
  const config = loadConfig({ file, env: {} });
  return { agents: config.agents, spire: config.spire };
}

function runSpireEntries(opts: { catalog: string; parent: string | undefined; format: SpireFormat }): number {
  const catalog = readCatalog(opts.catalog);
  if (opts.format === 'k8s') {
    process.stdout.write(formatClusterSpiffeIds(generateClusterSpiffeIds(catalog)));
    return 0;
  }
  const entries = generateEntries(catalog, opts.parent);
  process.stdout.write(opts.format === 'json' ? formatEntriesJson(entries) : formatEntryCommands(entries));
  return 0;
}

function readEntriesFile(file: string): CheckedEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new RegistrationError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseEntriesDocument(text, file);
}

/** Exit 0 when catalog and entries agree, 1 with a line per difference. */
function runSpireCheck(opts: { catalog: string; entries: string }): number {
  const catalog = readCatalog(opts.catalog);
  const entries = readEntriesFile(opts.entries);
  const report = checkEntries(catalog, entries);
  for (const id of report.unregistered) console.log(`missing entry: ${id} (in the catalog, not registered)`);
  for (const id of report.unknown) console.log(`unknown agent: ${id} (registered, in no catalog group)`);
  for (const d of report.differs) console.log(`differs: ${d.spiffeId}: ${d.problems.join('; ')}`);
  const problems = report.unregistered.length + report.unknown.length + report.differs.length;
  console.log(
    problems === 0
      ? `ok: ${entries.length} entries match the catalog`
      : `${problems} problem(s): catalog and SPIRE entries disagree`,
  );
  return problems === 0 ? 0 : 1;
}

const CATALOG_FLAG = {
  catalog: {
    type: 'string',
    value: 'FILE',
    help: 'the broker config (or catalog) file whose `agents` and `spire` sections are the catalog (required)',
  },
} as const;

export const SPIRE_COMMANDS: Command[] = [
  {
    path: 'spire entries',
    summary: 'Generate SPIRE registration entries from the agent catalog.',
    flags: {
      ...CATALOG_FLAG,
      parent: {
        type: 'string',
        value: 'SPIFFE_ID',
        help: 'parent ID of every entry (default spire.parentId in the catalog)',
      },
      format: {
        type: 'string',
        value: 'json|commands|k8s',
        help: 'entry create -data JSON (default), one spire-server command per entry, or ClusterSPIFFEID resources',
      },
    },
    notes: 'exit codes: 0 printed, 1 the catalog is invalid or cannot be registered (one line), 2 usage',
    run: async (p) => {
      const catalog = required(p, 'catalog', 'the catalog to generate from');
      const format = str(p, 'format') || 'json';
      if (!isFormat(format)) throw usageError('--format must be json, commands or k8s');
      return runSpireEntries({ catalog, parent: str(p, 'parent') || undefined, format });
    },
  },
  {
    path: 'spire check',
    summary: 'Compare the catalog with SPIRE entries: missing, unknown and drifted agents (exit 1).',
    flags: {
      ...CATALOG_FLAG,
      entries: {
        type: 'string',
        value: 'FILE',
        help: 'entries as `entry create -data` JSON or `spire-server entry show -output json` (required)',
      },
    },
    notes: 'exit codes: 0 catalog and entries agree, 1 a difference (one line each), 2 usage',
    run: async (p) =>
      runSpireCheck({
        catalog: required(p, 'catalog', 'the catalog to compare'),
        entries: required(p, 'entries', 'the SPIRE entries to compare'),
      }),
  },
];
