/**
 * A real redis-server that speaks only TLS and knows only the users of the shipped ACL file
 * (deploy/redis/users.acl.in, with generated passwords), with the persistence settings the deploy
 * examples use. Its certificate comes from a LocalCa, so tests hand the broker a CA file as an
 * operator would.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/dev/redis-process.js';
import { LocalCa } from '../../src/dev/local-ca.js';
import { packageRoot } from '../../src/package-root.js';
import { findOrInstallRedisServer } from './redis-server.js';

export interface TlsRedis {
  /** `rediss://localhost:<port>` */
  url: string;
  caFile: string;
  /** The broker's ACL user and its password file. */
  username: string;
  passwordFile: string;
  password: string;
  /** A client logged in as the ACL file's admin user. */
  admin(): Redis;
  stop(): Promise<void>;
}

// Redis 7.0 refuses ACL rules for commands it does not have; these arrived in 7.2.
const NEWER_THAN_7_0 = ['+waitaof', '+client|setinfo'];

function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der)
    .toString('base64')
    .replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

function serverVersion(binary: string): [number, number] {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout;
  const m = /v=(\d+)\.(\d+)/.exec(out);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** The shipped ACL file with password hashes filled in, trimmed to what this server knows. */
export function renderAcl(passwords: { broker: string; admin: string }, version: [number, number]): string {
  const sha = (p: string): string => createHash('sha256').update(p).digest('hex');
  let text = readFileSync(join(packageRoot(), 'deploy/redis/users.acl.in'), 'utf8')
    .replace('@SVID_BROKER_PASSWORD_SHA256@', sha(passwords.broker))
    .replace('@ADMIN_PASSWORD_SHA256@', sha(passwords.admin));
  if (version[0] === 7 && version[1] < 2) {
    for (const rule of NEWER_THAN_7_0) text = text.replace(` ${rule}`, '');
  }
  return text;
}

export async function startTlsRedis(): Promise<TlsRedis> {
  const binary = findOrInstallRedisServer();
  const dir = mkdtempSync(join(tmpdir(), 'svb-redis-tls-'));
  const ca = await LocalCa.create('redis.test');
  const cert = await ca.issueX509Svid('spiffe://redis.test/redis', { dnsNames: ['localhost'] });
  const files = {
    cert: join(dir, 'redis.crt'),
    key: join(dir, 'redis.key'),
    ca: join(dir, 'ca.crt'),
    acl: join(dir, 'users.acl'),
    password: join(dir, 'broker-password'),
  };
  writeFileSync(files.cert, cert.certChain.map((der) => pem('CERTIFICATE', der)).join(''));
  writeFileSync(files.key, pem('PRIVATE KEY', cert.privateKey), { mode: 0o600 });
  writeFileSync(
    files.ca,
    ca
      .authorities()
      .map((der) => pem('CERTIFICATE', der))
      .join(''),
  );
  const passwords = {
    broker: randomBytes(18).toString('base64url'),
    admin: randomBytes(18).toString('base64url'),
  };
  writeFileSync(files.acl, renderAcl(passwords, serverVersion(binary)));
  writeFileSync(files.password, `${passwords.broker}\n`, { mode: 0o600 });

  const port = await freePort();
  // The settings deploy/compose gives Redis: AOF fsynced on every write, never evict a key.
  const args = [
    ...['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '-::1'],
    ...['--tls-cert-file', files.cert, '--tls-key-file', files.key, '--tls-ca-cert-file', files.ca],
    ...['--tls-auth-clients', 'no', '--aclfile', files.acl, '--dir', dir, '--save', ''],
    ...['--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'],
    ...['--loglevel', 'warning'],
  ];
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const url = `rediss://localhost:${port}`;
  const admin = (): Redis =>
    new Redis(url, {
      username: 'admin',
      password: passwords.admin,
      tls: { ca: readFileSync(files.ca, 'utf8') },
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      lazyConnect: true,
    });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForTls(admin, child, () => log);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    caFile: files.ca,
    username: 'svid-broker',
    passwordFile: files.password,
    password: passwords.broker,
    admin,
    stop,
  };
}

async function waitForTls(admin: () => Redis, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`redis-server (TLS) exited: ${log()}`);
    const client = admin();
    try {
      await client.connect();
      await client.ping();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      client.disconnect();
    }
  }
  throw new Error(`redis-server (TLS) did not answer: ${log()}`);
}
