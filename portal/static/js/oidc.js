// Sign-in with the organisation's identity provider: OpenID Connect's authorization code flow
// with PKCE (S256), as a public client (no secret). The page goes to the provider's authorization
// endpoint and comes back to itself (/portal/) with a code, which it exchanges at the token
// endpoint for tokens kept in session.js's memory only.
//
// The PKCE verifier, state and nonce must outlive the trip to the provider and back, so they are
// kept in this tab's sessionStorage while the practitioner is away, and removed the moment the
// page returns, before the exchange. The code and state are taken out of the address bar and the
// history entry before anything else happens. Nothing about a child is ever stored.
//
// Signing out here must end the sign-in at the provider too: on a shared workstation the next
// person to press "Sign in" would otherwise be signed straight back in as the practitioner before
// them. So a sign-out (by the button, idleness, expiry or refusal) goes to the provider's
// end_session_endpoint, when it offers one (RP-Initiated Logout 1.0), with the ID token as the
// hint and this page as the post-logout redirect URI; and, offered or not, the tab remembers that
// a sign-in ended here, so every later sign-in from it asks the provider for a fresh one
// (prompt=login, max_age=0) and refuses an answer whose auth_time says it was not.

const PENDING = "childlookup.signIn";
// A sign-in ended in this tab: later ones must be fresh. No token, name or child: the SHA-256 of
// the ended sign-in's issuer and subject ("sha256:..."), or "yes" when there was none to hash.
const ENDED_HERE = "childlookup.signedOut";
// The same mark of a sign-in the page lost without ending it (reloaded, navigated away: written
// as the page goes, never while signed in): that account's session is left at the provider, and
// it is no more the next person at the tab than the one that signed out.
const SIGNED_IN_HERE = "childlookup.signedIn";
// Why the last sign-in ended, kept only across the trip to the provider's end_session_endpoint,
// so the page can say so when it comes back.
const ENDED_WHY = "childlookup.signedOutWhy";
const RETURNED = ["code", "state", "error"];
// A provider that takes the code and never answers must not leave the page waiting in silence.
const EXCHANGE_TIMEOUT_MS = 10 * 1000;
// How far this computer's clock may be behind or ahead of the provider's when judging the ID
// token's exp and auth_time.
const CLOCK_SKEW_S = 120;

// The ID token of the sign-in now in progress, kept in memory only, as the hint the provider's
// end_session_endpoint asks for.
let idToken = null;
// The SHA-256 mark of that sign-in's account (`accountMark`), kept in memory only until it ends.
let signedInMark = null;
addEventListener("pagehide", () => {
  if (signedInMark) sessionStorage.setItem(SIGNED_IN_HERE, signedInMark);
});

export class SignInError extends Error {
  constructor(why) {
    super(why);
    this.why = why; // "state" | "refused" | "fragment" | "exchange" | "token" | "not-fresh"
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

// What a sign-in's account is remembered by once it ended: a hash of its issuer and subject,
// never the subject itself.
async function accountMark(id) {
  const account = new TextEncoder().encode(`${id.iss} ${id.sub}`);
  return `sha256:${base64url(await crypto.subtle.digest("SHA-256", account))}`;
}

// Back from the provider's end_session_endpoint: why the sign-in ended ("idle", ...), said once;
// null otherwise.
export function takeEnded() {
  const why = sessionStorage.getItem(ENDED_WHY);
  sessionStorage.removeItem(ENDED_WHY);
  return why;
}

// The sign-in ended (`why`, as session.js says): end it at the provider too. True when the page
// is leaving for the provider's end_session_endpoint (it comes back here).
export function endProviderSession(oidc, why) {
  const hint = idToken;
  idToken = null;
  sessionStorage.setItem(ENDED_HERE, signedInMark || "yes");
  signedInMark = null;
  if (!hint || !oidc || !oidc.endSessionEndpoint) return false;
  const url = new URL(oidc.endSessionEndpoint);
  const params = { id_token_hint: hint, client_id: oidc.clientId,
    post_logout_redirect_uri: redirectUri() };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  sessionStorage.setItem(ENDED_WHY, why);
  location.assign(url.href);
  return true;
}

// Go to the provider's authorization endpoint; the page unloads. After a sign-in ended in this
// tab, the provider is asked to ask who is there, whoever it remembers.
export async function redirectToProvider(oidc) {
  const fresh = sessionStorage.getItem(ENDED_HERE) !== null;
  const pending = { verifier: random(32), state: random(16), nonce: random(16), fresh,
    ended: sessionStorage.getItem(ENDED_HERE), last: sessionStorage.getItem(SIGNED_IN_HERE),
    sentAtS: Date.now() / 1000 };
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
    ...(fresh ? { prompt: "login", max_age: "0" } : {}),
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
  // its issuer, audience, nonce and expiry are checked here; the gateway verifies the access
  // token.
  const id = claimsOf(tokens.id_token);
  const audiences = [].concat(id.aud);
  const nowS = Date.now() / 1000;
  if (id.iss !== oidc.issuer || !audiences.includes(oidc.clientId) ||
    id.nonce !== pending.nonce || !(Number.isFinite(id.exp) && id.exp + CLOCK_SKEW_S > nowS)) {
    throw new SignInError("token");
  }
  // A fresh sign-in was asked for (max_age=0 makes auth_time required): one from before the
  // request is the previous practitioner's, whatever prompt=login asked. A provider that leaves
  // auth_time out (an optional claim to some) cannot say: the answer is then taken only when it
  // is plainly not the account whose sign-in ended here, nor the one last signed in here - a
  // session the provider kept would be one of theirs - so the next person at the tab can sign
  // in, and the last ones are refused.
  const mark = await accountMark(id);
  if (pending.fresh) {
    const fresh = Number.isFinite(id.auth_time)
      ? id.auth_time + CLOCK_SKEW_S >= pending.sentAtS
      : typeof pending.ended === "string" && pending.ended.startsWith("sha256:") &&
        pending.ended !== mark && pending.last !== mark;
    if (!fresh) throw new SignInError("not-fresh");
  }
  const access = claimsOf(tokens.access_token);
  const user = {
    name: access.name || id.name || access.sub,
    role: access[oidc.roleClaim],
    organisation: access[oidc.organisationClaim],
  };
  if (!user.role || !user.organisation) throw new SignInError("token");
  idToken = tokens.id_token;
  signedInMark = mark;
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
