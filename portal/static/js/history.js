// The owner's view: who has looked at a child whose protection plan or looked-after status the
// signed-in user's organisation holds, newest first, 25 at a time. Opened from its own form or
// from a lookup's result. The child is named by NHS number, or by UPN where the owner's record
// holds no NHS number; either goes in the form and the request body, never the URL.

import { graphql, namedChild } from "./api.js";
import { clear, coded, el } from "./dom.js";
import * as session from "./session.js";
import {
  AUDIT_OUTCOMES, PURPOSES, capitalised, dateWords, errorWords, roleWords,
} from "./words.js";

const $ = (id) => document.getElementById(id);
const PAGE = 25;
const MOST = 100; // the gateway's largest limit
let shown = { child: null, limit: PAGE };

function entry(a) {
  return el("tr", {
    class: a.override ? "access-entry flagged" : "access-entry",
    "data-override": a.override ? "true" : "false",
  },
  el("td", {}, dateWords(a.at)),
  el("td", {}, a.name),
  el("td", {}, coded(capitalised(roleWords(a.role)), a.role)),
  el("td", {}, a.organisation),
  el("td", {}, coded(PURPOSES[a.purpose] || a.purpose, a.purpose)),
  el("td", {}, a.justification || "None given"),
  el("td", {}, AUDIT_OUTCOMES[a.outcome] || a.outcome),
  el("td", {}, a.override ? "Yes: emergency override, flagged for investigation" : "No"),
  el("td", {}, el("code", {}, a.auditId)));
}

// The refusal, as the page's one #error (a lookup's earlier error gives up the id).
function showProblem(errors) {
  const first = errors[0] || {};
  const code = (first.extensions && first.extensions.code) || "INTERNAL_ERROR";
  const earlier = document.getElementById("error");
  if (earlier) earlier.removeAttribute("id");
  $("history-problem").replaceChildren(
    el("div", { id: "error", class: "problem", "data-code": code, role: "alert" },
      el("p", {}, errorWords(code, first.message))));
}

function showAccesses(history) {
  const table = $("access-history");
  const body = table.tBodies[0];
  const count = history.accesses.length;
  clear(body);
  $("history-result-heading").textContent = count
    ? `${count}${history.more ? " most recent" : ""} ${count === 1 ? "lookup" : "lookups"} of this child`
    : "No lookups of this child recorded for your organisation";
  $("history-empty").hidden = count > 0;
  table.hidden = count === 0;
  body.append(...history.accesses.map(entry));
  $("history-more").hidden = !(history.more && shown.limit < MOST);
}

async function show(child, limit) {
  const token = session.token();
  if (!token) return;
  shown = { child, limit };
  const result = $("history-result");
  result.setAttribute("aria-busy", "true");
  const answer = await graphql(token, "AccessHistory", { ...namedChild(child), limit });
  result.removeAttribute("aria-busy");
  if (!answer) return; // signed out meanwhile
  const history = answer.data && answer.data.accessHistory;
  $("history-result-heading").hidden = false;
  $("history-problem").replaceChildren();
  if (history) {
    showAccesses(history);
  } else {
    $("history-result-heading").textContent = "Who has looked at this child cannot be shown";
    $("history-empty").hidden = true;
    $("access-history").hidden = true;
    $("history-more").hidden = true;
    showProblem(answer.errors);
  }
  if (answer.status === 401) session.end("rejected");
}

// The history of the child with this NHS number or UPN, from the start; focus on what it found.
export async function showHistory(child) {
  $("history-child").value = child;
  await show(child, PAGE);
  $("history-result-heading").focus();
}

async function showMore() {
  await show(shown.child, Math.min(shown.limit + PAGE, MOST));
  const rows = $("access-history").tBodies[0].rows;
  const next = $("history-more");
  if (!next.hidden) next.focus();
  else if (rows.length) $("history-result-heading").focus();
}

// A "Who has looked at this child" button for a lookup's result, for the child just looked up
// (named by its NHS number or UPN).
export function historyButton(child) {
  const button = el("button", { type: "button", id: "show-history", class: "secondary" },
    "Who has looked at this child");
  button.addEventListener("click", () => showHistory(child));
  return el("p", { class: "actions" }, button);
}

// Forget every history shown.
export function clearHistory() {
  $("history-form").reset();
  shown = { child: null, limit: PAGE };
  $("access-history").tBodies[0].replaceChildren();
  $("access-history").hidden = true;
  $("history-problem").replaceChildren();
  for (const id of ["history-result-heading", "history-empty", "history-more"]) $(id).hidden = true;
}

export function startHistory() {
  $("history-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showHistory($("history-child").value.trim());
  });
  $("history-more").addEventListener("click", showMore);
}
