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
const RETURNED = ["code", "state", "error"];
// A provider that takes the code and never answers must not leave the page waiting in silence.
const EXCHANGE_TIMEOUT_MS = 10 * 1000;

export class SignInError extends Error {
  constructor(why) {
    super(why);
    this.why = why; // "state" | "refused" | "fragment" | "exchange" | "token"
  }
}

// Where the provider sends the practitioner back: this page, without query or fragment.
export function redirectUri() {
  return new URL(".", location.href).href;
}

// First thing on load: a return from the provider ({code, state, error, inFragment, pending}) or
// null. The code and state leave the URL at once, from the query or the fragment, so neither the
// address bar nor the history entry keeps them; a pending sign-in is forgotten whether or not it
// returned.
export function takeReturn() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const holds = (params) => RETURNED.some((name) => params.has(name));
  const inQuery = holds(query);
  const inFragment = holds(fragment);
  if (inQuery || inFragment) history.replaceState(null, "", location.pathname);
  let pending = null;
  try {
    pending = JSON.parse(sessionStorage.getItem(PENDING));
  } catch {
    pending = null;
  }
  sessionStorage.removeItem(PENDING);
  if (!inQuery && !inFragment) return null;
  return { code: query.get("code"), state: query.get("state"), error: query.get("error"),
    inFragment, pending };
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
  // The page asks for the code in the query (the code flow's default response mode): one in the
  // fragment is not the answer it asked for, whoever sent it.
  if (returned.inFragment) throw new SignInError("fragment");
  if (!pending || !returned.state || returned.state !== pending.state) {
    throw new SignInError("state");
  }
  if (returned.error || !returned.code) throw new SignInError("refused");
  const tokens = await tokensFor(oidc, returned.code, pending);
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
  return { token: tokens.access_token, user, expiresInS: lifetimeS(tokens, access) };
}

// The token endpoint's answer. The time limit covers the answer's body as well as its headers.
async function tokensFor(oidc, code, pending) {
  try {
    const response = await fetch(oidc.tokenEndpoint, {
      method: "POST",
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code,
        redirect_uri: redirectUri(),
        client_id: oidc.clientId,
        code_verifier: pending.verifier,
      }),
      signal: AbortSignal.timeout(EXCHANGE_TIMEOUT_MS),
    });
    if (!response.ok) throw new SignInError("exchange");
    return await response.json();
  } catch {
    throw new SignInError("exchange");
  }
}

// How long the tokens may be used, in seconds: the least of the provider's `expires_in` (when a
// positive number) and the access token's own `exp`, which the gateway holds it to whatever
// `expires_in` says. Infinity when neither is given: session.js caps every session anyway.
function lifetimeS(tokens, access) {
  const limits = [];
  const expiresIn = Number(tokens.expires_in);
  if (Number.isFinite(expiresIn) && expiresIn > 0) limits.push(expiresIn);
  if (Number.isFinite(access.exp)) limits.push(access.exp - Date.now() / 1000);
  return Math.min(...limits);
}
