/**
 * STS actions (API reference 2011-06-15): AssumeRole and AssumeRoleWithWebIdentity, with the
 * validation real STS applies, in its order (parameter constraints -> caller -> trust -> session
 * duration -> packed size). Every session issued is recorded, so tests can read what STS received.
 */
import { randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { createLocalJWKSet, jwtVerify, errors as joseErrors } from 'jose';
import { AwsError, type QueryParams, accessDenied, constraint, validationError } from './query.js';
import { parseRoleArn, type Role, type Session } from './state.js';

const NAME = /^[\w+=,.@-]*$/;
const TAG = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
/** The emulator's stand-in for AWS's packed-size budget (the real format is not public). */
export const PACKED_LIMIT_BYTES = 2048;

export interface StsContext {
  roles: Map<string, Role>;
  sessions: Map<string, Session>;
  now: () => number;
}

function checkName(value: string | undefined, field: string, required: boolean): void {
  if (value === undefined) {
    if (required)
      throw validationError(
        `1 validation error detected: Value null at '${field}' failed to satisfy constraint: Member must not be null`,
      );
    return;
  }
  if (value.length < 2) throw constraint(value, field, 'have length greater than or equal to 2');
  if (value.length > 64) throw constraint(value, field, 'have length less than or equal to 64');
  if (!NAME.test(value)) throw constraint(value, field, 'satisfy regular expression pattern: [\\w+=,.@-]*');
}

function durationOf(p: QueryParams): number {
  const raw = p.get('DurationSeconds');
  if (raw === undefined) return 3600;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw validationError(`Invalid value for parameter DurationSeconds: ${raw}`);
  if (n < 900) throw constraint(raw, 'durationSeconds', 'have value greater than or equal to 900');
  if (n > 43_200) throw constraint(raw, 'durationSeconds', 'have value less than or equal to 43200');
  return n;
}

function tagsOf(p: QueryParams): Array<{ Key: string; Value: string }> {
  const tags = p.members('Tags').map((t) => ({ Key: t.Key ?? '', Value: t.Value ?? '' }));
  if (tags.length > 50)
    throw constraint(`[${tags.length} tags]`, 'tags', 'have length less than or equal to 50');
  const seen = new Set<string>();
  for (const t of tags) {
    if (t.Key.length < 1 || t.Key.length > 128)
      throw constraint(t.Key, 'tags.member.key', 'have length less than or equal to 128');
    if (!TAG.test(t.Key))
      throw constraint(
        t.Key,
        'tags.member.key',
        'satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+',
      );
    if (t.Value.length > 256)
      throw constraint(t.Value, 'tags.member.value', 'have length less than or equal to 256');
    if (!TAG.test(t.Value))
      throw constraint(
        t.Value,
        'tags.member.value',
        'satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*',
      );
    if (/^aws:/i.test(t.Key)) throw validationError('Tag keys starting with aws: are reserved for AWS use.');
    if (seen.has(t.Key.toLowerCase()))
      throw validationError('Duplicate tag keys found. Please note that Tag keys are case insensitive.');
    seen.add(t.Key.toLowerCase());
  }
  return tags;
}

function policyOf(p: QueryParams): string | undefined {
  const policy = p.get('Policy');
  if (policy === undefined) return undefined;
  if (policy.length > 2048) throw constraint('[policy]', 'policy', 'have length less than or equal to 2048');
  let doc: unknown;
  try {
    doc = JSON.parse(policy);
  } catch {
    throw new AwsError(400, 'MalformedPolicyDocument', 'Syntax errors in policy.');
  }
  if (!doc || typeof doc !== 'object' || !('Statement' in doc)) {
    throw new AwsError(400, 'MalformedPolicyDocument', 'Policy document must contain a Statement.');
  }
  return policy;
}

function packedSize(policy: string | undefined, tags: Session['tags'], policyArns: string[]): number {
  const packed = deflateRawSync(JSON.stringify({ policy: policy ?? '', tags, policyArns })).length;
  const percent = Math.ceil((100 * packed) / PACKED_LIMIT_BYTES);
  if (percent > 100) {
    throw new AwsError(
      400,
      'PackedPolicyTooLarge',
      `Packed size of session policy and tags consumes ${percent}% of allotted space.`,
    );
  }
  return percent;
}

function roleFor(ctx: StsContext, arn: string | undefined, action: string, caller: string): Role {
  if (arn === undefined)
    throw validationError(
      "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
    );
  if (arn.length < 20 || arn.length > 2048)
    throw constraint(arn, 'roleArn', 'have length greater than or equal to 20');
  const role = ctx.roles.get(arn);
  if (!role || !parseRoleArn(arn))
    throw accessDenied(`User: ${caller} is not authorized to perform: ${action} on resource: ${arn}`);
  return role;
}

function issue(
  ctx: StsContext,
  role: Role,
  fields: Omit<
    Session,
    | 'accessKeyId'
    | 'secretAccessKey'
    | 'sessionToken'
    | 'roleArn'
    | 'assumedRoleArn'
    | 'issuedAt'
    | 'expiresAt'
  >,
): Session {
  const now = ctx.now();
  const session: Session = {
    ...fields,
    accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
    sessionToken: `IQoJb3JpZ2luX2VjE${randomBytes(96).toString('base64')}`,
    roleArn: role.arn,
    assumedRoleArn: `arn:aws:sts::${role.account}:assumed-role/${role.name}/${fields.sessionName}`,
    issuedAt: now,
    // AWS reports expiry in whole seconds.
    expiresAt: Math.floor(now / 1000) * 1000 + fields.durationSeconds * 1000,
  };
  ctx.sessions.set(session.accessKeyId, session);
  return session;
}

function sessionResult(s: Session, role: Role, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    ...extra,
    Credentials: {
      AccessKeyId: s.accessKeyId,
      SecretAccessKey: s.secretAccessKey,
      SessionToken: s.sessionToken,
      Expiration: new Date(s.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
    AssumedRoleUser: { AssumedRoleId: `AROA${role.account}:${s.sessionName}`, Arn: s.assumedRoleArn },
    ...(s.sourceIdentity !== undefined ? { SourceIdentity: s.sourceIdentity } : {}),
  };
}

/** AssumeRole, signed by `caller` (an assumed-role session). */
export function assumeRole(ctx: StsContext, p: QueryParams, caller: Session): Record<string, unknown> {
  const sessionName = p.get('RoleSessionName');
  checkName(sessionName, 'roleSessionName', true);
  const sourceIdentity = p.get('SourceIdentity');
  checkName(sourceIdentity, 'sourceIdentity', false);
  if (sourceIdentity !== undefined && /^aws:/i.test(sourceIdentity))
    throw validationError('SourceIdentity cannot start with aws:');
  const durationSeconds = durationOf(p);
  const tags = tagsOf(p);
  const policy = policyOf(p);
  const policyArns = p.members('PolicyArns').map((m) => m.arn ?? '');
  if (policyArns.length > 10)
    throw constraint(`[${policyArns.length}]`, 'policyArns', 'have length less than or equal to 10');
  const externalId = p.get('ExternalId');
  const role = roleFor(ctx, p.get('RoleArn'), 'sts:AssumeRole', caller.assumedRoleArn);
  const denied = (action: string): AwsError =>
    accessDenied(
      `User: ${caller.assumedRoleArn} is not authorized to perform: ${action} on resource: ${role.arn}`,
    );
  if (!(role.config.trustedRoles ?? []).includes(caller.roleArn)) throw denied('sts:AssumeRole');
  if (tags.length > 0 && !role.allowTagSession) throw denied('sts:TagSession');
  if (sourceIdentity !== undefined && !role.allowSetSourceIdentity) throw denied('sts:SetSourceIdentity');
  if (role.config.externalId !== undefined && externalId !== role.config.externalId)
    throw denied('sts:AssumeRole');
  // A source identity, once set, cannot change down a chain of sessions.
  if (
    caller.sourceIdentity !== undefined &&
    sourceIdentity !== undefined &&
    sourceIdentity !== caller.sourceIdentity
  ) {
    throw denied('sts:SetSourceIdentity');
  }
  if (durationSeconds > role.maxSessionDuration) {
    throw validationError('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
  }
  // Role chaining: a session assuming a role gets at most one hour.
  if (durationSeconds > 3600) {
    throw validationError(
      'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.',
    );
  }
  const percent = packedSize(policy, tags, policyArns);
  const s = issue(ctx, role, {
    sessionName: sessionName as string,
    chained: true,
    ...((sourceIdentity ?? caller.sourceIdentity) !== undefined
      ? { sourceIdentity: sourceIdentity ?? caller.sourceIdentity }
      : {}),
    tags,
    ...(policy !== undefined ? { policy } : {}),
    policyArns,
    durationSeconds,
    ...(externalId !== undefined ? { externalId } : {}),
  });
  return sessionResult(s, role, { PackedPolicySize: percent });
}

/** The keys as SPIRE's OIDC discovery provider publishes them (`use: sig`, not the bundle's `jwt-svid`). */
export function oidcKeys(jwks: { keys: object[] }): { keys: object[] } {
  return { keys: jwks.keys.map((k) => ({ ...k, use: 'sig' })) };
}

/** AssumeRoleWithWebIdentity: unsigned; the JWT is verified against the role's OIDC provider. */
export async function assumeRoleWithWebIdentity(
  ctx: StsContext,
  p: QueryParams,
): Promise<Record<string, unknown>> {
  const sessionName = p.get('RoleSessionName');
  checkName(sessionName, 'roleSessionName', true);
  const durationSeconds = durationOf(p);
  const token = p.get('WebIdentityToken');
  if (token === undefined || token.length < 4 || token.length > 20_000) {
    throw constraint('[token]', 'webIdentityToken', 'have length between 4 and 20000');
  }
  const role = roleFor(ctx, p.get('RoleArn'), 'sts:AssumeRoleWithWebIdentity', 'web identity');
  const trust = role.config.webIdentity;
  if (!trust) throw accessDenied('Not authorized to perform sts:AssumeRoleWithWebIdentity');
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token, createLocalJWKSet(oidcKeys(trust.jwks()) as never), {
      currentDate: new Date(ctx.now()),
    }));
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired)
      throw new AwsError(
        400,
        'ExpiredTokenException',
        'Token expired: current date/time must be before the expiration date/time.',
      );
    throw new AwsError(
      400,
      'InvalidIdentityToken',
      'The web identity token that was passed could not be validated by AWS.',
    );
  }
  if (trust.issuer !== undefined && claims.iss !== trust.issuer) {
    throw new AwsError(
      400,
      'InvalidIdentityToken',
      `No OpenIDConnect provider found in your account for ${String(claims.iss)}`,
    );
  }
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(trust.audience) || claims.sub !== trust.subject) {
    throw accessDenied('Not authorized to perform sts:AssumeRoleWithWebIdentity');
  }
  if (durationSeconds > role.maxSessionDuration) {
    throw validationError('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
  }
  const s = issue(ctx, role, {
    sessionName: sessionName as string,
    chained: false,
    tags: [],
    policyArns: [],
    durationSeconds,
  });
  return sessionResult(s, role, {
    SubjectFromWebIdentityToken: claims.sub,
    Audience: trust.audience,
    Provider: 'spiffe',
  });
}
