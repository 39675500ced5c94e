// The practitioner's page: sign in, look a child up, break-glass, and the auditor's trail.

import { graphql, loadOperations } from "./api.js";
import { showAnswer, showError } from "./answer.js";
import { showTrail } from "./audit.js";
import { el } from "./dom.js";
import { meets, ruleWords } from "./justification.js";
import * as session from "./session.js";
import { errorWords, roleWords } from "./words.js";

const $ = (id) => document.getElementById(id);
let config = null;

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// ---- Sign-in -------------------------------------------------------------------------------

function showSignIn() {
  if (config.signIn === "demo") {
    const select = $("demo-user");
    select.replaceChildren(...config.demoUsers.map((u) => el("option", { value: u.index },
      `${u.name}: ${roleWords(u.role)} (${u.role}), ${u.organisation}`)));
    $("demo-sign-in").hidden = false;
  } else {
    $("oidc-message").textContent =
      "Signing in with your organisation's account (OpenID Connect) is not available in this " +
      "version of the page. Ask your service desk for another way to look children up.";
    $("oidc-sign-in").hidden = false;
  }
}

async function signIn() {
  notice("");
  try {
    await session.signInAsDemoUser(Number($("demo-user").value));
  } catch {
    notice("Sign-in failed. Reload the page and try again.");
    return;
  }
  const user = session.user();
  $("signed-in-as").textContent =
    `Signed in as ${user.name}, ${roleWords(user.role)} (${user.role}), ${user.organisation}`;
  $("session").hidden = false;
  $("sign-in-section").hidden = true;
  const auditor = config.auditorRoles.includes(user.role);
  $("lookup-section").hidden = auditor;
  $("audit-section").hidden = !auditor;
  (auditor ? $("audit-heading") : $("lookup-heading")).setAttribute("tabindex", "-1");
  (auditor ? $("audit-heading") : $("lookup-heading")).focus();
}

// Forget everything about the session and any child shown.
function signedOut(why) {
  for (const form of [$("lookup"), $("audit-form"), $("break-glass-form")]) form.reset();
  if ($("break-glass-dialog").open) $("break-glass-dialog").close();
  $("result-body").replaceChildren();
  $("result-heading").textContent = "";
  $("result").hidden = true;
  $("audit-trail").tBodies[0].replaceChildren();
  $("audit-trail").hidden = true;
  $("audit-error").hidden = true;
  $("audit-result-heading").hidden = true;
  $("session").hidden = true;
  $("signed-in-as").textContent = "";
  $("lookup-section").hidden = true;
  $("audit-section").hidden = true;
  $("sign-in-section").hidden = false;
  showIdentifyGroup();
  showRules();
  const minutes = Math.round(config.idleTimeoutS / 60);
  notice({
    idle: `You were signed out after ${minutes} minutes without activity.`,
    expired: "Your sign-in expired. Sign in again.",
    rejected: "Your sign-in was not accepted. Sign in again.",
  }[why] || "You are signed out.");
  $("sign-in-heading").setAttribute("tabindex", "-1");
  $("sign-in-heading").focus();
}

// ---- The lookup form -----------------------------------------------------------------------

function rule(purpose) {
  return config.purposes[purpose] || null;
}

function showRules() {
  const purpose = $("purpose").value;
  const described = rule(purpose);
  $("purpose-description").textContent = described ? described.description : "";
  $("justification-rule").textContent = ruleWords(described, $("justification").value);
  $("break-glass-rule").textContent =
    ruleWords(rule("EMERGENCY_OVERRIDE"), $("break-glass-justification").value);
}

function markPurposesNeedingJustification() {
  for (const option of $("purpose").options) {
    const described = rule(option.value);
    if (described && described.justificationRequired) {
      option.textContent = `${option.textContent} (justification needed)`;
    }
  }
}

function chosenIdentify() {
  return document.querySelector('input[name="identify"]:checked').value;
}

function showIdentifyGroup() {
  const way = chosenIdentify();
  $("by-nhs").hidden = way !== "nhs";
  $("by-upn").hidden = way !== "upn";
  $("by-demographics").hidden = way !== "demographics";
}

function identify() {
  const way = chosenIdentify();
  if (way === "nhs") return { nhsNumber: $("nhs-number").value.trim() };
  if (way === "upn") return { upn: $("upn").value.trim().toUpperCase() };
  const demographics = {};
  const given = { givenName: "given-name", familyName: "family-name",
    dateOfBirth: "date-of-birth", postcode: "postcode" };
  for (const [key, id] of Object.entries(given)) {
    const value = $(id).value.trim();
    if (value) demographics[key] = value;
  }
  return { demographics };
}

