// The practitioner's page: sign in, look a child up, break-glass, who has looked at a child, and
// the auditor's views.

import { graphql, loadOperations } from "./api.js";
import { showAnswer, showError } from "./answer.js";
import { clearAudit, startAudit } from "./audit.js";
import { el } from "./dom.js";
import { clearHistory, historyButton, startHistory } from "./history.js";
import { meets, ruleWords } from "./justification.js";
import * as oidc from "./oidc.js";
import * as session from "./session.js";
import { roleWords } from "./words.js";

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
  } else if (config.oidc.available) {
    $("oidc-message").textContent =
      "Sign in with your organisation's account. You will come back here afterwards.";
    $("oidc-sign-in-button").hidden = false;
    $("oidc-sign-in").hidden = false;
  } else {
    $("oidc-message").textContent =
      "Signing in with your organisation's account is not available at the moment: the " +
      "identity provider could not be reached or is not set up. Try again shortly, or ask " +
      "your service desk.";
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
  showSignedIn();
}

// Back from the identity provider: exchange the code, or say plainly why not.
async function finishProviderSignIn(returned) {
  try {
    const { token, user, expiresInS } = await oidc.exchange(config.oidc, returned);
    session.signInWithToken(token, user, expiresInS);
  } catch (error) {
    notice({
      state: "The sign-in could not be completed: this page did not start it, or started " +
        "another one since. Sign in again.",
      refused: "Your organisation's account did not sign you in. Sign in again, or ask your " +
        "service desk.",
      "not-fresh": "Your organisation's account signed you in without asking who you are, so " +
        "it may be someone else's sign-in. Close the browser and sign in again, or ask your " +
        "service desk.",
    }[error.why] || "The sign-in could not be completed. Sign in again.");
    return;
  }
  showSignedIn();
}

function showSignedIn() {
  const user = session.user();
  $("signed-in-as").textContent =
    `Signed in as ${user.name}, ${roleWords(user.role)} (${user.role}), ${user.organisation}`;
  $("session").hidden = false;
  $("sign-in-section").hidden = true;
  const auditor = config.auditorRoles.includes(user.role);
  $("lookup-section").hidden = auditor;
  $("history-section").hidden = auditor;
  $("audit-section").hidden = !auditor;
  (auditor ? $("audit-heading") : $("lookup-heading")).setAttribute("tabindex", "-1");
  (auditor ? $("audit-heading") : $("lookup-heading")).focus();
}

// Forget everything about the session and any child shown.
function signedOut(why) {
  for (const form of [$("lookup"), $("break-glass-form")]) form.reset();
  $("look-up").disabled = false; // a lookup in flight is abandoned (session.js)
  if ($("break-glass-dialog").open) $("break-glass-dialog").close();
  $("result-body").replaceChildren();
  $("result-heading").textContent = "";
  $("result").hidden = true;
  clearHistory();
  clearAudit();
  $("session").hidden = true;
  $("signed-in-as").textContent = "";
  $("lookup-section").hidden = true;
  $("history-section").hidden = true;
  $("audit-section").hidden = true;
  $("sign-in-section").hidden = false;
  showIdentifyGroup();
  showRules();
  signedOutNotice(why);
  // The next person at this browser must not be signed straight back in at the provider.
  if (config.signIn === "oidc") oidc.endProviderSession(config.oidc, why);
}

function signedOutNotice(why) {
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
    dateOfBirth: "date-of-birth", postcode: "postcode", sex: "sex",
    formerFamilyName: "former-family-name" };
  for (const [key, id] of Object.entries(given)) {
    const value = $(id).value.trim();
    if (value) demographics[key] = value;
  }
  const knownAs = $("known-as").value.split(",").map((name) => name.trim()).filter(Boolean);
  if (knownAs.length) demographics.knownAs = knownAs;
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
  clearHistory(); // another child's history must not stay beside this answer
  const child = identify();
  const answer = await graphql(token, "ChildLookup", {
    purpose, identify: child, justification: justification.trim() || null,
  });
  $("look-up").disabled = false;
  $("result").removeAttribute("aria-busy");
  if (!answer) return; // signed out meanwhile: the page was cleared for whoever comes next
  const lookup = answer.data && answer.data.child;
  if (lookup) showAnswer(body, heading, lookup, { override });
  else showError(body, heading, answer.errors);
  // The child's history is named by the NHS number released or asked with, else by the UPN
  // asked with (a child no agency here knows by an NHS number); a demographic search that
  // released no NHS number names no child to ask about.
  const released = lookup && lookup.child && lookup.child.nhsNumber;
  const named = (released && released.value) || child.nhsNumber || child.upn;
  if (lookup && lookup.outcome === "FOUND" && named) body.append(historyButton(named));
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

// ---- Start ---------------------------------------------------------------------------------

async function start() {
  const returned = oidc.takeReturn(); // first: the code and state leave the URL at once
  const ended = oidc.takeEnded(); // back from ending the sign-in at the provider
  const [response] = await Promise.all([fetch("config.json", { cache: "no-store" }), loadOperations()]);
  config = await response.json();
  session.configure({
    idleTimeoutS: config.idleTimeoutS,
    maxSessionS: config.tokenMaxLifetimeS,
    onSignedOut: signedOut,
  });
  markPurposesNeedingJustification();
  showRules();
  showIdentifyGroup();
  showSignIn();

  $("sign-in").addEventListener("click", signIn);
  $("oidc-sign-in-button").addEventListener("click", () => oidc.redirectToProvider(config.oidc));
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
  startHistory();
  startAudit(config.auditReadAtMost);
  if (returned && config.signIn === "oidc") await finishProviderSignIn(returned);
  else if (ended) signedOutNotice(ended);
  document.body.dataset.ready = "true";
}

start().catch(() => notice("The page could not start. Reload it, or tell the service desk."));
