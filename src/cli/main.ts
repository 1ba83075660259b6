#!/usr/bin/env node
/**
 * svid-broker CLI: thin commands over the same modules the server uses.
 *   serve | dev | request | task end | audit verify
 */
import 'reflect-metadata';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { PolicyLoadError } from '../policy/policy-load-error.js';
import { StartupError } from '../main.js';
import { runAdmin, runApprovals, runBreakGlass } from './admin.js';
import { runAuditVerify } from './audit-verify.js';
import { runPolicyTest, runPolicyValidate } from './policy.js';
import { runDev } from './dev.js';
import { runRequest, runTaskEnd } from './request.js';
import { runServe } from './serve.js';

const USAGE = `usage: svid-broker <command> [options]

commands:
  serve                     run the broker (config: SVID_BROKER_CONFIG, env overrides; see README)
  dev                       run the embedded dev stack: local CA + Workload API sockets, Redis, broker
  request --env ENV --role BACKEND/NAME [--ttl S] [--intent TEXT] [--task ID]
          [--sensitivity S] [--change-type T] [--justification TEXT] [--tool NAME] [--wait]
          [--auth x509|jwt] [--broker-id SPIFFE_ID]
                            begin a task (unless --task) and get a credential; prints JSON.
                            A request that needs approval exits 3 with its approval id, or with
                            --wait waits for the approvers and prints the credential
  task end TASK_ID [--reason TEXT]
                            end a task: revokes every credential issued in it; prints what it revoked
  mcp [--credential-dir DIR] [--return-secrets] [--auth x509|jwt] [--broker-id SPIFFE_ID]
                            MCP server over stdio for an agent: tools begin_task, request_credential,
                            await_approval, end_task, task_status; credentials go to files, not to the model
  audit verify FILE         check the audit file's hash chain; reports the first broken record
  approvals list [--state S] [--json]
  approvals approve|deny APPROVAL_ID --reason TEXT [--json]
                            decide a pending request (as the approver's identity)
  breakglass grant --agent ID --role R [--role R] [--task ID] --reason TEXT --ttl SECONDS [--json]
  breakglass list [--json] | breakglass review GRANT_ID --note TEXT
  admin leases [--agent ID|PATTERN] [--task ID] [--env E] [--role R] [--backend B]
               [--trust-domain TD] [--lease ID] [--all] [--state S] [--limit N] [--json]
  admin lease LEASE_ID [--json]
  admin revoke <same selectors> --reason TEXT [--dry-run] [--confirm-all] [--json]
                            incident response: revoke by selector, with a progress bar
                            (exit 4: some pending retry or not revocable)
  admin quarantine --agent ID|PATTERN --reason TEXT [--ttl 2h] [--revoke] [--json]
                            refuse every call of matching agents (in flight too); --revoke also
                            revokes what they hold
  admin release --agent ID|PATTERN --reason TEXT | admin quarantines [--json]
  policy validate DIR [--schema FILE]
  policy test DIR CASES.yaml  run policy cases; exits non-zero on any failure

environment: SPIFFE_ENDPOINT_SOCKET (Workload API), SVID_BROKER_ADDR (broker host:port, default localhost:8443)`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return runServe(loadConfig());
    case 'dev': {
      const { values } = parseArgs({
        args: rest,
        options: { dir: { type: 'string' }, listen: { type: 'string' }, 'http-listen': { type: 'string' } },
      });
      return runDev({
        ...(values.dir ? { dir: values.dir } : {}),
        ...(values.listen ? { listen: values.listen } : {}),
        ...(values['http-listen'] ? { httpListen: values['http-listen'] } : {}),
      });
    }
    case 'request':
      return runRequest(rest);
    case 'mcp':
      // Loaded on demand: the MCP SDK is heavy and only this command needs it.
      return (await import('./mcp.js')).runMcp(rest);
    case 'task':
      if (rest[0] === 'end') return runTaskEnd(rest.slice(1));
      break;
    case 'audit':
      if (rest[0] === 'verify' && rest[1]) return runAuditVerify(rest[1]);
      break;
    case 'approvals':
      return runApprovals(rest);
    case 'breakglass':
      return runBreakGlass(rest);
    case 'admin':
      return runAdmin(rest);
    case 'policy': {
      const { values, positionals } = parseArgs({
        args: rest.slice(1),
        allowPositionals: true,
        options: { schema: { type: 'string' } },
      });
      if (rest[0] === 'validate' && positionals[0]) {
        return runPolicyValidate(positionals[0], values.schema ? { schema: values.schema } : {});
      }
      if (rest[0] === 'test' && positionals[0] && positionals[1])
        return runPolicyTest(positionals[0], positionals[1]);
      break;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
  }
  console.error(USAGE);
  return 2;
}

function report(err: unknown): number {
  if (err instanceof ConfigError || err instanceof PolicyLoadError || err instanceof StartupError) {
    console.error(`svid-broker: ${err.message}`);
    return 1;
  }
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof e.code === 'number' && typeof e.details === 'string') {
    // A gRPC status from the broker: already a safe, human message.
    console.error(`svid-broker: ${e.details}`);
    return 1;
  }
  console.error(`svid-broker: ${typeof e.message === 'string' ? e.message : String(err)}`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
