// Plain English for every code the gateway answers with (schema.graphql, README's error table).
// A code missing here falls back to the gateway's own message, which is written for
// practitioners too.

export const PURPOSES = {
  SAFEGUARDING_ENQUIRY: "Safeguarding enquiry",
  CHILD_PROTECTION_ENQUIRY: "Child protection (section 47) enquiry",
  DIRECT_CARE: "Direct care",
  SHIELDING_ADMINISTRATION: "Shielding administration",
  EMERGENCY_OVERRIDE: "Emergency override (break-glass)",
  AUDIT_REVIEW: "Audit review",
  OWNER_REVIEW: "Owner's review of access history",
  OPERATIONS: "Service operations",
  UNKNOWN: "Recorded by a newer version of the gateway",
};

export const OUTCOME_HEADINGS = {
  FOUND: "Who is working with this child",
  NOT_FOUND: "No agency knows this child",
  NOT_FOUND_INCOMPLETE: "Not found, but the lookup could not be completed",
  UNAVAILABLE: "The lookup could not be completed",
  AMBIGUOUS: "Possible matches exist",
  DENIED: "This lookup is not allowed",
};

export const OUTCOMES = {
  FOUND: "At least one agency holds a record about this child.",
  NOT_FOUND:
    "Every agency asked answered, and none holds a record about this child as you identified them.",
  NOT_FOUND_INCOMPLETE:
    "No agency that answered holds a record, but some did not answer and may hold one. " +
    "This is not the same as no agency knowing the child: try again shortly.",
  UNAVAILABLE: "No agency answered, so nothing is known either way. Try again shortly.",
  AMBIGUOUS:
    "More than one child fits the details you gave, so nothing is shown. " +
    "Look up by NHS number or UPN, or add details.",
  DENIED: "This lookup was refused, and no agency was asked.",
};

// An ambiguous lookup by NHS number or UPN: the agencies' records under it disagree on who the
// child is, which more details cannot settle - only the agencies, by correcting a record.
export const AMBIGUITIES = {
  NHS_NUMBERS_DIFFER:
    "The agencies' records under this UPN carry different NHS numbers: they are of more than one " +
    "child, so nothing is shown. Ask the agencies to check their records.",
  UPNS_DIFFER:
    "The agencies' records under this NHS number carry different UPNs: they are of more than one " +
    "child, so nothing is shown. Ask the agencies to check their records.",
  DATES_OF_BIRTH_DIFFER:
    "The agencies' records under this number give different dates of birth: one is another " +
    "child's, so nothing is shown. Ask the agencies to check their records.",
};

export const DENIALS = {
  UNKNOWN_ROLE: "Your role has no permission to look up children.",
  PURPOSE_NOT_PERMITTED: "Your role may not look up children for the purpose you chose.",
  JUSTIFICATION_REQUIRED:
    "This purpose needs a justification, and the one given was missing or too short.",
};

export const SOURCE_STATUSES = {
  ANSWERED: "answered with a record",
  NO_RECORD: "answered: holds no record",
  TIMED_OUT: "did not answer in time; it may hold a record",
  FAILED: "could not be asked or gave an unusable answer; it may hold a record",
  WITHHELD: "refused to answer you; it may hold a record",
  NOT_ASKED: "was not asked",
};

export const FAILURES = {
  BAD_REQUEST: "it refused the request",
  UNAUTHENTICATED: "it did not accept the gateway's credentials",
  UNSUPPORTED_VERSION: "it does not speak this protocol version",
  FORBIDDEN: "it refused this caller",
  DEADLINE_EXCEEDED: "it could not answer before the deadline",
  UNAVAILABLE: "it said it is unavailable",
  INTERNAL: "it reported an internal fault",
  TIMEOUT: "no answer in time",
  DEADLINE: "the lookup's time ran out before it was asked",
  CONNECTION_FAILED: "it could not be reached",
  MALFORMED_RESPONSE: "its answer could not be read",
  ANSWER_NOT_TRUSTED: "its answer was not signed as it should be",
  RECORD_MISMATCH: "it returned a record for another child",
  CIRCUIT_OPEN: "it has failed several times in a row and is resting",
  UNKNOWN_AGENCY: "it named an agency this service cannot ask",
  TOO_MANY_AGENCIES: "it named more agencies than a lookup follows",
  UNCONFIRMED_IDENTIFIER: "it could not be asked: no identifier of the child was confirmed",
};

export const REASONS = {
  SHIELDED:
    "The child is shielded: where they can be found is not shown.",
  RESTRICTED:
    "The child's NHS record is restricted: where they can be found is not shown, even in an emergency.",
  RESTRICTION_STATUS_UNKNOWN:
    "It could not be checked whether the child's NHS record is restricted, so where they can be found is not shown, even in an emergency. An agency did not answer, or was asked only by UPN: try again shortly, or look the child up by NHS number.",
  SHIELD_STATUS_UNKNOWN:
    "It could not be checked whether the child is shielded, so where they can be found is not shown. An agency did not answer, or was asked only by UPN: try again shortly, or look the child up by NHS number.",
  SENSITIVE_SERVICE:
    "This is a sensitive service (sexual health, mental health or substance misuse): contact goes through the named broker.",
  NOT_PERMITTED_FOR_PURPOSE: "Your role may see this, but not for the purpose you gave.",
  NOT_PERMITTED_FOR_ROLE: "Your role may not see this for any purpose.",
  POLICY_UNDECIDED: "The access policy did not release it, so it is not shown.",
  UNKNOWN: "Recorded by a newer version of the gateway",
};

