/**
 * A broker child process for crash tests: `svid-broker serve` as startBroker runs it, on the config
 * file given as argv[2], except that its audit sink never finishes a `credential.issued` write.
 * When one arrives it prints `lease-written <leaseId>` on stdout (the lease is in the store by
 * then, the record is not) and hangs there, so the test can SIGKILL it exactly between the lease
 * write and the audit record. Prints `serving <grpcPort>` once it serves.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { MemoryAuditSink } from '../../src/audit/memory-sink.js';
import type { AuditEventInput, AuditRecord, AuditSink } from '../../src/audit/types.js';
import { parseConfig } from '../../src/config/load-config.js';
import { createLogger, startBroker } from '../../src/main.js';

class StallOnIssued implements AuditSink {
  private readonly inner = new MemoryAuditSink();
  write(event: AuditEventInput): Promise<AuditRecord> {
    if (event.type !== 'credential.issued') return this.inner.write(event);
    process.stdout.write(`lease-written ${String(event.lease)}\n`);
    return new Promise<AuditRecord>(() => undefined);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: stalling-broker.ts <config.json>');
  const config = parseConfig(JSON.parse(readFileSync(file, 'utf8')) as unknown);
  const broker = await startBroker({ config, logger: createLogger('warn'), audit: new StallOnIssued() });
  process.stdout.write(`serving ${broker.grpcPort}\n`);
}

main().catch((err: unknown) => {
  console.error(`stalling-broker: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
