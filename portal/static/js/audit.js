// The auditor's view: an audit trail (one child's, or one user's) as a table, oldest first, and
// the alerts feeds (emergency overrides, lookups refused at a usage limit); each reading is
// audited by the gateway.

import { graphql, namedChild } from "./api.js";
import { clear, coded, data, el } from "./dom.js";
import * as session from "./session.js";
import {
  AUDIT_OUTCOMES, LIMITS, PURPOSES, capitalised, dateWords, deliveryWords, errorWords, roleWords,
} from "./words.js";

const $ = (id) => document.getElementById(id);

function who(e) {
  return [data(e.name), ", ", data(e.organisation), " ",
    el("span", { class: "code" }, data(e.subject))];
}

function entry(e) {
  return el("tr", { class: e.flaggedForInvestigation ? "audit-entry flagged" : "audit-entry" },
    el("td", {}, dateWords(e.at)),
    el("td", {}, who(e)),
    el("td", {}, coded(capitalised(roleWords(e.role)), e.role)),
    el("td", {}, coded(PURPOSES[e.purposeCode] || e.purposeCode, e.purposeCode)),
    el("td", {}, e.justification || "None given"),
    el("td", {}, AUDIT_OUTCOMES[e.outcomeCode] || e.outcomeCode),
    el("td", {}, e.flaggedForInvestigation ? "Yes: flagged for investigation" : "No"),
    el("td", {}, `${e.released.length} released, ${e.withheld.length} withheld`),
    el("td", {}, el("code", {}, e.auditId)));
}

export function showTrail(table, entries, caption, empty) {
  table.caption.textContent = caption;
  const body = table.tBodies[0];
  clear(body);
  if (!entries.length) {
    body.append(el("tr", {}, el("td", { colspan: 9 }, empty)));
  } else {
    body.append(...entries.map(entry));
  }
  table.hidden = false;
}

// The first error of an answer, as its code and the words for it.
function problem(answer) {
  const first = answer.errors[0] || {};
  const code = (first.extensions && first.extensions.code) || "INTERNAL_ERROR";
  return { code, words: errorWords(code, first.message) };
}

// A datetime-local value ("2025-03-01T09:30", the browser's time zone) as an instant, or null.
function instant(value) {
  const date = value ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toISOString() : null;
}

// ---- Trails: of one child (by NHS number or UPN) or of one user since a time -----------------

// The gateway gives a trail or a feed at most this many entries a reading, oldest first (set at
// start from the page's configuration); a full reading may have more after it, read on strictly
// after its last entry by that entry's `cursor`. (Read on from its time, a reading's worth of
// entries at one time would come again and again, and nothing after them ever.)
let readAtMost = Infinity;

// What the trail shown was asked with, and what it holds so far.
let trail = null;

// The cursor to read on after the entries shown, or null for the first reading.
const after = (earlier) => (earlier ? earlier.at(-1).cursor : null);

// `send(token, after)` sends the trail's operation (named in full, so the manifest test finds
// it); `after` is null for the first reading and the last entry's cursor to read on.
async function showTrailOf(send, caption, empty, earlier = null) {
  const token = session.token();
  if (!token) return;
  const heading = $("audit-result-heading");
  $("audit-result").setAttribute("aria-busy", "true");
  const answer = await send(token, after(earlier));
  $("audit-result").removeAttribute("aria-busy");
  if (!answer) return; // signed out meanwhile
  const page = answer.data && (answer.data.auditTrail || answer.data.userAuditTrail);
  heading.hidden = false;
  if (page) {
    const entries = earlier ? earlier.concat(page) : page;
    const more = page.length >= readAtMost; // full: there may be more
    trail = { send, caption, empty, entries };
    const n = entries.length;
    const counted = `${n} recorded ${n === 1 ? "access" : "accesses"}`;
    heading.textContent = more ? `The first ${counted}: there may be later ones` : counted;
    $("audit-error").hidden = true;
    showTrail($("audit-trail"), entries, caption, empty);
    $("audit-more").hidden = !more;
  } else {
    const { code, words } = problem(answer);
    heading.textContent = "The audit trail could not be shown";
    $("audit-error").textContent = words;
    $("audit-error").dataset.code = code;
    $("audit-error").hidden = false;
    $("audit-trail").hidden = true;
    $("audit-more").hidden = true;
  }
  heading.focus();
  if (answer.status === 401) session.end("rejected");
}

// "Show later accesses": the trail shown, read on from its last entry.
function readTrailOn() {
  if (!trail) return Promise.resolve();
  return showTrailOf(trail.send, trail.caption, trail.empty, trail.entries);
}

export function lookAtChildTrail() {
  const child = namedChild($("audit-child").value.trim());
  return showTrailOf(
    (token, later) => graphql(token, "AuditTrail", later ? { ...child, after: later } : child),
    "Accesses to the child, oldest first", "No recorded access to this child.");
}

