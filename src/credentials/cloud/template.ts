/**
 * Role catalog templates: `{{environment}}`, `{{task_id}}`, `{{lease_id}}`, `{{agent}}` and
 * `{{role}}` in the strings of a session policy or a tag value. Substitution happens in parsed
 * JSON values, never in JSON text, so no value can change a policy's structure.
 */
export const TEMPLATE_VARS = ['environment', 'task_id', 'lease_id', 'agent', 'role'] as const;
export type TemplateVars = Record<(typeof TEMPLATE_VARS)[number], string>;

const PLACEHOLDER = /\{\{\s*([a-z_]+)\s*\}\}/g;

/** Placeholders in `text` that are not template variables (for startup validation). */
export function unknownPlaceholders(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)]
    .map((m) => m[1] ?? '')
    .filter((name) => !(TEMPLATE_VARS as readonly string[]).includes(name));
}

export function renderString(text: string, vars: TemplateVars): string {
  return text.replace(PLACEHOLDER, (whole, name: string) =>
    (TEMPLATE_VARS as readonly string[]).includes(name) ? vars[name as keyof TemplateVars] : whole,
  );
}

/** Renders every string (keys and values) inside a JSON value. */
export function renderJson(value: unknown, vars: TemplateVars): unknown {
  if (typeof value === 'string') return renderString(value, vars);
  if (Array.isArray(value)) return value.map((v) => renderJson(v, vars));
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [renderString(k, vars), renderJson(v, vars)]),
    );
  }
  return value;
}

/** Every string of a JSON value, for validation. */
export function jsonStrings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(jsonStrings);
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => [k, ...jsonStrings(v)]);
  }
  return [];
}
