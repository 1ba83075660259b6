/**
 * `humans:` in the config: people sign in at the web console through an OpenID provider (the
 * broker is its relying party), and the console's own TLS listener. Off unless
 * `humans.console.listen` is set; then `humans.oidc` and the certificate files are required.
 */
import { z } from 'zod';

const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, 'expected host:port (port 0 picks a free one)');

const httpUrl = z.string().refine((u) => {
  try {
    return ['https:', 'http:'].includes(new URL(u).protocol);
  } catch {
    return false;
  }
}, 'expected an http(s) URL');

export const humansConfigSchema = z
  .object({
    oidc: z
      .object({
        /** The OpenID provider's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`). */
        issuer: httpUrl.optional(),
        clientId: z.string().min(1).optional(),
        /** A file holding the client secret; without one the broker is a public client (PKCE only). */
        clientSecretFile: z.string().min(1).optional(),
        /** Where the IdP sends people back: `https://<console host>/auth/callback`. */
        redirectUrl: httpUrl.optional(),
        scopes: z.array(z.string().min(1)).default(['openid', 'email', 'profile']),
        /** The claim (ID token or userinfo) whose values are the person's HumanGroups. */
        groupsClaim: z.string().min(1).default('groups'),
        /** Approving restricted or production-destructive requests and granting break-glass need a sign-in this fresh. */
        stepUpMaxAgeSeconds: z.number().int().min(0).max(86_400).default(300),
        /** When set, step-up asks for these `acr_values` and accepts only a sign-in with one of them. */
        acrValues: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .prefault({}),
    /** A console session ends this long after sign-in (and at sign-out). */
    sessionTtlSeconds: z.number().int().min(60).max(86_400).default(3600),
    /** Environments whose destructive and admin changes need step-up to approve. */
    productionEnvironments: z.array(z.string().min(1)).default(['prod']),
    console: z
      .object({
        /** The console's HTTPS listener; the console is off when unset. */
        listen: listenAddress.optional(),
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((h, ctx) => {
    if (h.console.listen === undefined) return;
    const required: Array<[string[], unknown]> = [
      [['oidc', 'issuer'], h.oidc.issuer],
      [['oidc', 'clientId'], h.oidc.clientId],
      [['oidc', 'redirectUrl'], h.oidc.redirectUrl],
      [['console', 'certFile'], h.console.certFile],
      [['console', 'keyFile'], h.console.keyFile],
    ];
    for (const [path, value] of required) {
      if (value === undefined)
        ctx.addIssue({ code: 'custom', path, message: 'is required with humans.console.listen' });
    }
    if (!h.oidc.scopes.includes('openid')) {
      ctx.addIssue({ code: 'custom', path: ['oidc', 'scopes'], message: 'must include openid' });
    }
  });

export type HumansConfig = z.infer<typeof humansConfigSchema>;
