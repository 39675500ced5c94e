// The answer to one lookup, in the result region: who is working with the child and how to reach
// them first; then what is missing and why; then what each agency did; and the audit reference.

import { append, clear, data, el } from "./dom.js";
import {
  AMBIGUITIES, DENIALS, FAILURES, FIELDS, OUTCOMES, OUTCOME_HEADINGS, REASONS, SOURCE_STATUSES,
  dateWords, errorWords,
} from "./words.js";

const INCOMPLETE_STATUSES = new Set(["TIMED_OUT", "FAILED", "WITHHELD"]);

function source(provenance) {
  if (!provenance) return null;
  return el("span", { class: "source" },
    "From ", data(provenance.source), `, as of ${dateWords(provenance.asOf)}`);
}

function phone(number) {
  return number ? el("a", { href: `tel:${number.replace(/[^\d+]/g, "")}` }, data(number)) : null;
}

// One plain address, as an agency should hold it. Anything else - "dsl@school.org?cc=x@y",
// "a@b,c@d", percent-escapes - would write to someone the practitioner never chose, so it is shown
// as text, not as a link a click would act on.
const PLAIN_ADDRESS = /^[A-Za-z0-9._+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/;

function email(address) {
  if (!address) return null;
  return PLAIN_ADDRESS.test(address)
    ? el("a", { href: `mailto:${address}` }, data(address)) : data(address);
}

function contact(details) {
  if (!details) return null;
  return el("span", { class: "contact" },
    el("span", { class: "contact-name" }, data(details.name)),
    details.role ? [", ", data(details.role)] : null,
    details.phone ? [" · ", phone(details.phone)] : null,
    details.email ? [" · ", email(details.email)] : null);
}

// A sensitive service is reached only through a broker. Without one, the agency that recorded
// the involvement is the route: the practitioner is never left with nobody to ask.
function sensitiveContact(entry) {
  if (entry.broker) return el("p", {}, "Contact through: ", contact(entry.broker));
  const agency = entry.provenance ? data(entry.provenance.source) : "the agency that recorded this";
  return el("p", {},
    "No broker is named: contact ", agency, " to be put in touch with this service.");
}

function involvement(entry) {
  const named = [entry.service, entry.organisation].filter(Boolean);
  const title = named.length
    ? named.map((words, n) => [n ? ", " : null, data(words)])
    : "A service (not shown to you)";
  const period = entry.since ? `Since ${dateWords(entry.since)}` +
    (entry.until ? ` until ${dateWords(entry.until)}` : "") : null;
  return el("li", { class: entry.lead ? "involvement lead" : "involvement" },
    el("p", { class: "involvement-title" },
      el("strong", {}, title),
      entry.lead ? el("span", { class: "tag" }, "Lead professional") : null,
      entry.sensitive ? el("span", { class: "tag sensitive" }, "Sensitive service") : null),
    entry.practitioner ? el("p", {}, "Practitioner: ", contact(entry.practitioner)) : null,
    entry.sensitive ? sensitiveContact(entry) : null,
    period ? el("p", { class: "hint" }, period) : null,
    el("p", { class: "hint" }, source(entry.provenance)));
}

function withheldFields(withheld) {
  return new Set(withheld.map((w) => w.field));
}

// A missing indicator is "no" only when every agency asked answered: an agency that did not
// answer may be the one holding the plan, and a partial answer must never read as complete.
function indicator(key, field, label, flag, hidden, incomplete) {
  let words;
  if (flag) words = flag.value ? "Yes" : "No";
  else if (hidden.has(field)) words = "Not shown to you (see below)";
  else if (incomplete) words = "Not known: an agency that may record this did not answer";
  else words = "No agency asked records this";
  return el("li", { "data-indicator": key, "data-value": flag ? String(flag.value) : null },
    el("span", { class: "indicator-label" }, `${label}: `),
    el("strong", {}, words),
    flag ? [" ", source(flag.provenance)] : null);
}

function detail(label, value, provenance) {
  if (value === null || value === undefined || value === "") return null;
  return [el("dt", {}, label),
    el("dd", {}, typeof value === "string" ? data(value) : value,
      provenance ? [" ", source(provenance)] : null)];
}

function childDetails(child) {
  const name = child.name;
  const items = [
    detail("Name", name && [data(name.given), " ", data(name.family),
      name.formerFamily.length
        ? [" (formerly ", name.formerFamily.map((f, n) => [n ? ", " : null, data(f)]), ")"]
        : null],
    name && name.provenance),
    detail("NHS number", child.nhsNumber && child.nhsNumber.value,
      child.nhsNumber && child.nhsNumber.provenance),
    detail("Date of birth", child.dateOfBirth && dateWords(child.dateOfBirth.value),
      child.dateOfBirth && child.dateOfBirth.provenance),
    detail("Address", child.address && [...child.address.lines, child.address.postcode].join(", "),
      child.address && child.address.provenance),
    detail("School", child.school &&
      el("span", {}, data(child.school.name),
        child.school.phone ? [" · ", phone(child.school.phone)] : null),
      child.school && child.school.provenance),
    detail("GP practice", child.gpPractice &&
      el("span", {}, data(child.gpPractice.name),
        child.gpPractice.phone ? [" · ", phone(child.gpPractice.phone)] : null),
      child.gpPractice && child.gpPractice.provenance),
  ];
  const carers = child.carers.map((c) => el("li", {},
    data(c.name), " (", data(c.relationship),
    `${c.parentalResponsibility ? ", parental responsibility" : ""})`,
    c.phone ? [" · ", phone(c.phone)] : null, " ", source(c.provenance)));
  return [
    el("h3", {}, "The child"),
    el("dl", { id: "child-details" }, items),
    carers.length ? [el("h3", {}, "Parents and carers"), el("ul", { id: "carers" }, carers)] : null,
  ];
}

function conflicts(child) {
  if (!child.conflicts.length) return null;
  return [
    el("h3", {}, "Agencies disagree"),
    el("ul", { id: "conflicts" }, child.conflicts.map((c) => el("li", { "data-field": c.field },
      `${FIELDS[c.field] || c.field}: shown as `, data(c.chosen), " records it; ",
      c.disagreeing.map((d, n) => [n ? ", " : null, data(d)]),
      ` ${c.disagreeing.length === 1 ? "holds" : "hold"} ` +
      "something different. Check with them before relying on it."))),
  ];
}

// A source that did not answer, or was not asked for a reason it states (the locator, when no
// identifier of the child was confirmed): what makes an answer incomplete (gateway.types).
function missed(s) {
  return INCOMPLETE_STATUSES.has(s.status) || (s.status === "NOT_ASKED" && Boolean(s.failureCode));
}

function incompleteBanner(sources) {
  const missing = sources.filter(missed);
  return el("div", { id: "incomplete-banner", class: "banner-warning", role: "note" },
    el("p", {}, el("strong", {}, "This answer is incomplete. "),
      "An agency that did not answer may hold a record about this child: do not read a " +
      "missing entry as no concern."),
    missing.length ? el("ul", {}, missing.map((s) => el("li", {}, data(s.source),
      ` ${SOURCE_STATUSES[s.status]}` +
      (s.failureCode && FAILURES[s.failureCode] ? ` (${FAILURES[s.failureCode]})` : "") + ".")))
      : null);
}

function sourcesTable(sources) {
  return [
    el("h3", {}, "What each agency said"),
    el("table", { id: "sources" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Agency"),
        el("th", { scope: "col" }, "Status"),
        el("th", { scope: "col" }, "Records linked"))),
      el("tbody", {}, sources.map((s) => el("tr", { "data-source": s.source },
        el("th", { scope: "row" }, s.source),
        el("td", { class: "status", "data-status": s.status },
          SOURCE_STATUSES[s.status] || s.status,
          s.failureCode && FAILURES[s.failureCode] ? ` (${FAILURES[s.failureCode]})` : null),
        el("td", {}, String(s.recordsMatched)))))),
  ];
}

