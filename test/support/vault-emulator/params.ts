/**
 * Request parameters the way Vault's framework reads them: durations in seconds or Go syntax,
 * weakly typed scalars, and a declared schema per endpoint so unknown parameters become warnings.
 */
import { badRequest } from './errors.js';

const UNIT_SECONDS: Readonly<Record<string, number>> = {
  ns: 1e-9,
  us: 1e-6,
  µs: 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
};
const DURATION_PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/y;

/**
 * Vault's parseutil.ParseDurationSecond: a number or a digit string is seconds, anything else a Go
 * duration ("15m", "1h30m", plus Vault's "d"). Returns undefined when it cannot be parsed.
 */
export function parseDurationSeconds(input: unknown): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) ? Math.trunc(input) : undefined;
  if (typeof input !== 'string') return undefined;
  let rest = input.trim();
  if (rest === '') return 0;
  if (/^-?\d+$/.test(rest)) return Number.parseInt(rest, 10);
  let sign = 1;
  if (rest.startsWith('-')) {
    sign = -1;
    rest = rest.slice(1);
  }
  let total = 0;
  let consumed = 0;
  DURATION_PART.lastIndex = 0;
  for (let m = DURATION_PART.exec(rest); m !== null; m = DURATION_PART.exec(rest)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] ?? ''] ?? 0);
    consumed = DURATION_PART.lastIndex;
  }
  if (consumed === 0 || consumed !== rest.length) return undefined;
  return sign * Math.trunc(total);
}

/** A TTL from emulator configuration; throws (a test bug) rather than answering 400. */
export function configSeconds(value: number | string | undefined, what: string): number {
  if (value === undefined) return 0;
  const seconds = parseDurationSeconds(value);
  if (seconds === undefined || seconds < 0)
    throw new Error(`vault-emulator: invalid ${what}: ${String(value)}`);
  return seconds;
}

/** Go's time.Duration formatting, which Vault uses in its TTL warnings ("768h0m0s"). */
export function goDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** The warning Vault's framework adds when it caps a TTL. */
export function ttlCappedWarning(requested: number, max: number): string {
  return `TTL of "${goDuration(requested)}" exceeded the effective max_ttl of "${goDuration(max)}"; TTL value is capped accordingly`;
}

export type FieldType = 'string' | 'bool' | 'int' | 'duration' | 'strings' | 'kv' | 'object';
export type FieldSchema = Readonly<Record<string, FieldType>>;

function conversionError(name: string, value: unknown, type: string): Error {
  return badRequest(`error converting input ${JSON.stringify(value)} for field "${name}": expected ${type}`);
}

const TRUE_WORDS = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE_WORDS = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/**
 * One request's parameters (JSON body, or the query for reads) read against the endpoint's schema.
 * Getters return undefined for absent or null values and answer 400 for values of the wrong type.
 */
export class Fields {
  constructor(
    private readonly raw: Readonly<Record<string, unknown>>,
    private readonly schema: FieldSchema,
  ) {}

  /** Parameters the endpoint does not know, sorted; Vault ignores them with a warning. */
  unknownNames(): string[] {
    return Object.keys(this.raw)
      .filter((k) => !Object.hasOwn(this.schema, k))
      .sort();
  }

  private value(name: string, type: FieldType): unknown {
    // Reading an undeclared field is an emulator bug: the warning list would be wrong.
    if (this.schema[name] !== type)
      throw new Error(`vault-emulator: field ${name} is not declared as ${type}`);
    const v = this.raw[name];
    return v === null ? undefined : v;
  }

  string(name: string): string | undefined {
    const v = this.value(name, 'string');
    if (v === undefined) return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw conversionError(name, v, 'string');
  }

  bool(name: string): boolean | undefined {
    const v = this.value(name, 'bool');
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
    if (typeof v === 'string' && TRUE_WORDS.has(v)) return true;
    if (typeof v === 'string' && FALSE_WORDS.has(v)) return false;
    throw conversionError(name, v, 'bool');
  }

  int(name: string): number | undefined {
    const v = this.value(name, 'int');
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number.parseInt(v, 10);
    throw conversionError(name, v, 'int');
  }

  duration(name: string): number | undefined {
    const v = this.value(name, 'duration');
    if (v === undefined) return undefined;
    const seconds = parseDurationSeconds(v);
    if (seconds === undefined) throw conversionError(name, v, 'duration');
    return seconds;
  }

  /** A list of strings, or Vault's comma-separated string form. */
  strings(name: string): string[] | undefined {
    const v = this.value(name, 'strings');
    if (v === undefined) return undefined;
    if (typeof v === 'string') {
      return v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    }
    if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) {
      return v.map((x) => String(x));
    }
    throw conversionError(name, v, 'list of strings');
  }

  /** A string-to-string map; scalar values are converted as Vault's weak decoding does. */
  kv(name: string): Record<string, string> | undefined {
    const v = this.value(name, 'kv');
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw conversionError(name, v, 'map of strings');
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
      else throw conversionError(name, v, 'map of strings');
    }
    return out;
  }

  object(name: string): Record<string, unknown> | undefined {
    const v = this.value(name, 'object');
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw conversionError(name, v, 'object');
    return { ...(v as Record<string, unknown>) };
  }
}
