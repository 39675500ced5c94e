# METADATA
# title: Release fields
# description: >-
#   Decides, after records are matched to the child and before they are merged, which fields of
#   each record leave the gateway. Every field of every record is either released or withheld with
#   one reason. See docs/policy-decisions.md for the input and output.
package childlookup.release

import rego.v1

import data.childlookup.catalogue

# METADATA
# title: Release decision
# description: >-
#   The fields released and the fields withheld, each with the record it came from, and the
#   records whose holders must be told of this lookup (see owners to notify). The gateway withholds
#   anything this answer leaves out, and everything if the answer is missing or malformed.
# entrypoint: true
decision := {
	"released": released,
	"withheld": withheld,
	"notify": notify,
}

# METADATA
# title: Released fields
# description: Each field of each record that may be released.
released := [{"record": record.id, "field": field} |
	some record in input.records
	some field in record.fields
	releasable_fields[field]
]

# METADATA
# title: Withheld fields
# description: Each field of each record that may not be released, with the reason.
withheld := [{"record": record.id, "field": field, "reason": reason} |
	some record in input.records
	some field in record.fields
	not releasable_fields[field]
	reason := withholding_reason(field)
]

# Set arithmetic rather than asking withholding_reason about each field: rego-cpp takes over a
# millisecond longer that way.

# METADATA
# title: Releasable fields
# description: >-
#   The fields the caller may see for this purpose, less every field but identity while shielding
#   or restriction applies: exactly the fields with no reason to withhold them (a test checks the
#   two agree).
releasable_fields := catalogue.visible_fields - hidden_by_shielding

default hidden_by_shielding := set()

# METADATA
# title: Fields shielding hides
# description: >-
#   A shielded record shows only name, sex, date of birth and ID: every field but identity - the
#   location fields, and the status indicators and sensitive service details besides (a shielded
#   child's plan or service is no one's business but those who may lift the shield).
hidden_by_shielding := catalogue.visible_fields - catalogue.identity_fields if shield_reason

# METADATA
# title: Reason to withhold a field
# description: >-
#   Reasons in order of precedence: any field but identity while shielding or restriction applies
#   (see shield reason) - so a shielded child's sensitive service is not told by its own reason;
#   sensitive service details the grant does not name; then any field the grant does not cover
#   (see refusal reason).
withholding_reason(field) := reason if {
	not field in catalogue.identity_fields
	reason := shield_reason
} else := "SENSITIVE_SERVICE" if {
	field in catalogue.sensitive_fields
	not field in catalogue.visible_fields
} else := reason if {
	not field in catalogue.visible_fields
	reason := refusal_reason(field)
}

# METADATA
# title: Why location fields are hidden
# description: >-
#   The child is shielded; else a source has restricted the record; else the source holding the
#   NHS restricted flag did not answer, so restriction could not be checked; else a source with
#   shielding authority did not answer, so shielding could not be checked. Undefined when none
#   applies. A break-glass grant (see lifts shielding) sets aside shielding, never restriction,
#   nor doubt about it.
shield_reason := "SHIELDED" if {
	is_shielded
	not catalogue.lifts_shielding
} else := "RESTRICTED" if {
	is_restricted
} else := "RESTRICTION_STATUS_UNKNOWN" if {
	not is_restriction_status_known
} else := "SHIELD_STATUS_UNKNOWN" if {
	not is_shield_status_known
	not catalogue.lifts_shielding
}

# METADATA
# title: Why a field the grant does not cover is refused
# description: >-
#   Not permitted for the purpose when the role could see the field under another purpose, else not
#   permitted for the role.
refusal_reason(field) := "NOT_PERMITTED_FOR_PURPOSE" if {
	catalogue.is_granted_for_other_purpose(field)
} else := "NOT_PERMITTED_FOR_ROLE"

# METADATA
# title: Child shielded
# description: >-
#   The child counts as shielded unless the gateway says plainly that it is not: a missing or
#   malformed flag must never reveal where a child is.
is_shielded if not input.child.shielded == false

# METADATA
# title: Record restricted
# description: As with shielding, a child counts as restricted unless plainly said not to be.
is_restricted if not input.child.restricted == false

# METADATA
# title: Shield status known
# description: Every source with shielding authority answered, so the shield flags can be trusted.
is_shield_status_known if input.child.shield_status_known == true

# METADATA
# title: Restriction status known
# description: >-
#   Every source holding the NHS restricted flag answered, so the restricted flag can be trusted.
is_restriction_status_known if input.child.restriction_status_known == true

# --- owner notification -------------------------------------------------------------------------

# METADATA
# title: Owners to notify
# description: >-
#   An obligation the gateway meets once the lookup is audited, as NHS CP-IS tells the local
#   authority: the agency holding each listed record is sent a signed notice of who looked, with
#   what role and purpose, and when. Records are listed by status (see notified for status) and by
#   purpose (see notified for purpose); a record may appear once for each reason.
notify := array.concat(notified_for_status, notified_for_purpose)

# METADATA
# title: Notified for status
# description: >-
#   Each record holding an indicator that data.json (owner_notification.indicators) names, such as
#   a child protection plan or a looked-after child. This does not depend on what the caller may
#   see: the holder must know of the lookup even when the caller cannot see why it matters. The
#   plan fetches these indicators as obligation fields for every permitted lookup, so they reach
#   this rule whether or not the caller's grant covers them.
notified_for_status := [{"record": record.id, "reason": reason} |
	some record in input.records
	some indicator in record.true_indicators
	reason := data.childlookup.owner_notification.indicators[indicator]
]

# METADATA
# title: Notified for purpose
# description: >-
#   Every record, when the caller's role is granted a purpose that data.json
#   (owner_notification.purposes) names, such as a break-glass override: each holder's data may
#   have been shown past a shield, so each holder is told.
notified_for_purpose := [{"record": record.id, "reason": reason} |
	catalogue.is_purpose_granted
	reason := data.childlookup.owner_notification.purposes[input.purpose]
	some record in input.records
]
