// The signed-in practitioner. The token lives in this module's memory only: never in storage,
// a cookie or the URL, so closing or reloading the tab signs out. Inactivity signs out too, and
// so does the token's expiry (a demo token's, or the identity provider's `expires_in` and the
// access token's `exp`), and at the latest the gateway's maximum token lifetime.

// The gateway refuses a token valid for longer than its maximum (CHILDLOOKUP_TOKEN_MAX_LIFETIME_S,
// 12 hours by default; the page's configuration says), so no session here outlasts that,
// whatever the token's expiry says.
let maxSessionS = 12 * 60 * 60;
// setTimeout keeps its delay in a signed 32-bit count of milliseconds (about 24.8 days): a longer
// one fires at once, or wraps round.
const MAX_TIMER_MS = 2 ** 31 - 1;

let current = null; // {token, user: {name, role, organisation}}
// Aborted when the session ends: an answer to a request an ended session sent is never shown -
// the next practitioner at this tab must not see it - nor its refusal read as theirs.
let requests = new AbortController();
let idleTimer = null;
let expiryTimer = null;
let idleMs = 15 * 60 * 1000;
let onEnd = () => {};

export function configure({ idleTimeoutS, maxSessionS: configuredMaxS, onSignedOut }) {
  idleMs = idleTimeoutS * 1000;
  if (configuredMaxS > 0) maxSessionS = configuredMaxS;
  onEnd = onSignedOut;
  for (const event of ["keydown", "pointerdown", "input"]) {
    document.addEventListener(event, touch, { capture: true, passive: true });
  }
}

export function user() {
  return current && current.user;
}

export function token() {
  return current && current.token;
}

// What this session's requests are sent with (api.js): it ends with the session.
export function requestSignal() {
  return requests.signal;
}

export async function signInAsDemoUser(index) {
  const response = await fetch("dev-session", {
    method: "POST",
    cache: "no-store",
    credentials: "omit",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: index }),
  });
  if (!response.ok) throw new Error(`sign-in refused (${response.status})`);
  const session = await response.json();
  start(session.token, session.user, session.expiresInS);
}

// A session from the identity provider's tokens (oidc.js).
export function signInWithToken(newToken, newUser, expiresInS) {
  start(newToken, newUser, expiresInS);
}

function start(newToken, newUser, expiresInS) {
  current = { token: newToken, user: newUser };
  clearTimeout(expiryTimer);
  // Ends a minute before the token does, so no lookup is sent with an expiring token. A lifetime
  // that is not a number ends the session at once rather than never.
  const lifetimeS = Math.min(expiresInS, maxSessionS);
  const delayMs = Math.min(Math.max(lifetimeS - 60, 1) * 1000, MAX_TIMER_MS);
  expiryTimer = setTimeout(() => end("expired"), delayMs);
  touch();
}

function touch() {
  if (!current) return;
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => end("idle"), idleMs);
}

export function end(why = "signed-out") {
  const wasSignedIn = current !== null;
  current = null;
  clearTimeout(idleTimer);
  clearTimeout(expiryTimer);
  requests.abort();
  requests = new AbortController();
  if (wasSignedIn) onEnd(why);
}