async function lookUp(purpose, justification) {
  const token = session.token();
  if (!token) return;
  const heading = $("result-heading");
  const body = $("result-body");
  const override = purpose === "EMERGENCY_OVERRIDE";
  $("result").hidden = false;
  $("result").setAttribute("aria-busy", "true");
  $("look-up").disabled = true;
  const answer = await graphql(token, "ChildLookup", {
    purpose, identify: identify(), justification: justification.trim() || null,
  });
  $("look-up").disabled = false;
  $("result").removeAttribute("aria-busy");
  const lookup = answer.data && answer.data.child;
  if (lookup) showAnswer(body, heading, lookup, { override });
  else showError(body, heading, answer.errors);
  heading.focus();
  if (answer.status === 401) session.end("rejected");
}

// ---- Break-glass ---------------------------------------------------------------------------

function openBreakGlass() {
  $("break-glass-problem").hidden = true;
  $("break-glass-justification").removeAttribute("aria-invalid");
  showRules();
  $("break-glass-dialog").showModal();
  $("break-glass-justification").focus();
}

async function confirmBreakGlass() {
  const text = $("break-glass-justification").value;
  if (!meets(rule("EMERGENCY_OVERRIDE"), text)) {
    $("break-glass-problem").textContent =
      "Say why the child is at immediate risk: " +
      ruleWords(rule("EMERGENCY_OVERRIDE"), text);
    $("break-glass-problem").hidden = false;
    $("break-glass-justification").setAttribute("aria-invalid", "true");
    $("break-glass-justification").focus();
    return;
  }
  $("break-glass-dialog").close();
  $("break-glass-form").reset();
  await lookUp("EMERGENCY_OVERRIDE", text);
}

// ---- The auditor's trail -------------------------------------------------------------------

async function lookAtTrail() {
  const token = session.token();
  if (!token) return;
  const heading = $("audit-result-heading");
  const answer = await graphql(token, "AuditTrail", { nhsNumber: $("audit-nhs-number").value.trim() });
  const entries = answer.data && answer.data.auditTrail;
  heading.hidden = false;
  if (entries) {
    heading.textContent = `${entries.length} recorded ${entries.length === 1 ? "access" : "accesses"}`;
    $("audit-error").hidden = true;
    showTrail($("audit-trail"), entries);
  } else {
    const first = answer.errors[0] || {};
    const code = (first.extensions && first.extensions.code) || "INTERNAL_ERROR";
    heading.textContent = "The audit trail could not be shown";
    $("audit-error").textContent = errorWords(code, first.message);
    $("audit-error").dataset.code = code;
    $("audit-error").hidden = false;
    $("audit-trail").hidden = true;
  }
  heading.focus();
  if (answer.status === 401) session.end("rejected");
}

// ---- Start ---------------------------------------------------------------------------------

async function start() {
  const [response] = await Promise.all([fetch("config.json", { cache: "no-store" }), loadOperations()]);
  config = await response.json();
  session.configure({ idleTimeoutS: config.idleTimeoutS, onSignedOut: signedOut });
  markPurposesNeedingJustification();
  showRules();
  showIdentifyGroup();
  showSignIn();

  $("sign-in").addEventListener("click", signIn);
  $("sign-out").addEventListener("click", () => session.end("signed-out"));
  $("purpose").addEventListener("change", showRules);
  $("justification").addEventListener("input", showRules);
  $("break-glass-justification").addEventListener("input", showRules);
  for (const radio of document.querySelectorAll('input[name="identify"]')) {
    radio.addEventListener("change", showIdentifyGroup);
  }
  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    lookUp($("purpose").value, $("justification").value);
  });
  $("break-glass").addEventListener("click", openBreakGlass);
  $("break-glass-confirm").addEventListener("click", confirmBreakGlass);
  $("break-glass-cancel").addEventListener("click", () => $("break-glass-dialog").close());
  $("break-glass-form").addEventListener("submit", (event) => {
    event.preventDefault();
    confirmBreakGlass();
  });
  $("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookAtTrail();
  });
  document.body.dataset.ready = "true";
}

start().catch(() => notice("The page could not start. Reload it, or tell the service desk."));
