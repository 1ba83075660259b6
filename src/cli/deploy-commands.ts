/**
 * The platform engineer's commands as CLI table entries: `spire entries`, `spire check` and
 * `config validate` (their work is in spire.ts and config-validate.ts).
 */
import { required, str, usageError, type Command, type Parsed } from './command.js';
import { runConfigValidate } from './config-validate.js';
import { runSpireCheck, runSpireEntries } from './spire.js';

const FORMATS = ['json', 'commands', 'k8s'];

const CATALOG_FLAG = {
  catalog: {
    type: 'string',
    value: 'FILE',
    help: 'the broker config (or catalog) file whose `agents` and `spire` sections are the catalog (required)',
  },
} as const;

/** The parsed flags back as arguments for the parseArgs-based runners. */
function argsOf(p: Parsed, names: string[]): string[] {
  return names.flatMap((n) => (str(p, n) ? [`--${n}`, str(p, n)] : []));
}

export const DEPLOY_COMMANDS: Command[] = [
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
    run: async (p) => {
      required(p, 'catalog', 'the catalog to generate from');
      const format = str(p, 'format') || 'json';
      if (!FORMATS.includes(format)) throw usageError('--format must be json, commands or k8s');
      return runSpireEntries(argsOf(p, ['catalog', 'parent', 'format']));
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
    run: async (p) => {
      required(p, 'catalog', 'the catalog to compare');
      required(p, 'entries', 'the SPIRE entries to compare');
      return runSpireCheck(argsOf(p, ['catalog', 'entries']));
    },
  },
  {
    path: 'config validate',
    args: 'FILE',
    positionals: [1, 1],
    summary: 'Check a config file (schema, roles, backends, catalog) without starting anything.',
    flags: {},
    run: (p) => runConfigValidate(p.positionals[0] as string),
  },
];
