# METADATA
# title: Catalogue and grants
# description: >-
#   The vocabulary the plan and release decisions share: which category each field belongs to, and
#   which fields the caller's role may see for the purpose they stated. The catalogue itself
#   (fields, field groups, purposes, roles and their grants) lives in data.json; these rules only
#   read it, so a grant is changed by editing data.json, not this file.
package childlookup.catalogue

import rego.v1

# METADATA
# title: Identity fields
# description: Fields that say who the child is (NHS number, name, date of birth, sex).
identity_fields contains field if {
	some field, entry in data.childlookup.fields
	entry.category == "identity"
}

# METADATA
# title: Location fields
# description: >-
#   Fields that could lead someone to the child (address, school, GP practice, carers,
#   involvements). These are the fields shielding and restriction hide.
location_fields contains field if {
	some field, entry in data.childlookup.fields
	entry.category == "location"
}

# METADATA
# title: Sensitive fields
# description: >-
#   Provider details of a sexual-health, mental-health or substance-misuse service. Shown only when
#   a grant names the field itself.
sensitive_fields contains field if {
	some field, entry in data.childlookup.fields
	entry.category == "sensitive"
}

# METADATA
# title: Known role
# description: The caller's role is one the catalogue lists.
is_known_role if data.childlookup.roles[input.caller.role]

# METADATA
# title: Grant for this lookup
# description: What the caller's role is granted for the stated purpose; undefined when nothing is.
grant := data.childlookup.roles[input.caller.role].grants[input.purpose]

# METADATA
# title: Grant lifts shielding
# description: >-
#   The grant for this purpose is a break-glass override: location fields of a shielded child (or
#   one whose shielding could not be checked) are released for this one lookup. It never lifts an
#   NHS restriction or the brokering of sensitive services. Only the break-glass purpose lifts a
#   shield, and only while its safeguards stand (see break-glass safeguards): a grant for any other
#   purpose that says lifts_shielding lifts nothing.
lifts_shielding if {
	grant.lifts_shielding == true
	input.purpose == break_glass_purpose
	has_break_glass_safeguards
}

# METADATA
# title: Break-glass purpose
# description: >-
#   The one purpose whose use the gateway flags for immediate investigation and raises an alert on
#   (gateway/audit/record.py): a shield lifted under any other would be lifted unseen.
break_glass_purpose := "EMERGENCY_OVERRIDE"

# METADATA
# title: Break-glass safeguards
# description: >-
#   The stated purpose needs a written justification, and every holder of a record it reaches is
#   told of it (owner_notification.purposes in data.json). Without both, no grant lifts a shield.
has_break_glass_safeguards if {
	data.childlookup.purposes[input.purpose].justification_required == true
	data.childlookup.owner_notification.purposes[input.purpose]
}

# METADATA
# title: Purpose granted
# description: The caller's role has a grant for the stated purpose, even an identity-only one.
is_purpose_granted if grant

# METADATA
# title: Field granted for another purpose
# description: >-
#   The caller's role could see this field had it stated another purpose. A refused field is then
#   reported as not permitted for the purpose rather than for the role, which tells the
#   practitioner that the right purpose, not another colleague, would show it.
is_granted_for_other_purpose(field) if {
	some purpose, other in data.childlookup.roles[input.caller.role].grants
	purpose != input.purpose
	field in identity_fields | fields_of_grant(other)
}

# METADATA
# title: Fields the grant adds
# description: >-
#   Fields the grant for the stated purpose names, directly or through a field group (see fields
#   of a grant). Undefined when the role has no grant for the purpose.
granted_fields := fields_of_grant(grant)

# METADATA
# title: Fields of a grant
# description: >-
#   Fields a grant names, directly or through a field group. A field group never adds a sensitive
#   field: sensitive service details are granted only by naming them. A name that is neither a
#   catalogued field nor a field group adds nothing.
fields_of_grant(g) := named | grouped if {
	named := {field |
		some field in g.fields
		data.childlookup.fields[field]
	}
	grouped := {field |
		some group in g.fields
		some field in data.childlookup.field_groups[group].fields
		not field in sensitive_fields
	}
}

# METADATA
# title: Fields the caller may see
# description: >-
#   The identity fields, needed to match records, plus the fields the grant adds. Empty when the
#   role has no grant for the purpose.
default visible_fields := set()

visible_fields := identity_fields | granted_fields if is_purpose_granted
