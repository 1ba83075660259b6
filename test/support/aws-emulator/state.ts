/** What the AWS emulator remembers: roles (trust, limits, inline policies) and the sessions it issued. */

export interface WebIdentityTrust {
  /** The JWKS of the OIDC provider (the SPIFFE trust domain's JWT bundle). */
  jwks: () => { keys: object[] };
  /** The `aud` the role's trust policy requires (`<provider>:aud`). */
  audience: string;
  /** The OIDC provider's issuer URL the JWT's `iss` must equal; undefined accepts none (the dev CA mints none). */
  issuer?: string;
  /** The `sub` the role's trust policy requires (`<provider>:sub`), e.g. the broker's SPIFFE ID. */
  subject: string;
}

export interface RoleConfig {
  /** Principals (role ARNs) the trust policy lets call sts:AssumeRole. */
  trustedRoles?: string[];
  /** Set for a role assumed with AssumeRoleWithWebIdentity. */
  webIdentity?: WebIdentityTrust;
  /** MaxSessionDuration, 3600 by default. */
  maxSessionDuration?: number;
  /** The trust policy allows sts:TagSession (needed to pass Tags). Default true. */
  allowTagSession?: boolean;
  /** The trust policy allows sts:SetSourceIdentity (needed to pass SourceIdentity). Default true. */
  allowSetSourceIdentity?: boolean;
  /** The trust policy's sts:ExternalId condition. */
  externalId?: string;
}

export interface Role extends Required<
  Pick<RoleConfig, 'maxSessionDuration' | 'allowTagSession' | 'allowSetSourceIdentity'>
> {
  arn: string;
  name: string;
  account: string;
  config: RoleConfig;
  /** PutRolePolicy documents by policy name. */
  inlinePolicies: Map<string, string>;
}

export interface Session {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  roleArn: string;
  sessionName: string;
  assumedRoleArn: string;
  issuedAt: number;
  expiresAt: number;
  /** Issued to a caller that was itself an assumed-role session. */
  chained: boolean;
  sourceIdentity?: string;
  tags: Array<{ Key: string; Value: string }>;
  policy?: string;
  policyArns: string[];
  durationSeconds: number;
  externalId?: string;
}

const ROLE_ARN = /^arn:aws:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]+)$/;

export function parseRoleArn(arn: string): { account: string; name: string } | undefined {
  const m = ROLE_ARN.exec(arn);
  return m ? { account: m[1] as string, name: m[2] as string } : undefined;
}