export const FIELDS = {
  nhs_number: "NHS number",
  name: "Name",
  date_of_birth: "Date of birth",
  sex: "Sex",
  address: "Home address",
  school: "School",
  gp_practice: "GP practice",
  carers: "Parents and carers",
  involvements: "Practitioners and services",
  sensitive_service_details: "Sensitive service details",
  child_protection_plan: "Child protection plan",
  looked_after: "Looked after",
  child_in_need: "Child in need",
  early_help: "Early help",
};

export const ERRORS = {
  UNAUTHENTICATED: "Your sign-in has ended or was not accepted. Sign in again.",
  IDENTITY_UNAVAILABLE:
    "Your sign-in could not be checked with the identity provider just now. Try again shortly.",
  FORBIDDEN: "Your role may not do this.",
  BAD_REQUEST: "The page sent a request the gateway could not read. Reload the page.",
  OPERATION_NOT_TRUSTED:
    "The gateway does not recognise this version of the page. Reload the page.",
  REQUEST_TOO_LARGE: "What you entered is too long.",
  GRAPHQL_VALIDATION_FAILED: "The page sent a request the gateway could not accept. Reload the page.",
  BAD_USER_INPUT: "Something you entered is not in the form expected. Check the details.",
  INVALID_NHS_NUMBER: "That is not a valid NHS number: check all 10 digits.",
  INVALID_UPN: "That is not a valid unique pupil number: a letter then 12 digits.",
  INVALID_NAME: "A name can hold only letters, spaces, hyphens and apostrophes.",
  INVALID_DATE_OF_BIRTH: "That date of birth is in the future, or too long ago for this service.",
  INVALID_POSTCODE: "That is not a UK postcode (or NFA for no fixed abode).",
  INSUFFICIENT_DETAILS: null, // the gateway's message names what to add
  INVALID_JUSTIFICATION: "The justification is too long.",
  // Either per-minute limit: the user's own, or their organisation's (the gateway's message says
  // which; the code is the same).
  RATE_LIMITED:
    "Too many lookups in the last minute, by you or by your organisation. Wait a minute and try again.",
  LOOKUP_CAP_REACHED:
    "You have looked up today's maximum of different children. This has been reported.",
  LIMITS_UNAVAILABLE: "The lookup could not be counted, so nothing was asked. Try again shortly.",
  OVERLOADED: "The service is very busy; nothing was asked. Try again in a few seconds.",
  POLICY_UNAVAILABLE: "The access policy could not decide, so nothing is shown. Try again shortly.",
  AUDIT_UNAVAILABLE: "The lookup could not be recorded, so nothing is shown. Try again shortly.",
  INTERNAL_ERROR: "Something went wrong in the service. Try again, and tell the service desk if it persists.",
  NETWORK: "The gateway could not be reached. Check your connection and try again.",
  NOT_THE_OWNER:
    "Only the organisation that holds a child's child protection plan or looked-after status " +
    "can see who has looked at the child, and your organisation holds neither.",
};

export const AUDIT_OUTCOMES = {
  FOUND: "Found",
  NOT_FOUND: "Not found",
  NOT_FOUND_INCOMPLETE: "Not found, incomplete",
  UNAVAILABLE: "No agency answered",
  AMBIGUOUS: "Possible matches",
  HIDDEN: "Answered as not found (hidden child)",
  DENIED: "Denied",
  REFUSED: "Refused by a limit",
  ERROR: "Failed",
  AUDIT_TRAIL_VIEWED: "Audit trail viewed",
  ACCESS_HISTORY_VIEWED: "Access history viewed",
  USER_TRAIL_VIEWED: "A user's audit trail viewed",
  ALERTS_VIEWED: "Alerts viewed",
  UNDELIVERED_VIEWED: "Undelivered notifications viewed",
  NOTIFICATION_PASSED_ON: "Notification passed on by other means",
  UNKNOWN: "Recorded by a newer version of the gateway",
};

// The usage limit a refused lookup reached (a limit alert's kind).
export const LIMITS = {
  RATE_LIMITED: "Too many lookups in a minute",
  ORGANISATION_RATE_LIMITED: "Too many lookups in a minute from the organisation",
  DISTINCT_CHILDREN_CAP: "Too many different children in a day",
};

// Why an owner notification's last delivery attempt failed (gateway.audit.notify).
const DELIVERY_ERRORS = {
  UNREACHABLE: "The agency's endpoint could not be reached",
  TIMEOUT: "The agency did not answer in time",
  BAD_RECEIPT: "The agency's answer was not a receipt for it",
  RECEIPT_NOT_TRUSTED: "The agency's receipt was not signed with its key",
  NO_ENDPOINT: "No endpoint is configured for the agency",
};

export function deliveryWords(code) {
  const status = /^HTTP_(\d+)$/.exec(code);
  if (status) return `The agency answered with HTTP status ${status[1]}`;
  return DELIVERY_ERRORS[code] || code;
}

const ROLES = {
  school_dsl: "school designated safeguarding lead",
  ed_clinician: "emergency department clinician",
  gp: "GP",
  la_shielding_admin: "local authority shielding administrator",
};

export function roleWords(role) {
  return ROLES[role] || role.replaceAll("_", " ");
}

export function capitalised(words) {
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function errorWords(code, message) {
  return ERRORS[code] || message || ERRORS.INTERNAL_ERROR;
}

const DATE = new Intl.DateTimeFormat("en-GB", {
  day: "numeric", month: "short", year: "numeric", timeZone: "UTC",
});
const MOMENT = new Intl.DateTimeFormat("en-GB", {
  day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
});

export function dateWords(value) {
  if (!value) return "";
  const date = new Date(value.length === 10 ? `${value}T00:00:00Z` : value);
  return Number.isNaN(date.getTime()) ? value : (value.length === 10 ? DATE : MOMENT).format(date);
}
