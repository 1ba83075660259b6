/**
 * One sentence for the person at the terminal, whatever went wrong: the broker's own messages
 * with its request fields renamed to the command's flags, and grpc-js's connection failures
 * ("No connection established ... Resolution note:") turned into what to check.
 */
import { status, type Metadata } from '@grpc/grpc-js';

/** Request fields as the CLI's flags; a command may override (a positional, say). */
const FIELD_FLAGS: Readonly<Record<string, string>> = {
  ttl_seconds: '--ttl',
  confirm_all: '--confirm-all',
  dry_run: '--dry-run',
  task_id: '--task',
  lease_id: '--lease',
  trust_domain: '--trust-domain',
  change_type: '--change-type',
  page_size: '--limit',
  page_token: '--page-token',
  revoke_active: '--revoke',
  environment: '--env',
  role: '--role',
  roles: '--role',
  agent: '--agent',
  reason: '--reason',
  note: '--note',
  intent: '--intent',
  justification: '--justification',
  tool: '--tool',
  sensitivity: '--sensitivity',
  state: '--state',
  backend: '--backend',
};

interface GrpcLikeError {
  code: number;
  details: string;
  metadata?: Metadata;
}

function isGrpcError(err: unknown): err is GrpcLikeError {
  const e = err as Partial<GrpcLikeError>;
  return typeof e?.code === 'number' && typeof e.details === 'string';
}

/** `ttl_seconds: must be ...` -> `--ttl: must be ...`; wire names inside the text too. */
export function renameFields(text: string, fields: Readonly<Record<string, string>>): string {
  let out = text;
  const prefix = /^([a-z_]+(?:\.[A-Za-z0-9_./-]+)?): /.exec(out)?.[1];
  if (prefix && fields[prefix]) out = `${fields[prefix]}: ${out.slice(prefix.length + 2)}`;
  // Snake-case names are never English words: rename them wherever they appear.
  for (const [field, flag] of Object.entries(fields)) {
    if (field.includes('_')) out = out.replace(new RegExp(`\\b${field}\\b`, 'g'), flag);
  }
  return out;
}

/** What a transport failure means, or undefined when it is not one. */
function explainTransport(text: string, address: string): string | undefined {
  if (/ECONNREFUSED|ENOENT|EHOSTUNREACH|ENETUNREACH/.test(text)) {
    return `no broker at ${address}: is it running? (set SVID_BROKER_ADDR)`;
  }
  if (/ENOTFOUND|EAI_AGAIN|Name resolution failed/.test(text)) {
    return `cannot resolve the broker's host in ${address} (set SVID_BROKER_ADDR)`;
  }
  if (/wrong version number|packet length too long|http request|unknown protocol/i.test(text)) {
    return `${address} does not speak TLS: is SVID_BROKER_ADDR the broker's gRPC port, not its HTTP one?`;
  }
  const impostor = /broker is (spiffe:\/\/[^\s,]+), expected (spiffe:\/\/\S+?)\.?(?:\s|$)/.exec(text);
  if (impostor) {
    return (
      `the server at ${address} is ${impostor[1]}, not the broker ${impostor[2]}: ` +
      'check SVID_BROKER_ADDR, or set SVID_BROKER_ID (--broker-id) if the broker has another ID'
    );
  }
  const otherTd = /broker is in trust domain ([^\s,]+), expected (\S+?)\.?(?:\s|$)/.exec(text);
  if (otherTd) {
    return `the server at ${address} is in trust domain ${otherTd[1]}, not ${otherTd[2]}: check SVID_BROKER_ADDR and --broker-id`;
  }
  if (/certificate has expired|CERT_HAS_EXPIRED/.test(text)) {
    return `the broker's certificate at ${address} has expired: its SVID is not being renewed`;
  }
  if (/self.signed|unable to verify|unable to get (local )?issuer/i.test(text)) {
    return `the server at ${address} presented a certificate your trust bundle does not sign: is it the broker of your trust domain?`;
  }
  return undefined;
}

/** The line printed after `svid-broker: `. */
export function explainError(
  err: unknown,
  opts: { address: string; fields?: Readonly<Record<string, string>> },
): string {
  const fields = { ...FIELD_FLAGS, ...opts.fields };
  if (isGrpcError(err)) {
    const reason = err.metadata?.get('x-svid-broker-reason')[0];
    if (err.code === status.UNAUTHENTICATED && reason === 'svid_expired') {
      return `${err.details}: your SVID expired before the broker saw it; check the SPIRE agent and this host's clock`;
    }
    if (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) {
      const transport = explainTransport(err.details, opts.address);
      if (transport) return transport;
      if (err.code === status.DEADLINE_EXCEEDED)
        return `the broker at ${opts.address} did not answer in time`;
    }
    if (err.code === status.RESOURCE_EXHAUSTED && /larger than max/.test(err.details)) {
      return 'the request is too large for the broker: shorten the longest text flag';
    }
    // A gRPC status from the broker: already a safe, human message.
    return renameFields(err.details, fields);
  }
  const message = err instanceof Error ? err.message : String(err);
  const inUse = /EADDRINUSE: address already in use (\S+?)\]?$/m.exec(message);
  if (inUse) {
    return (
      `cannot listen on ${inUse[1]}: the address is in use (another broker or dev stack?); ` +
      'choose another with --listen/--http-listen (dev) or listen/httpListen (config)'
    );
  }
  return explainTransport(message, opts.address) ?? renameFields(message, fields);
}
