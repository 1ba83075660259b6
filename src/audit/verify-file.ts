/**
 * Verifies an audit file as a stream, so a file of any size is checked in constant memory; backs
 * `svid-broker audit verify FILE`.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { ChainVerifier, type VerifyChainResult } from './hash-chain.js';

export async function verifyAuditFile(path: string): Promise<VerifyChainResult> {
  const input = createReadStream(path, { encoding: 'utf8' });
  // Without a listener an open error (ENOENT) would be emitted before readline attaches one.
  const opened = new Promise<void>((resolve, reject) => {
    input.once('ready', () => resolve());
    input.once('error', reject);
  });
  await opened;
  const lines = createInterface({ input, crlfDelay: Infinity });
  const verifier = new ChainVerifier();
  try {
    for await (const line of lines) {
      verifier.push(line);
      if (verifier.done) break;
    }
  } finally {
    lines.close();
    input.destroy();
  }
  return verifier.result();
}

/** One line for the CLI, e.g. `ok: 1234 records, chain intact, last hash <h>`. */
export function formatVerifyResult(result: VerifyChainResult): string {
  if (result.ok) {
    const noun = result.count === 1 ? 'record' : 'records';
    return `ok: ${result.count} ${noun}, chain intact, last hash ${result.lastHash}`;
  }
  const where = result.id === undefined ? `line ${result.line}` : `line ${result.line} (record ${result.id})`;
  return `BROKEN at ${where}: ${result.error} (${result.count} valid records before it)`;
}
