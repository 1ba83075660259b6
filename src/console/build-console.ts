/**
 * The human side, built from `humans.*`: the OIDC relying party (discovered at startup: an IdP
 * that cannot be reached fails the start, loudly, rather than a sign-in later), the session store
 * (Redis when the broker has it, shared by replicas; memory otherwise), and the console listener.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AuditSink } from '../audit/types.js';
import type { HumansConfig } from '../config/humans-schema.js';
import { OidcRelyingParty } from '../humans/oidc-relying-party.js';
import { RedisSessionStore } from '../humans/redis-session-store.js';
import { MemorySessionStore, type SessionStore } from '../humans/session-store.js';
import type { RedisClient } from '../redis/connect.js';
import type { ActorScope } from './actor-audit.js';
import type { AuditFeed } from './audit-stream.js';
import type { UseCases } from './console-context.js';
import { type RunningConsole, startConsole } from './console-server.js';
import { SignIn } from './sign-in.js';

export interface HumanConsoleParts {
  humans: HumansConfig;
  redis: RedisClient | undefined;
  redisPrefix: string;
  use: UseCases;
  actors: ActorScope;
  audit: AuditSink;
  auditFeed: AuditFeed | undefined;
  logger: Logger;
  now?: () => number;
}

/** Starts the console when `humans.console.listen` is set; undefined otherwise. */
export async function buildHumanConsole(parts: HumanConsoleParts): Promise<RunningConsole | undefined> {
  const { humans, logger } = parts;
  const listen = humans.console.listen;
  if (!listen) return undefined;
  // The schema requires these with console.listen.
  const oidc = humans.oidc as Required<Pick<HumansConfig['oidc'], 'issuer' | 'clientId' | 'redirectUrl'>> &
    HumansConfig['oidc'];
  const clientSecret = oidc.clientSecretFile ? readFileSync(oidc.clientSecretFile, 'utf8').trim() : undefined;
  const rp = await OidcRelyingParty.discover({
    issuer: oidc.issuer,
    clientId: oidc.clientId,
    ...(clientSecret ? { clientSecret } : {}),
    redirectUrl: oidc.redirectUrl,
    scopes: oidc.scopes,
    groupsClaim: oidc.groupsClaim,
    acrValues: oidc.acrValues,
  });
  const now = parts.now ?? Date.now;
  const sessions: SessionStore = parts.redis
    ? new RedisSessionStore(parts.redis, parts.redisPrefix)
    : new MemorySessionStore(now);
  const signIn = new SignIn({
    rp,
    sessions,
    sessionTtlSeconds: humans.sessionTtlSeconds,
    redirectUrl: oidc.redirectUrl,
    audit: parts.audit,
    logger,
    now,
  });
  const running = await startConsole(
    {
      signIn,
      callbackPath: new URL(oidc.redirectUrl).pathname,
      use: parts.use,
      actors: parts.actors,
      auditFeed: parts.auditFeed,
      audit: parts.audit,
      tls: {
        cert: readFileSync(humans.console.certFile as string),
        key: readFileSync(humans.console.keyFile as string),
      },
      logger,
    },
    listen,
  );
  logger.info(
    { port: running.port, issuer: oidc.issuer, sessions: parts.redis ? 'redis' : 'memory' },
    'web console serving',
  );
  return running;
}
