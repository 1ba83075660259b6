/**
 * RFC 8785 canonical JSON (JCS): one text per JSON value, whatever the key order. Shared by the audit
 * hash chain (what a record's hash covers) and the approval digest (what an approval is bound to), so
 * it lives below both.
 *
 * Plain JSON data (strings, finite numbers, booleans, null, arrays, plain objects) takes a fast path:
 * a copy with every object's keys inserted in sorted order, handed to JSON.stringify. JCS sorts keys
 * by UTF-16 code units (what Array.prototype.sort does) and writes numbers and strings as ES2019's
 * JSON.stringify does, so the text is the same; the `canonicalize` package built it by string
 * concatenation, a third of an audit record's cost. Anything else (undefined, toJSON, class
 * instances, non-finite numbers) and any key starting with a digit (JavaScript orders array-index
 * keys numerically, whatever the insertion order) goes to the package, so its semantics hold.
 */
import canonicalizeExport from 'canonicalize';

type Canonicalize = (input: unknown) => string | undefined;
// The package is CommonJS with `export default` typings: under NodeNext TypeScript types the default
// import as the module object, while Node hands over module.exports, the function itself.
const canonicalize: Canonicalize =
  typeof canonicalizeExport === 'function' ? canonicalizeExport : canonicalizeExport.default;

/** Marks a value the fast path does not take. */
const NOT_PLAIN = Symbol('not plain JSON');

/** The canonical text of `value`, or undefined when JSON cannot represent it. */
export function tryCanonicalJson(value: unknown): string | undefined {
  const sorted = sortedCopy(value);
  return sorted === NOT_PLAIN ? canonicalize(value) : JSON.stringify(sorted);
}

/** RFC 8785 canonical JSON of a JSON value (throws on values JSON cannot represent). */
export function canonicalJson(value: unknown): string {
  const text = tryCanonicalJson(value);
  if (text === undefined) throw new Error('canonicalJson: value has no JSON representation');
  return text;
}

/** `value` with every object's keys in sorted order, or NOT_PLAIN. */
function sortedCopy(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : NOT_PLAIN;
    case 'object':
      if (value === null) return value;
      return Array.isArray(value) ? sortedArray(value) : sortedObject(value);
    default:
      return NOT_PLAIN;
  }
}

function sortedArray(values: readonly unknown[]): unknown {
  const out = new Array<unknown>(values.length);
  for (let i = 0; i < values.length; i++) {
    if (!(i in values)) return NOT_PLAIN; // a hole: the package writes null
    const item = sortedCopy(values[i]);
    if (item === NOT_PLAIN) return NOT_PLAIN;
    out[i] = item;
  }
  return out;
}

function sortedObject(object: object): unknown {
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto !== Object.prototype && proto !== null) return NOT_PLAIN;
  const record = object as Record<string, unknown>;
  if (typeof record.toJSON === 'function') return NOT_PLAIN; // even a non-enumerable one
  const keys = Object.keys(record).sort();
  // No prototype, so a `__proto__` key is an own property like any other.
  const out = Object.create(null) as Record<string, unknown>;
  for (const key of keys) {
    if (startsWithDigit(key)) return NOT_PLAIN;
    const item = sortedCopy(record[key]);
    if (item === NOT_PLAIN) return NOT_PLAIN;
    out[key] = item;
  }
  return out;
}

function startsWithDigit(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 48 && c <= 57;
}
