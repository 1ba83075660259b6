/**
 * RFC 8785 canonical JSON (JCS): one text per JSON value, whatever the key order. Shared by the audit
 * hash chain (what a record's hash covers) and the approval digest (what an approval is bound to), so
 * it lives below both.
 */
import canonicalizeExport from 'canonicalize';

type Canonicalize = (input: unknown) => string | undefined;
// The package is CommonJS with `export default` typings: under NodeNext TypeScript types the default
// import as the module object, while Node hands over module.exports, the function itself.
const canonicalize: Canonicalize =
  typeof canonicalizeExport === 'function' ? canonicalizeExport : canonicalizeExport.default;

/** The canonical text of `value`, or undefined when JSON cannot represent it. */
export function tryCanonicalJson(value: unknown): string | undefined {
  return canonicalize(value);
}

/** RFC 8785 canonical JSON of a JSON value (throws on values JSON cannot represent). */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('canonicalJson: value has no JSON representation');
  return text;
}
