/**
 * `svid-broker audit hmac VALUE`: the `hmac-sha256:<hex>` the audit trail records for a sensitive
 * identifier (a Vault accessor, an AWS session name), so an investigator can search the trail for
 * one seen elsewhere (Vault's audit log, CloudTrail) without the trail ever holding it.
 */
import { hmacKeyFileFor, identifierHmac, readHmacKey } from '../audit/identifier-hmac.js';
import { loadConfig } from '../config/load-config.js';
import { str, type Command } from './command.js';

/** --key-file, else the key of the broker configured at SVID_BROKER_CONFIG (or the defaults). */
function keyFile(flag: string): string {
  return flag || hmacKeyFileFor(loadConfig().audit);
}

async function runAuditHmac(value: string, file: string): Promise<number> {
  // Never creates a key: an HMAC under a new key matches nothing in the trail.
  let key: Buffer;
  try {
    key = readHmacKey(file, { create: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? `no audit HMAC key at ${file}: pass --key-file (the broker's audit.hmacKeyFile)`
        : (err as Error).message,
    );
  }
  console.log(identifierHmac(key)(value));
  return Promise.resolve(0);
}

export const AUDIT_HMAC_COMMANDS: Command[] = [
  {
    path: 'audit hmac',
    args: 'VALUE',
    positionals: [1, 1],
    summary:
      'Print the hmac-sha256:<hex> the audit trail records for a sensitive identifier (a Vault accessor, ' +
      'an AWS session name), to search the trail for it.',
    flags: {
      'key-file': {
        type: 'string',
        value: 'FILE',
        help: "the deployment's key (audit.hmacKeyFile); default: that of the config at SVID_BROKER_CONFIG, else svid-broker-audit.jsonl.hmac-key",
      },
    },
    notes:
      'exit codes: 0 printed, 1 no key (or unreadable), 2 usage\nexample: grep "$(svid-broker audit hmac hvs.AccessorValue)" audit.jsonl',
    run: (p) => runAuditHmac(p.positionals[0] as string, keyFile(str(p, 'key-file'))),
  },
];
