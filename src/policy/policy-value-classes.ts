/**
 * Value classes: context keys whose every use in a slice's policies is a comparison with a literal
 * (`context.ttlSeconds <= 900`, `context.environment == "prod"`, `["a", "b"].contains(context.x)`).
 * For such a key, Cedar can tell two values apart only by how they compare with those literals, so
 * two requests whose values fall in the same class (the same side of every literal, or equal to the
 * same one) get the same answer: same decision, same deciding policies, same errors. The answer
 * memory of policy-projection.ts keys a call by class for these keys, so a request that differs
 * from an earlier one only in, say, a TTL on the same side of every limit is answered from memory.
 *
 * Read statically from Cedar's JSON policy format, erring towards "opaque": a use not recognised
 * here (arithmetic, `like`, a set operation on the value, a comparison with anything but a literal,
 * the context used whole) leaves the key's value in the key as it is. Only integers (Cedar Longs)
 * and strings are classed; any other value stays as it is.
 */

/** The literals a context key is compared with. */
export interface Literals {
  readonly numbers: readonly number[];
  readonly strings: readonly string[];
}

/** Context keys compared with literals only, and those literals. */
export type ValueUses = ReadonlyMap<string, Literals>;

const ORDERINGS = new Set(['<', '<=', '>', '>=']);
const EQUALITIES = new Set(['==', '!=']);

interface Acc {
  literals: Map<string, { numbers: Set<number>; strings: Set<string> }>;
  opaque: Set<string>;
  whole: boolean;
}

/** The keys a policy's conditions (`conditions[].body`) only compare with literals. */
export function valueUsesOf(bodies: readonly unknown[]): ValueUses {
  const acc: Acc = { literals: new Map(), opaque: new Set(), whole: false };
  for (const body of bodies) walk(body, acc);
  return acc.whole ? new Map() : classed(acc);
}

/**
 * Several policies' uses: a key is classed only where every policy that reads it (`reads`) classes
 * it, with all their literals.
 */
export function unionValueUses(
  all: ReadonlyArray<{ uses: ValueUses; reads: (key: string) => boolean }>,
): ValueUses {
  const keys = new Set(all.flatMap((p) => [...p.uses.keys()]));
  const out = new Map<string, Literals>();
  for (const key of keys) {
    const readers = all.filter((p) => p.reads(key));
    if (readers.some((p) => !p.uses.has(key))) continue;
    const literals = readers.map((p) => p.uses.get(key) as Literals);
    out.set(key, {
      numbers: sortedNumbers(literals.flatMap((l) => l.numbers)),
      strings: [...new Set(literals.flatMap((l) => l.strings))],
    });
  }
  return out;
}

/**
 * The context as the answer memory keys it: each classed key's value replaced by `{c: class}`
 * (an integer or a string) or wrapped as `{v: value}` (anything else), so no value can pass for a
 * class; the context itself when nothing is classed.
 */
export function classedContext(
  context: Readonly<Record<string, unknown>>,
  uses: ValueUses | undefined,
): Record<string, unknown> {
  if (uses === undefined || uses.size === 0) return context as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(context)) {
    const literals = uses.get(key);
    out[key] = literals === undefined ? value : classOf(value, literals);
  }
  return out;
}

function classOf(value: unknown, literals: Literals): unknown {
  if (typeof value === 'number' && Number.isSafeInteger(value)) {
    return { c: `n${literals.numbers.map((n) => (value < n ? '<' : value === n ? '=' : '>')).join('')}` };
  }
  if (typeof value === 'string') return { c: literals.strings.includes(value) ? `s${value}` : 'o' };
  return { v: value };
}

function classed(acc: Acc): ValueUses {
  const out = new Map<string, Literals>();
  for (const [key, { numbers, strings }] of acc.literals) {
    if (!acc.opaque.has(key)) out.set(key, { numbers: sortedNumbers([...numbers]), strings: [...strings] });
  }
  return out;
}

function walk(node: unknown, acc: Acc): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, acc);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const record = node as Record<string, unknown>;
  if (record.Var === 'context') {
    acc.whole = true;
    return;
  }
  if (comparedWithLiterals(record, acc)) return;
  const has = record.has as { left?: unknown } | undefined;
  if (has !== undefined && isContext(has.left)) return; // presence: the call's shape, not its value
  const key = contextKey(record);
  if (key !== undefined) {
    acc.opaque.add(key);
    return;
  }
  for (const value of Object.values(record)) walk(value, acc);
}

/** `context.k OP literal` (either side), or `[literals].contains(context.k)`: noted, true. */
function comparedWithLiterals(record: Record<string, unknown>, acc: Acc): boolean {
  for (const [op, args] of Object.entries(record)) {
    const { left, right } = (args ?? {}) as { left?: unknown; right?: unknown };
    if (ORDERINGS.has(op) || EQUALITIES.has(op)) {
      const key = contextKey(left) ?? contextKey(right);
      const literal = literalOf(contextKey(left) === undefined ? left : right, EQUALITIES.has(op));
      if (key === undefined || literal === undefined) return false;
      note(acc, key, [literal]);
      return true;
    }
    if (op === 'contains') {
      const key = contextKey(right);
      const literals = setLiterals(left);
      if (key === undefined || literals === undefined) return false;
      note(acc, key, literals);
      return true;
    }
  }
  return false;
}

function note(acc: Acc, key: string, literals: ReadonlyArray<number | string>): void {
  let known = acc.literals.get(key);
  if (known === undefined) {
    known = { numbers: new Set(), strings: new Set() };
    acc.literals.set(key, known);
  }
  for (const l of literals) {
    if (typeof l === 'number') known.numbers.add(l);
    else known.strings.add(l);
  }
}

/** `context.k` → k */
function contextKey(node: unknown): string | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const access = (node as Record<string, unknown>)['.'] as { left?: unknown; attr?: unknown } | undefined;
  return access !== undefined && isContext(access.left) && typeof access.attr === 'string'
    ? access.attr
    : undefined;
}

function isContext(node: unknown): boolean {
  return node !== null && typeof node === 'object' && (node as Record<string, unknown>).Var === 'context';
}

/** An integer literal, or a string literal where strings compare (== and !=). */
function literalOf(node: unknown, stringsToo: boolean): number | string | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const value = (node as Record<string, unknown>).Value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (stringsToo && typeof value === 'string') return value;
  return undefined;
}

function setLiterals(node: unknown): Array<number | string> | undefined {
  if (node === null || typeof node !== 'object') return undefined;
  const items = (node as Record<string, unknown>).Set;
  if (!Array.isArray(items)) return undefined;
  const literals = items.map((item) => literalOf(item, true));
  return literals.every((l) => l !== undefined) ? (literals as Array<number | string>) : undefined;
}

function sortedNumbers(numbers: readonly number[]): number[] {
  return [...new Set(numbers)].sort((a, b) => a - b);
}
