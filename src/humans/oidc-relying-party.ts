/**
 * The broker as an OpenID Connect relying party (openid-client): authorization code flow with
 * PKCE (S256), `state` and `nonce`; the ID token is verified by openid-client (signature against
 * the IdP's JWKS, issuer, audience, expiry, nonce, and `auth_time` against `max_age` on a
 * step-up), and userinfo is fetched with the access token and checked to name the same subject.
 * What the person is (sub, email, groups) comes from those two, nothing else. openid-client loads
 * in discover(), so a broker without the console never loads it.
 */
import type * as OpenidClient from 'openid-client';
import { unauthenticated } from '../errors.js';
import type { HumanIdentity } from '../identity/types.js';
import type { PendingSignIn } from './session-store.js';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  /** Absent: a public client (PKCE only). */
  clientSecret?: string;
  redirectUrl: string;
  scopes: readonly string[];
  groupsClaim: string;
  /** Sent as `acr_values` on a step-up, when not empty. */
  acrValues: readonly string[];
}

/** The reason every failed sign-in is refused with; details go to the log only. */
export const SIGN_IN_FAILED = 'sign_in_failed';

export class OidcRelyingParty {
  private constructor(
    private readonly oidc: typeof OpenidClient,
    private readonly config: OpenidClient.Configuration,
    private readonly settings: OidcSettings,
  ) {}

  /**
   * Discovers the IdP (`<issuer>/.well-known/openid-configuration`). Plain http is accepted only
   * for a loopback issuer (a test or dev IdP on this machine).
   */
  static async discover(settings: OidcSettings): Promise<OidcRelyingParty> {
    const oidc = await import('openid-client');
    const issuer = new URL(settings.issuer);
    const auth = settings.clientSecret ? oidc.ClientSecretBasic(settings.clientSecret) : oidc.None();
    const insecure = issuer.protocol === 'http:' && isLoopback(issuer.hostname);
    const config = await oidc.discovery(
      issuer,
      settings.clientId,
      undefined,
      auth,
      insecure ? { execute: [oidc.allowInsecureRequests] } : undefined,
    );
    return new OidcRelyingParty(oidc, config, settings);
  }

  /** Where to send the browser, and what the callback needs to finish (keep it server-side). */
  async startSignIn(input: {
    returnTo: string;
    stepUp: boolean;
    browserKey: string;
  }): Promise<{ url: string; state: string; pending: PendingSignIn }> {
    const codeVerifier = this.oidc.randomPKCECodeVerifier();
    const state = this.oidc.randomState();
    const nonce = this.oidc.randomNonce();
    const params: Record<string, string> = {
      redirect_uri: this.settings.redirectUrl,
      scope: this.settings.scopes.join(' '),
      code_challenge: await this.oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    // A step-up asks the IdP to authenticate the person again now, whatever its own session says.
    if (input.stepUp) params.max_age = '0';
    if (input.stepUp && this.settings.acrValues.length) params.acr_values = this.settings.acrValues.join(' ');
    const url = this.oidc.buildAuthorizationUrl(this.config, params).href;
    const pending: PendingSignIn = {
      codeVerifier,
      nonce,
      returnTo: input.returnTo,
      browserKey: input.browserKey,
      ...(input.stepUp ? { maxAge: 0 } : {}),
    };
    return { url, state, pending };
  }

  /** Exchanges the code and verifies what came back; throws UNAUTHENTICATED `sign_in_failed`. */
  async finishSignIn(callbackUrl: URL, state: string, pending: PendingSignIn): Promise<HumanIdentity> {
    try {
      const tokens = await this.oidc.authorizationCodeGrant(this.config, callbackUrl, {
        pkceCodeVerifier: pending.codeVerifier,
        expectedState: state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
        ...(pending.maxAge !== undefined ? { maxAge: pending.maxAge } : {}),
      });
      const claims = tokens.claims();
      if (!claims) throw new Error('no ID token');
      const userinfo = await this.oidc.fetchUserInfo(this.config, tokens.access_token, claims.sub);
      return this.identityOf({ ...userinfo, ...claims });
    } catch (err) {
      throw unauthenticated(
        SIGN_IN_FAILED,
        'sign-in failed: the identity provider response was not accepted',
        err,
      );
    }
  }

  /** ID token claims win over userinfo for sub, auth_time and acr; groups and email may come from either. */
  private identityOf(claims: Record<string, unknown>): HumanIdentity {
    const groups = claims[this.settings.groupsClaim];
    return {
      sub: String(claims.sub),
      email: typeof claims.email === 'string' ? claims.email : '',
      groups: Array.isArray(groups)
        ? groups.filter((g): g is string => typeof g === 'string' && g !== '')
        : [],
      // No auth_time: the sign-in's age is unknown, so it counts as stale for step-up (fail closed).
      authTime: typeof claims.auth_time === 'number' ? claims.auth_time : 0,
      acr: typeof claims.acr === 'string' ? claims.acr : '',
    };
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]';
}
