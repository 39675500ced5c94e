// The signed-in practitioner. The token lives in this module's memory only: never in storage,
// a cookie or the URL, so closing or reloading the tab signs out. Inactivity signs out too, and
// so does the token's expiry (a demo token's, or the identity provider's `expires_in` and the
// access token's `exp`), and at the latest the gateway's maximum token lifetime.
//
// Time is judged by the clocks, not by timers: a timer may stand still while a laptop sleeps, and
// a child's details must not stay on screen past the limit when it wakes. Every tick, and whenever
// the page is shown or focused again, the time since the last activity and since sign-in is
// measured by the wall clock and the monotonic clock, whichever says more (the wall clock runs on
// through sleep; the monotonic one is not set back), and the session ends once either is past.

// The gateway refuses a token valid for longer than its maximum (CHILDLOOKUP_TOKEN_MAX_LIFETIME_S,
// 12 hours by default; the page's configuration says), so no session here outlasts that,
// whatever the token's expiry says.
let maxSessionS = 12 * 60 * 60;
// How often the clocks are read while signed in.
const TICK_MS = 1000;

let current = null; // {token, user: {name, role, organisation}}
// Aborted when the session ends: an answer to a request an ended session sent is never shown -
// the next practitioner at this tab must not see it - nor its refusal read as theirs.
let requests = new AbortController();
let ticker = null;
let signedInAt = null; // {wall, monotonic}: when the session started
let lifetimeMs = 0; // how long after signedInAt it ends
let activeAt = null; // {wall, monotonic}: the last key press, pointer press or input
let idleMs = 15 * 60 * 1000;
let onEnd = () => {};

export function configure({ idleTimeoutS, maxSessionS: configuredMaxS, onSignedOut }) {
  idleMs = idleTimeoutS * 1000;
  if (configuredMaxS > 0) maxSessionS = configuredMaxS;
  onEnd = onSignedOut;
  for (const event of ["keydown", "pointerdown", "input"]) {
    document.addEventListener(event, touch, { capture: true, passive: true });
  }
  document.addEventListener("visibilitychange", check);
  for (const event of ["focus", "pageshow"]) window.addEventListener(event, check);
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
  // Ends a minute before the token does, so no lookup is sent with an expiring token. A lifetime
  // that is not a number ends the session at once rather than never.
  const lifetimeS = Math.min(expiresInS, maxSessionS);
  lifetimeMs = Number.isNaN(lifetimeS) ? 0 : Math.max(lifetimeS - 60, 1) * 1000;
  signedInAt = now();
  activeAt = now();
  clearInterval(ticker);
  ticker = setInterval(check, TICK_MS);
}

function now() {
  return { wall: Date.now(), monotonic: performance.now() };
}

function elapsedMs(since) {
  const at = now();
  return Math.max(at.wall - since.wall, at.monotonic - since.monotonic);
}

// Activity keeps the session going - unless it is already past its limit (the first key pressed
// on waking must not count as use within it).
function touch() {
  if (!check()) return;
  activeAt = now();
}

// Ends the session if it is past its lifetime or idle limit, whichever came first; true while
// it goes on.
function check() {
  if (!current) return false;
  const leftMs = lifetimeMs - elapsedMs(signedInAt);
  const idleLeftMs = idleMs - elapsedMs(activeAt);
  if (leftMs <= 0 || idleLeftMs <= 0) {
    end(leftMs <= idleLeftMs ? "expired" : "idle");
    return false;
  }
  return true;
}

export function end(why = "signed-out") {
  const wasSignedIn = current !== null;
  current = null;
  clearInterval(ticker);
  requests.abort();
  requests = new AbortController();
  if (wasSignedIn) onEnd(why);
}
