/** `svid-broker dev`: the dev stack plus a broker, and what to try next. */
import { relative } from 'node:path';
import { startDevStack, type DevConsoleOptions, type DevStack } from '../dev/dev-stack.js';
import { createLogger, startBroker, type RunningBroker } from '../main.js';
import { str, usageError, type Command, type Parsed } from './command.js';
import { PROCESS_TITLE, onReloadSignal, untilSignal } from './serve.js';

/** What is running where, and commands to try from this directory. */
function devBanner(stack: DevStack, broker: RunningBroker): string {
  // Paths under the current directory print relative (short, copy-pasteable); others absolute.
  const rel = (p: string): string => {
    const r = relative(process.cwd(), p);
    return r === '' ? '.' : r.startsWith('..') ? p : r;
  };
  const sock = (name: keyof typeof stack.endpoints): string => {
    const r = rel(stack.endpoints[name].slice('unix://'.length));
    return r.startsWith('/') ? `unix://${r}` : `unix://$PWD/${r}`;
  };
  const addr = `localhost:${broker.grpcPort}`;
  // Inside the checkout the package is not on PATH; show a command that works from here.
  const cli = import.meta.url.includes('/dist/') ? 'node dist/src/cli/main.js' : 'npx tsx src/cli/main.ts';
  const http = `http://127.0.0.1:${broker.httpPort}`;
  const storeLine = stack.redis
    ? `lease store: private redis-server at ${stack.redis.url} (data in ${rel(stack.redis.dir)})`
    : 'lease store: IN-PROCESS MEMORY (no redis-server on PATH): NOT durable, a restart forgets every lease';
  return `
svid-broker dev stack is up
  trust domain : ${stack.ca.trustDomain}
  broker       : ${broker.spiffeId()} on ${addr} (gRPC, mTLS)  ops: ${http}
  ${storeLine}
  audit trail  : ${rel(stack.config.audit.file)}
  sockets      : ${Object.entries(stack.endpoints)
    .map(([n, e]) => `${n}=${rel(e.slice('unix://'.length))}`)
    .join('  ')}

Try it (in another terminal, from this directory):
  # the demo agent gets a demo-api token for a task in "dev"
  SPIFFE_ENDPOINT_SOCKET=${sock('agent')} SVID_BROKER_ADDR=${addr} ${cli} request --env dev --role token/demo
  # the same over a JWT-SVID instead of mTLS
  SPIFFE_ENDPOINT_SOCKET=${sock('agent')} SVID_BROKER_ADDR=${addr} ${cli} request --env dev --role token/demo --auth jwt
  # refused by policy: token/demo is not allowed in prod
  SPIFFE_ENDPOINT_SOCKET=${sock('agent')} SVID_BROKER_ADDR=${addr} ${cli} request --env prod --role token/demo
  # needs a human: a destructive deploy in prod goes pending (exit 3), then waits with --wait
  SPIFFE_ENDPOINT_SOCKET=${sock('agent')} SVID_BROKER_ADDR=${addr} ${cli} request --env prod --role token/deploy --change-type destructive --justification "roll back release 42" --wait
  # ...while the security engineer (another terminal) lists and approves it
  SPIFFE_ENDPOINT_SOCKET=${sock('security')} SVID_BROKER_ADDR=${addr} ${cli} approvals list
  SPIFFE_ENDPOINT_SOCKET=${sock('security')} SVID_BROKER_ADDR=${addr} ${cli} approvals approve <approval_id> --reason "rollback agreed in #incident"
  # end the task: revokes its credentials and lists them
  SPIFFE_ENDPOINT_SOCKET=${sock('agent')} SVID_BROKER_ADDR=${addr} ${cli} task end <task_id>
  # verify tokens: JWKS and revoked token ids
  curl -s ${http}/.well-known/jwks.json ; curl -s ${http}/v1/revoked
  # check the audit chain
  ${cli} audit verify ${rel(stack.config.audit.file)}
${broker.consolePort ? `\nWeb console: https://localhost:${broker.consolePort}/ (sign in at ${stack.config.humans.oidc.issuer ?? ''})\n` : ''}
Ctrl-C stops everything.
`;
}

export async function runDev(opts: {
  dir?: string;
  listen?: string;
  httpListen?: string;
  console?: DevConsoleOptions;
}): Promise<number> {
  process.title = PROCESS_TITLE;
  const logger = createLogger(process.env.LOG_LEVEL ?? 'info');
  const stack = await startDevStack({
    logger,
    ...(opts.dir ? { dir: opts.dir } : {}),
    ...(opts.listen ? { listen: opts.listen } : {}),
    ...(opts.httpListen ? { httpListen: opts.httpListen } : {}),
    ...(opts.console ? { console: opts.console } : {}),
  });
  let broker;
  try {
    broker = await startBroker({ config: stack.config, logger });
  } catch (err) {
    await stack.close();
    throw err;
  }
  console.log(devBanner(stack, broker));
  onReloadSignal(broker, (msg) => logger.info(msg));
  return untilSignal(
    async () => {
      await broker.close();
      await stack.close();
    },
    (msg) => logger.info(msg),
  );
}

export const DEV_COMMANDS: Command[] = [
  {
    path: 'dev',
    summary:
      'Run the embedded dev stack and a broker. A local CA serves the Workload API (one socket per\n' +
      'workload), with a private redis-server when one is on the PATH (else an in-process store).\n' +
      'One per directory: a second one in the same --dir refuses to start.',
    flags: {
      dir: {
        type: 'string',
        value: 'DIR',
        help: 'where sockets, Redis data and the audit file live (default .svid-broker/dev)',
      },
      listen: { type: 'string', value: 'HOST:PORT', help: 'the gRPC address (default 127.0.0.1:8443)' },
      'http-listen': {
        type: 'string',
        value: 'HOST:PORT',
        help: 'the ops HTTP address: health, JWKS, metrics (default 127.0.0.1:8080)',
      },
      console: {
        type: 'string',
        value: 'HOST:PORT',
        help: 'also serve the web console there (a fixed port; needs --oidc-issuer and --oidc-client-id)',
      },
      'oidc-issuer': { type: 'string', value: 'URL', help: 'the OpenID provider people sign in at' },
      'oidc-client-id': {
        type: 'string',
        value: 'ID',
        help: "the console's client id at the OpenID provider",
      },
      'oidc-client-secret-file': {
        type: 'string',
        value: 'FILE',
        help: 'a file holding its client secret (none: a public client)',
      },
    },
    notes: 'exit codes: 0 stopped by Ctrl-C, 1 could not start (the reason is printed)',
    run: (p) =>
      runDev({
        ...(str(p, 'dir') ? { dir: str(p, 'dir') } : {}),
        ...(str(p, 'listen') ? { listen: str(p, 'listen') } : {}),
        ...(str(p, 'http-listen') ? { httpListen: str(p, 'http-listen') } : {}),
        ...devConsole(p),
      }),
  },
];

/** `--console` with its IdP flags, or nothing; the IdP flags alone are a usage mistake. */
function devConsole(p: Parsed): { console?: DevConsoleOptions } {
  const listen = str(p, 'console');
  const issuer = str(p, 'oidc-issuer');
  const clientId = str(p, 'oidc-client-id');
  const secret = str(p, 'oidc-client-secret-file');
  if (!listen) {
    if (issuer || clientId || secret) throw usageError('--oidc-* flags need --console HOST:PORT');
    return {};
  }
  if (!issuer || !clientId) throw usageError('--console needs --oidc-issuer and --oidc-client-id');
  return { console: { listen, issuer, clientId, ...(secret ? { clientSecretFile: secret } : {}) } };
}