function withheldList(withheld) {
  if (!withheld.length) return null;
  return [
    el("h3", {}, "Not shown to you, and why"),
    el("p", {}, "Ask a colleague whose role and purpose permit it, or the agency holding it."),
    el("ul", { id: "withheld" }, withheld.map((w) => el("li", {
      "data-field": w.field, "data-source": w.source, "data-reason": w.reasonCode,
    },
    el("strong", {}, FIELDS[w.field] || w.field), " held by ", data(w.source), ": ",
    el("span", { class: "reason", "data-reason": w.reasonCode },
      REASONS[w.reasonCode] || w.reasonCode)))),
  ];
}

function auditReference(auditId) {
  return el("p", { class: "audit-reference" }, "Audit reference (quote it when you call a colleague): ",
    el("code", { id: "audit-id" }, auditId));
}

// Renders `lookup` (a ChildLookup) into the result region.
export function showAnswer(body, heading, lookup, { override = false } = {}) {
  clear(body);
  const { outcome, child, sources, withheld } = lookup;
  heading.textContent = (override ? "Emergency override: " : "") + OUTCOME_HEADINGS[outcome];
  const incomplete = !lookup.complete && outcome !== "DENIED";
  const possible = sources.reduce((n, s) => n + s.recordsPossible, 0);
  append(body,
    el("p", { id: "outcome", "data-outcome": outcome, class: `outcome outcome-${outcome}` },
      (outcome === "AMBIGUOUS" && lookup.ambiguity && AMBIGUITIES[lookup.ambiguity.reason]) ||
        OUTCOMES[outcome],
      outcome === "DENIED" && lookup.denialCode ? ` ${DENIALS[lookup.denialCode]}` : null),
    incomplete ? incompleteBanner(sources) : null,
    possible && outcome !== "AMBIGUOUS"
      ? el("p", { id: "possible-matches", class: "banner-info" },
        "Possible matches exist that were not linked to this child; nothing about them is shown. " +
        "Look up by NHS number or UPN, or add details, to be sure.")
      : null,
  );
  if (child) {
    const hidden = withheldFields(withheld);
    append(body,
      el("h3", {}, "Working with the child"),
      child.involvements.length
        ? el("ul", { id: "involvements" }, child.involvements.map(involvement))
        : el("ul", { id: "involvements" }, el("li", { class: "none" },
          hidden.has("involvements")
            ? "Not shown to you (see below)."
            : "No agency that answered records anyone working with this child.")),
      el("h3", {}, "Status"),
      el("ul", { id: "indicators" },
        indicator("childProtectionPlan", "child_protection_plan", "Child protection plan",
          child.indicators.childProtectionPlan, hidden, incomplete),
        indicator("lookedAfter", "looked_after", "Looked after",
          child.indicators.lookedAfter, hidden, incomplete),
        indicator("childInNeed", "child_in_need", "Child in need",
          child.indicators.childInNeed, hidden, incomplete),
        indicator("earlyHelp", "early_help", "Early help", child.indicators.earlyHelp, hidden,
          incomplete)),
      childDetails(child),
      conflicts(child),
    );
  }
  append(body, withheldList(withheld), sourcesTable(sources), auditReference(lookup.auditId));
}

// Renders a lookup that did not run, or failed, by its first error's code.
export function showError(body, heading, errors) {
  clear(body);
  const first = errors[0] || {};
  const code = (first.extensions && first.extensions.code) || "INTERNAL_ERROR";
  heading.textContent = "The lookup could not be done";
  append(body, el("div", { id: "error", class: "problem", "data-code": code, role: "alert" },
    el("p", {}, errorWords(code, first.message))));
}