export function lookAtUserTrail() {
  const subject = $("audit-user").value.trim();
  const since = instant($("audit-since").value);
  if (!subject) {
    $("audit-result-heading").hidden = false;
    $("audit-result-heading").textContent = "Whose accesses?";
    $("audit-error").textContent =
      "Enter the user's account, as the trail or the override alerts show it.";
    $("audit-error").dataset.code = "BAD_USER_INPUT";
    $("audit-error").hidden = false;
    $("audit-trail").hidden = true;
    $("audit-more").hidden = true;
    $("audit-user").focus();
    return Promise.resolve();
  }
  const when = since ? ` since ${dateWords(since)}` : "";
  return showTrailOf(
    (token, later) => graphql(token, "UserAuditTrail",
      later ? { subject, since, after: later } : { subject, since }),
    `Accesses by ${subject}${when}, oldest first`, `No recorded access by ${subject}${when}.`);
}

// ---- The alerts feeds: emergency overrides, and lookups refused at a usage limit ----------------

// One alert as a row: when, who, their role and organisation, `detail` (the override's reason,
// the limit reached), the audit reference, and a button to the user's accesses.
function alertRow(a, detail, attributes = {}) {
  return el("tr", { class: "alert-entry", "data-audit-id": a.auditId, ...attributes },
    el("td", {}, dateWords(a.at)),
    el("td", {}, el("span", { class: "code" }, a.subject)),
    el("td", {}, coded(capitalised(roleWords(a.role)), a.role)),
    el("td", {}, a.organisation),
    el("td", {}, detail),
    el("td", {}, el("code", {}, a.auditId)),
    el("td", {}, el("button", {
      type: "button", class: "secondary their-accesses", "data-subject": a.subject,
    }, "Their accesses")));
}

const overrideAlert = (a) => alertRow(a, a.justification || "Not recorded");
const limitAlert = (a) =>
  alertRow(a, coded(LIMITS[a.kind] || a.kind, a.kind), { "data-kind": a.kind });

// One owner notification given up on: when, the agency not told, the attempts, why the last one
// failed, and the audit reference of the lookup it was to tell of.
function undeliveredNotification(n) {
  return el("tr", { class: "undelivered-entry", "data-audit-id": n.auditId },
    el("td", {}, n.givenUpAt ? dateWords(n.givenUpAt) : "Not recorded"),
    el("td", {}, n.agency),
    el("td", {}, String(n.attempts)),
    el("td", {}, n.lastError ? coded(deliveryWords(n.lastError), n.lastError) : "Not recorded"),
    el("td", {}, el("code", {}, n.auditId)));
}

// The columns every alert has, around its detail, and the button to the user's accesses.
const ALERT_COLUMNS = ["When", "Who (account)", "Role", "Organisation"];
const actions = () => el("span", { class: "visually-hidden" }, "Actions");

// Each feed's page elements are named from its `id`. In the page: `${id}-form`, `${id}-since`
// (for the feeds that take a time) and `${id}-result`. Built from here: the result's heading
// `${id}-result-heading`, its problem `${id}-error`, its table `${id}` (`caption`, `columns`) and
// the button reading on past a full reading, `${id}-more` (`later`). `ask(token, variables)`
// sends the feed's operation (named in full, so the manifest test finds it).
const FEEDS = {
  overrides: {
    id: "alerts", field: "overrideAlerts", row: overrideAlert,
    caption: "Overrides, newest first",
    columns: [...ALERT_COLUMNS, "Justification", "Audit reference", actions()],
    ask: (token, variables) => graphql(token, "OverrideAlerts", variables),
    counted: (n) => `${n} emergency ${n === 1 ? "override" : "overrides"} to investigate`,
    later: "Show later overrides",
    none: "No emergency overrides", empty: "No one has used an emergency override.",
    failed: "The override alerts could not be shown",
  },
  limits: {
    id: "limit-alerts", field: "limitAlerts", row: limitAlert,
    caption: "Refused lookups, newest first",
    columns: [...ALERT_COLUMNS, "Limit reached", "Audit reference", actions()],
    ask: (token, variables) => graphql(token, "LimitAlerts", variables),
    counted: (n) => `${n} ${n === 1 ? "lookup" : "lookups"} refused at a usage limit`,
    later: "Show later refused lookups",
    none: "No lookups refused at a usage limit",
    empty: "No one has been refused at a usage limit.",
    failed: "The refused lookups could not be shown",
  },
  undelivered: {
    id: "undelivered", field: "undeliveredNotifications", row: undeliveredNotification,
    caption: "Undelivered notifications, newest first",
    columns: ["Given up", "Agency not told", "Attempts", "Last failure", "Audit reference"],
    ask: (token, variables) => graphql(token, "UndeliveredNotifications", variables),
    counted: (n) => `${n} ${n === 1 ? "agency" : "agencies"} not told of a lookup`,
    later: "Show later undelivered notifications",
    none: "No undelivered notifications",
    empty: "Every owner notification has been delivered, or is still being tried.",
    failed: "The undelivered notifications could not be shown",
  },
};

