/**
 * Loading and running the Lua scripts of every Redis store (leases, revocation queue, approvals,
 * break-glass, budgets), BullMQ's habit: one file per script, `<name>-<numKeys>.lua`, with
 * `--- @include "x"` lines spliced in from `includes/x.lua`, registered once per client with
 * defineCommand. A script whose key count varies with the call is named `<name>-n.lua`; the
 * runner then passes the count first, as ioredis expects for a command defined without one.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { BrokerError, isBrokerError } from '../errors.js';
import type { RedisClient } from './connect.js';

const SCRIPT_FILE = /^([a-z][a-z-]*)-(\d+|n)\.lua$/;
const INCLUDE_LINE = /^--- @include "([a-z][a-z-]*)"$/gm;

export interface LuaScript {
  /** Undefined for a `-n` script: each call then passes its key count. */
  numberOfKeys?: number;
  lua: string;
}

/** Reads `dir`/<name>-<numKeys>.lua for every name; fails at startup, naming the path, if one is missing. */
export function loadLuaScripts<N extends string>(
  dir: URL,
  names: readonly N[],
  owner: string,
): Map<N, LuaScript> {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch (err) {
    throw new Error(`${owner}: cannot read Lua scripts from ${dir.pathname} (did the build copy lua/?)`, {
      cause: err,
    });
  }
  const scripts = new Map<N, LuaScript>();
  for (const file of files) {
    const match = SCRIPT_FILE.exec(file);
    if (!match) continue;
    const name = names.find((n) => n === match[1]);
    if (name === undefined) continue;
    const raw = readFileSync(new URL(file, dir), 'utf8');
    const lua = raw.replace(INCLUDE_LINE, (_line, include: string) =>
      readFileSync(new URL(`includes/${include}.lua`, dir), 'utf8'),
    );
    scripts.set(name, match[2] === 'n' ? { lua } : { numberOfKeys: Number(match[2]), lua });
  }
  const missing = names.filter((n) => !scripts.has(n));
  if (missing.length > 0) {
    throw new Error(`${owner}: missing Lua scripts in ${dir.pathname}: ${missing.join(', ')}`);
  }
  return scripts;
}

export type ScriptArg = string | number;
type ScriptCommand = (...args: ScriptArg[]) => Promise<unknown>;

/**
 * The scripts of one store on one client. Every Redis failure (refused connection, timeout,
 * script error) becomes the store's UNAVAILABLE error, so callers fail closed on any of them.
 * On a Cluster, ioredis sends each script to the node of its first key: the keys of one call
 * must share a slot (the store's `{prefix}` hash tag sees to that).
 */
export class ScriptRunner<N extends string> {
  private readonly variableKeys = new Set<N>();

  constructor(
    private readonly redis: RedisClient,
    /** Namespaces the ioredis command names, so they cannot clash with other users of the client. */
    private readonly commandPrefix: string,
    scripts: Map<N, LuaScript>,
    private readonly unavailable: (cause: unknown) => BrokerError,
  ) {
    for (const [name, script] of scripts) {
      if (script.numberOfKeys === undefined) this.variableKeys.add(name);
      // Redefining with the same source is harmless, so several stores may share one client.
      redis.defineCommand(this.commandName(name), script);
    }
  }

  run(name: N, keys: string[], args: ScriptArg[]): Promise<unknown> {
    const command = (this.redis as unknown as Record<string, ScriptCommand | undefined>)[
      this.commandName(name)
    ];
    if (command === undefined)
      return Promise.reject(this.unavailable(new Error(`script ${name} not defined`)));
    const head: ScriptArg[] = this.variableKeys.has(name) ? [keys.length] : [];
    return this.guard(() => command.call(this.redis, ...head, ...keys, ...args));
  }

  async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw isBrokerError(err) ? err : this.unavailable(err);
    }
  }

  private commandName(name: N): string {
    return this.commandPrefix + name.replace(/(^|-)([a-z])/g, (_m, _dash, c: string) => c.toUpperCase());
  }
}

/** HGETALL as a Lua script returns it: a flat [field, value, ...] array. */
export function fieldsOf(reply: unknown, malformed: (what: string) => BrokerError): Record<string, string> {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) throw malformed('expected a flat field/value array');
  const fields: Record<string, string> = {};
  for (let i = 0; i < reply.length; i += 2) {
    const [field, value] = [reply[i] as unknown, reply[i + 1] as unknown];
    if (typeof field !== 'string' || typeof value !== 'string') throw malformed('non-string field');
    fields[field] = value;
  }
  return fields;
}

/** Field readers that turn anything unexpected into the store's INTERNAL error, never a guess. */
export class FieldReader {
  constructor(
    private readonly fields: Record<string, string>,
    private readonly malformed: (what: string) => BrokerError,
  ) {}

  text(name: string): string {
    const value = this.fields[name];
    if (value === undefined) throw this.malformed(`missing field ${name}`);
    return value;
  }

  optionalText(name: string): string | undefined {
    return this.fields[name];
  }

  /** A non-negative safe integer (times, counts). */
  integer(name: string): number {
    const value = Number(this.text(name));
    if (!Number.isSafeInteger(value) || value < 0) throw this.malformed(`field ${name} is not an integer`);
    return value;
  }

  optionalInteger(name: string): number | undefined {
    return this.fields[name] === undefined ? undefined : this.integer(name);
  }

  json(name: string): unknown {
    try {
      return JSON.parse(this.text(name)) as unknown;
    } catch (err) {
      if (isBrokerError(err)) throw err;
      throw this.malformed(`field ${name} is not JSON`);
    }
  }

  oneOf<S extends string>(name: string, allowed: readonly S[]): S {
    const value = this.text(name);
    const found = allowed.find((s) => s === value);
    if (found === undefined) throw this.malformed(`field ${name} has unknown value ${value}`);
    return found;
  }
}

/** A key prefix becomes the `{prefix}` hash tag; a brace in it would move the tag and scatter keys. */
export function hashTag(prefix: string, invalid: (message: string) => BrokerError): string {
  if (prefix === '' || /[{}]/.test(prefix)) throw invalid('must be non-empty, without braces');
  return `{${prefix}}`;
}
