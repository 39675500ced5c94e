// Sign-in with the organisation's identity provider: OpenID Connect's authorization code flow
// with PKCE (S256), as a public client (no secret). The page goes to the provider's authorization
// endpoint and comes back to itself (/portal/) with a code, which it exchanges at the token
// endpoint for tokens kept in session.js's memory only.
//
// The PKCE verifier, state and nonce must outlive the trip to the provider and back, so they alone
// are kept in this tab's sessionStorage while the practitioner is away, and removed the moment the
// page returns, before the exchange. The code and state are taken out of the address bar and the
// history entry before anything else happens. Nothing about a child is ever stored.

const PENDING = "childlookup.signIn";

export class SignInError extends Error {
  constructor(why) {
    super(why);
    this.why = why; // "state" | "refused" | "exchange" | "token"
  }
}

// Where the provider sends the practitioner back: this page, without query or fragment.
export function redirectUri() {
  return new URL(".", location.href).href;
}

// First thing on load: a return from the provider ({code, state, error, pending}) or null. The
// code and state leave the URL at once; a pending sign-in is forgotten whether or not it returned.
export function takeReturn() {
  const params = new URLSearchParams(location.search);
  const returned = ["code", "state", "error"].some((name) => params.has(name));
  if (returned) history.replaceState(null, "", location.pathname);
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING));
  } catch {
    pending = null;
  }
  sessionStorage.removeItem(PENDING);
  if (!returned) return null;
  return { code: params.get("code"), state: params.get("state"), error: params.get("error"),
    pending };
}

function random(bytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function base64url(buffer) {
  const text = String.fromCharCode(...new Uint8Array(buffer));
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function claimsOf(jwt) {
  const part = String(jwt).split(".")[1];
  if (!part) throw new SignInError("token");
  const bytes = Uint8Array.from(atob(part.replace(/-/g, "+").replace(/_/g, "/")), (c) =>
    c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// Go to the provider's authorization endpoint; the page unloads.
export async function redirectToProvider(oidc) {
  const pending = { verifier: random(32), state: random(16), nonce: random(16) };
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(pending.verifier));
  const url = new URL(oidc.authorizationEndpoint);
  const params = {
    response_type: "code",
    client_id: oidc.clientId,
    redirect_uri: redirectUri(),
    scope: oidc.scopes,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: base64url(digest),
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  location.assign(url.href);
}

// Exchange the returned code for tokens: {token, user, expiresInS}, or a SignInError.
export async function exchange(oidc, returned) {
  const { pending } = returned;
  if (!pending || !returned.state || returned.state !== pending.state) {
    throw new SignInError("state");
  }
  if (returned.error || !returned.code) throw new SignInError("refused");
  let response;
  try {
    response = await fetch(oidc.tokenEndpoint, {
      method: "POST",
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: returned.code,
        redirect_uri: redirectUri(),
        client_id: oidc.clientId,
        code_verifier: pending.verifier,
      }),
    });
  } catch {
    throw new SignInError("exchange");
  }
  if (!response.ok) throw new SignInError("exchange");
  const tokens = await response.json();
  if (!tokens.access_token || String(tokens.token_type).toLowerCase() !== "bearer") {
    throw new SignInError("token");
  }
  // The ID token came straight from the token endpoint over TLS (OpenID Connect Core 3.1.3.7):
  // its issuer, audience and nonce are checked here; the gateway verifies the access token.
  const id = claimsOf(tokens.id_token);
  const audiences = [].concat(id.aud);
  if (id.iss !== oidc.issuer || !audiences.includes(oidc.clientId) || id.nonce !== pending.nonce) {
    throw new SignInError("token");
  }
  const access = claimsOf(tokens.access_token);
  const user = {
    name: access.name || id.name || access.sub,
    role: access[oidc.roleClaim],
    organisation: access[oidc.organisationClaim],
  };
  if (!user.role || !user.organisation) throw new SignInError("token");
  const expiresInS = Number(tokens.expires_in) || access.exp - Math.floor(Date.now() / 1000);
  return { token: tokens.access_token, user, expiresInS };
}