// A feed's answer: its heading, its problem, its table and the button that reads on; all hidden
// until asked for.
function feedResult({ id, caption, columns, later }) {
  return [
    el("h3", { id: `${id}-result-heading`, tabindex: "-1", hidden: true }),
    el("p", { id: `${id}-error`, class: "problem", hidden: true }),
    el("table", { id, hidden: true },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...columns.map((column) => el("th", { scope: "col" }, column)))),
      el("tbody")),
    el("button", { type: "button", id: `${id}-more`, class: "secondary", hidden: true }, later),
  ];
}

// What each feed shown was asked with (`since`, for the feeds that take a time), and what it
// holds so far, oldest first, by feed id.
const feedShown = {};

// The variables of a feed's first reading: the time in its form, for the feeds that take one.
function firstReading(id) {
  const since = $(`${id}-since`);
  return since ? { since: instant(since.value) } : {};
}

// `shown` is null for the first reading, and what the feed shows to read on after it.
async function lookAtFeed(feed, shown = null) {
  const token = session.token();
  if (!token) return;
  const { id } = feed;
  const heading = $(`${id}-result-heading`);
  const table = $(id);
  const error = $(`${id}-error`);
  const more = $(`${id}-more`);
  $(`${id}-result`).setAttribute("aria-busy", "true");
  const asked = shown ? shown.asked : firstReading(id);
  const earlier = shown && shown.entries;
  const answer = await feed.ask(token, earlier ? { ...asked, after: after(earlier) } : asked);
  $(`${id}-result`).removeAttribute("aria-busy");
  if (!answer) return; // signed out meanwhile
  const page = answer.data && answer.data[feed.field];
  heading.hidden = false;
  const body = table.tBodies[0];
  clear(body);
  if (page) {
    const alerts = earlier ? earlier.concat(page) : page;
    // Full: the latest may not be among them.
    const full = page.length >= readAtMost;
    feedShown[id] = { asked, entries: alerts };
    heading.textContent = alerts.length ? feed.counted(alerts.length) : feed.none;
    if (full) heading.textContent += ", the earliest: there may be later ones";
    error.hidden = true;
    const columns = table.tHead.rows[0].cells.length;
    if (!alerts.length) {
      body.append(el("tr", {}, el("td", { colspan: columns }, feed.empty)));
    } else {
      body.append(...alerts.slice().reverse().map(feed.row));
    }
    table.hidden = false;
    more.hidden = !full;
  } else {
    const { code, words } = problem(answer);
    heading.textContent = feed.failed;
    error.textContent = words;
    error.dataset.code = code;
    error.hidden = false;
    table.hidden = true;
    more.hidden = true;
  }
  heading.focus();
  if (answer.status === 401) session.end("rejected");
}

// An alert's "Their accesses": the filter by user, for the one the alert names.
function lookAtAlerter(event) {
  const button = event.target.closest("button.their-accesses");
  if (!button) return;
  $("audit-user").value = button.dataset.subject;
  $("audit-since").value = "";
  lookAtUserTrail();
}

// Forget every trail and alert shown.
export function clearAudit() {
  const feeds = Object.values(FEEDS).map((feed) => feed.id);
  for (const form of ["audit-form", "audit-filter-form", ...feeds.map((id) => `${id}-form`)]) {
    $(form).reset();
  }
  for (const table of ["audit-trail", ...feeds]) {
    $(table).tBodies[0].replaceChildren();
    $(table).hidden = true;
  }
  for (const id of ["audit", ...feeds]) {
    $(`${id}-error`).hidden = true;
    $(`${id}-result-heading`).hidden = true;
    $(`${id}-more`).hidden = true;
    delete feedShown[id];
  }
  trail = null;
}

function onSubmit(id, action) {
  $(id).addEventListener("submit", (event) => {
    event.preventDefault();
    action();
  });
}

// `readingAtMost`: the most entries the gateway gives a reading (the page's configuration).
export function startAudit(readingAtMost) {
  readAtMost = readingAtMost;
  onSubmit("audit-form", lookAtChildTrail);
  onSubmit("audit-filter-form", lookAtUserTrail);
  $("audit-more").addEventListener("click", readTrailOn);
  for (const feed of Object.values(FEEDS)) {
    $(`${feed.id}-result`).replaceChildren(...feedResult(feed));
    onSubmit(`${feed.id}-form`, () => lookAtFeed(feed));
    $(feed.id).addEventListener("click", lookAtAlerter);
    $(`${feed.id}-more`).addEventListener("click", () => lookAtFeed(feed, feedShown[feed.id]));
  }
}
