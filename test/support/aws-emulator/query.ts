/**
 * The AWS Query protocol as STS and IAM speak it: form-encoded requests (`Action`, `Version`,
 * lists as `Name.member.N`, structures as `Name.member.N.Field`), XML answers, and AWS's error
 * envelope (`<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`).
 */
import { randomUUID } from 'node:crypto';

export class AwsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly type: 'Sender' | 'Receiver' = status >= 500 ? 'Receiver' : 'Sender',
  ) {
    super(message);
  }
}

export const validationError = (message: string): AwsError => new AwsError(400, 'ValidationError', message);
export const accessDenied = (message: string): AwsError => new AwsError(403, 'AccessDenied', message);

/** AWS's wording for a failed member constraint. */
export function constraint(value: string, field: string, rule: string): AwsError {
  return validationError(
    `1 validation error detected: Value '${value}' at '${field}' failed to satisfy constraint: Member must ${rule}`,
  );
}

export class QueryParams {
  constructor(private readonly params: URLSearchParams) {}

  get(name: string): string | undefined {
    return this.params.get(name) ?? undefined;
  }

  /** `Tags.member.1.Key` ... as a list of structures. */
  members(name: string): Array<Record<string, string>> {
    const out: Array<Record<string, string>> = [];
    for (const [key, value] of this.params) {
      const m = new RegExp(`^${name}\\.member\\.(\\d+)(?:\\.(\\w+))?$`).exec(key);
      if (!m) continue;
      const i = Number(m[1]) - 1;
      out[i] ??= {};
      (out[i] as Record<string, string>)[m[2] ?? 'value'] = value;
    }
    return out.filter((x) => x !== undefined);
  }
}

export function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `{a: 'x', b: {c: 'y'}}` -> `<a>x</a><b><c>y</c></b>` (undefined fields are left out). */
export function toXml(value: Record<string, unknown>): string {
  return Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) =>
      typeof v === 'object' && v !== null
        ? `<${k}>${toXml(v as Record<string, unknown>)}</${k}>`
        : `<${k}>${xmlEscape(String(v))}</${k}>`,
    )
    .join('');
}

export function resultXml(
  action: string,
  namespace: string,
  result: Record<string, unknown> | undefined,
): string {
  const body = result ? `<${action}Result>${toXml(result)}</${action}Result>` : '';
  return `<${action}Response xmlns="${namespace}">${body}<ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`;
}

export function errorXml(err: AwsError, namespace: string): string {
  return `<ErrorResponse xmlns="${namespace}"><Error><Type>${err.type}</Type><Code>${err.code}</Code><Message>${xmlEscape(err.message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
}
