// The auditor's view: one child's audit trail as a table, oldest first.

import { clear, el } from "./dom.js";
import { AUDIT_OUTCOMES, PURPOSES, capitalised, dateWords, roleWords } from "./words.js";

function coded(words, code) {
  return [words, " ", el("span", { class: "code" }, `(${code})`)];
}

function entry(e) {
  return el("tr", { class: e.flaggedForInvestigation ? "audit-entry flagged" : "audit-entry" },
    el("td", {}, dateWords(e.at)),
    el("td", {}, `${e.name}, ${e.organisation}`),
    el("td", {}, coded(capitalised(roleWords(e.role)), e.role)),
    el("td", {}, coded(PURPOSES[e.purposeCode] || e.purposeCode, e.purposeCode)),
    el("td", {}, e.justification || "None given"),
    el("td", {}, AUDIT_OUTCOMES[e.outcomeCode] || e.outcomeCode),
    el("td", {}, e.flaggedForInvestigation ? "Yes: flagged for investigation" : "No"),
    el("td", {}, `${e.released.length} released, ${e.withheld.length} withheld`),
    el("td", {}, el("code", {}, e.auditId)));
}

export function showTrail(table, entries) {
  const body = table.tBodies[0];
  clear(body);
  if (!entries.length) {
    body.append(el("tr", {}, el("td", { colspan: 9 }, "No recorded access to this child.")));
  } else {
    body.append(...entries.map(entry));
  }
  table.hidden = false;
}
