# METADATA
# title: Tests of the release decision
# description: >-
#   Which fields of a matched record leave the gateway, and the reason for each one withheld:
#   shielding and restriction first, then sensitive services, then what the role may not see.
package childlookup.release_test

import rego.v1

import data.childlookup.release

import data.childlookup.catalogue

identity := {"nhs_number", "name", "date_of_birth", "sex"}

location := {"address", "school", "gp_practice", "carers", "involvements"}

indicators := {"child_protection_plan", "looked_after", "child_in_need", "early_help"}

# A shielded record shows only name, sex, date of birth and ID: every other field is withheld,
# for the shield's reason.
beyond_identity := {field | some field in every_field} - identity

every_field := [
	"nhs_number", "name", "date_of_birth", "sex",
	"address", "school", "gp_practice", "carers", "involvements",
	"sensitive_service_details",
	"child_protection_plan", "looked_after", "child_in_need", "early_help",
]

clear_child := {
	"shielded": false, "restricted": false,
	"shield_status_known": true, "restriction_status_known": true,
}

shielded_child := {
	"shielded": true, "restricted": false,
	"shield_status_known": true, "restriction_status_known": true,
}

restricted_child := {
	"shielded": false, "restricted": true,
	"shield_status_known": true, "restriction_status_known": true,
}

unchecked_child := {
	"shielded": false, "restricted": false,
	"shield_status_known": false, "restriction_status_known": true,
}

# The source holding the NHS restricted flag did not answer.
restriction_unchecked_child := {
	"shielded": false, "restricted": false,
	"shield_status_known": true, "restriction_status_known": false,
}

release_for(role, purpose, child) := release_records(role, purpose, child, [{
	"id": "health:H1",
	"source": "health",
	"fields": every_field,
}])

release_records(role, purpose, child, records) := decision if {
	decision := release.decision with input.caller as {"role": role, "organisation": "X00001"}
		with input.purpose as purpose
		with input.child as child
		with input.records as records
}

released_fields(decision) := {item.field | some item in decision.released}

withheld_for(decision, reason) := {item.field |
	some item in decision.withheld
	item.reason == reason
}

reason_for(decision, field) := item.reason if {
	some item in decision.withheld
	item.field == field
}

# Cases are listed first so that each check is a single `every` whose body negates or nests only
# inside helper functions: rego-cpp loses an `every` variable in a nested `every`, comprehension or
# `not`, and the check then silently fails or passes.
granted_pairs contains [role, purpose] if {
	some role, entry in data.childlookup.roles
	some purpose, _ in entry.grants
}

every_role_and_purpose contains [role, purpose] if {
	some role in roles_and_a_stranger
	some purpose, _ in data.childlookup.purposes
}

roles_and_a_stranger contains role if some role, _ in data.childlookup.roles

roles_and_a_stranger contains "janitor"

every_case contains [role, purpose, child] if {
	some [role, purpose] in every_role_and_purpose
	some child in [
		clear_child, shielded_child, restricted_child, unchecked_child,
		restriction_unchecked_child,
	]
}

# --- identity -----------------------------------------------------------------------------------

test_identity_is_released_to_every_permitted_role_even_when_shielded if {
	count(granted_pairs) > 0
	every pair in granted_pairs {
		decision := release_for(pair[0], pair[1], shielded_child)
		identity - released_fields(decision) == set()
	}
}

# --- shielding and restriction ------------------------------------------------------------------

test_a_break_glass_override_releases_a_shielded_childs_location if {
	decision := release_for("social_worker", "EMERGENCY_OVERRIDE", shielded_child)
	{"address", "school", "gp_practice", "carers", "involvements"} - released_fields(decision) == set()
}

test_a_break_glass_override_releases_location_when_shielding_could_not_be_checked if {
	decision := release_for("police_safeguarding", "EMERGENCY_OVERRIDE", unchecked_child)
	"address" in released_fields(decision)
}

test_a_break_glass_override_never_lifts_an_nhs_restriction if {
	decision := release_for("social_worker", "EMERGENCY_OVERRIDE", restricted_child)
	reason_for(decision, "address") == "RESTRICTED"
}

test_a_break_glass_override_still_brokers_sensitive_services if {
	decision := release_for("social_worker", "EMERGENCY_OVERRIDE", shielded_child)
	reason_for(decision, "sensitive_service_details") == "SENSITIVE_SERVICE"
}

test_only_override_grants_lift_shielding if {
	catalogue.lifts_shielding with input.caller.role as "social_worker"
		with input.purpose as "EMERGENCY_OVERRIDE"
	not catalogue.lifts_shielding with input.caller.role as "social_worker"
		with input.purpose as "CHILD_PROTECTION_ENQUIRY"
}

test_a_grant_for_another_purpose_never_lifts_shielding if {
	not catalogue.lifts_shielding with input.caller.role as "social_worker"
		with input.purpose as "CHILD_PROTECTION_ENQUIRY"
		with data.childlookup.roles.social_worker.grants.CHILD_PROTECTION_ENQUIRY.lifts_shielding as true
	decision := release_for("social_worker", "CHILD_PROTECTION_ENQUIRY", shielded_child)
		with data.childlookup.roles.social_worker.grants.CHILD_PROTECTION_ENQUIRY.lifts_shielding as true
	reason_for(decision, "address") == "SHIELDED"
}

test_break_glass_without_a_required_justification_lifts_nothing if {
	not catalogue.lifts_shielding with input.caller.role as "social_worker"
		with input.purpose as "EMERGENCY_OVERRIDE"
		with data.childlookup.purposes.EMERGENCY_OVERRIDE.justification_required as false
}

test_break_glass_that_tells_no_holder_lifts_nothing if {
	not catalogue.lifts_shielding with input.caller.role as "social_worker"
		with input.purpose as "EMERGENCY_OVERRIDE"
		with data.childlookup.owner_notification.purposes as {}
}

test_shielded_childs_location_is_withheld_from_a_social_worker if {
	decision := release_for("social_worker", "CHILD_PROTECTION_ENQUIRY", shielded_child)
	withheld_for(decision, "SHIELDED") == beyond_identity
	released_fields(decision) == identity
}

test_restricted_records_location_is_withheld if {
	decision := release_for("health_visitor", "SAFEGUARDING_ENQUIRY", restricted_child)
	withheld_for(decision, "RESTRICTED") == beyond_identity
	released_fields(decision) == identity
}

test_location_is_withheld_when_restriction_could_not_be_checked if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", restriction_unchecked_child)
	withheld_for(decision, "RESTRICTION_STATUS_UNKNOWN") == beyond_identity
	released_fields(decision) == identity
}

test_a_restriction_status_not_plainly_known_counts_as_unknown if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": false, "restricted": false, "shield_status_known": true,
	})
	withheld_for(decision, "RESTRICTION_STATUS_UNKNOWN") == beyond_identity
}

test_a_break_glass_override_never_sets_aside_doubt_about_a_restriction if {
	decision := release_for("police_safeguarding", "EMERGENCY_OVERRIDE", restriction_unchecked_child)
	reason_for(decision, "address") == "RESTRICTION_STATUS_UNKNOWN"
}

test_restricted_comes_before_unknown_restriction_and_that_before_unknown_shielding if {
	restricted := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": false, "restricted": true,
		"shield_status_known": false, "restriction_status_known": false,
	})
	reason_for(restricted, "address") == "RESTRICTED"
	unknown := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": false, "restricted": false,
		"shield_status_known": false, "restriction_status_known": false,
	})
	reason_for(unknown, "address") == "RESTRICTION_STATUS_UNKNOWN"
}

test_location_is_withheld_when_shielding_could_not_be_checked if {
	decision := release_for("gp", "DIRECT_CARE", unchecked_child)
	withheld_for(decision, "SHIELD_STATUS_UNKNOWN") == beyond_identity
}

test_granted_location_is_released_for_a_clear_child if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", clear_child)
	released_fields(decision) == (identity | location) | indicators
}

test_missing_flags_count_as_shielded if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {})
	withheld_for(decision, "SHIELDED") == beyond_identity
}

test_flags_that_are_not_plainly_false_count_as_set if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": false,
		"restricted": "false",
		"shield_status_known": true,
	})
	withheld_for(decision, "RESTRICTED") == beyond_identity
}

# --- sensitive services -------------------------------------------------------------------------

test_sensitive_service_details_are_withheld_from_everyone_by_default if {
	count(every_case) > 0
	every case in every_case {
		decision := release_for(case[0], case[1], case[2])
		reason_for(decision, "sensitive_service_details") in {
			"SENSITIVE_SERVICE", "SHIELDED", "RESTRICTED", "RESTRICTION_STATUS_UNKNOWN",
			"SHIELD_STATUS_UNKNOWN",
		}
	}
}

test_a_shielded_childs_sensitive_service_is_withheld_as_shielded_not_told_by_its_own_reason if {
	shielded := release_for("social_worker", "SAFEGUARDING_ENQUIRY", shielded_child)
	clear := release_for("social_worker", "SAFEGUARDING_ENQUIRY", clear_child)
	reason_for(shielded, "sensitive_service_details") == "SHIELDED"
	reason_for(clear, "sensitive_service_details") == "SENSITIVE_SERVICE"
}

test_sensitive_service_details_are_released_when_a_grant_names_them if {
	decision := release_for("gp", "DIRECT_CARE", clear_child)
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["sensitive_service_details"]
	"sensitive_service_details" in released_fields(decision)
}

test_field_group_does_not_release_sensitive_service_details if {
	decision := release_for("gp", "DIRECT_CARE", clear_child)
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["all_indicators"]
		with data.childlookup.field_groups.all_indicators.fields as ["sensitive_service_details"]
	reason_for(decision, "sensitive_service_details") == "SENSITIVE_SERVICE"
}

# --- what the role may not see ------------------------------------------------------------------

test_field_granted_for_another_purpose_is_not_permitted_for_this_purpose if {
	decision := release_for("police_safeguarding", "SAFEGUARDING_ENQUIRY", clear_child)
	reason_for(decision, "address") == "NOT_PERMITTED_FOR_PURPOSE"
}

test_school_dsl_is_not_permitted_address_or_gp_practice if {
	decision := release_for("school_dsl", "SAFEGUARDING_ENQUIRY", clear_child)
	reason_for(decision, "address") == "NOT_PERMITTED_FOR_ROLE"
	reason_for(decision, "gp_practice") == "NOT_PERMITTED_FOR_ROLE"
}

test_role_without_a_grant_for_the_purpose_gets_nothing if {
	decision := release_for("school_dsl", "DIRECT_CARE", clear_child)
	decision.released == []
	reason_for(decision, "name") == "NOT_PERMITTED_FOR_PURPOSE"
}

test_unknown_role_gets_nothing if {
	decision := release_for("janitor", "SAFEGUARDING_ENQUIRY", clear_child)
	decision.released == []
	reason_for(decision, "name") == "NOT_PERMITTED_FOR_ROLE"
	reason_for(decision, "address") == "NOT_PERMITTED_FOR_ROLE"
}

test_uncatalogued_field_is_withheld if {
	decision := release_records("social_worker", "SAFEGUARDING_ENQUIRY", clear_child, [{
		"id": "health:H1",
		"source": "health",
		"fields": ["name", "favourite_colour"],
	}])
	released_fields(decision) == {"name"}
	reason_for(decision, "favourite_colour") == "NOT_PERMITTED_FOR_ROLE"
}

test_field_no_purpose_of_the_role_grants_is_not_permitted_for_the_role if {
	# The health visitor may look up for direct care too, but no purpose shows them the school.
	decision := release_for("health_visitor", "SAFEGUARDING_ENQUIRY", clear_child)
	reason_for(decision, "school") == "NOT_PERMITTED_FOR_ROLE"
}

# --- precedence of reasons ----------------------------------------------------------------------

test_shielded_comes_before_restricted_and_unchecked if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": true,
		"restricted": true,
		"shield_status_known": false,
	})
	reason_for(decision, "address") == "SHIELDED"
}

test_restricted_comes_before_unchecked if {
	decision := release_for("social_worker", "SAFEGUARDING_ENQUIRY", {
		"shielded": false,
		"restricted": true,
		"shield_status_known": false,
	})
	reason_for(decision, "address") == "RESTRICTED"
}

test_shielded_comes_before_not_permitted if {
	decision := release_for("school_dsl", "SAFEGUARDING_ENQUIRY", shielded_child)
	reason_for(decision, "gp_practice") == "SHIELDED"
}

test_sensitive_service_comes_before_not_permitted if {
	decision := release_for("janitor", "SAFEGUARDING_ENQUIRY", clear_child)
	reason_for(decision, "sensitive_service_details") == "SENSITIVE_SERVICE"
}

# --- completeness -------------------------------------------------------------------------------

test_every_field_of_every_record_is_decided_exactly_once if {
	records := [
		{"id": "health:H1", "source": "health", "fields": every_field},
		{"id": "education:E1", "source": "education", "fields": ["name", "school", "early_help"]},
	]
	asked := {[record.id, field] | some record in records; some field in record.fields}
	every case in every_case {
		decision := release_records(case[0], case[1], case[2], records)
		count(decision.released) + count(decision.withheld) == count(asked)
		decided_pairs(decision) == asked
	}
}

test_releasable_fields_are_exactly_those_without_a_reason_to_withhold if {
	every case in every_case {
		releasable_fields_have_no_reason(case[0], case[1], case[2])
	}
}

releasable_fields_have_no_reason(role, purpose, child) if {
	contradicted := {field |
		some field in release.releasable_fields
		release.withholding_reason(field)
	} with input.caller as {"role": role, "organisation": "X00001"}
		with input.purpose as purpose
		with input.child as child
	contradicted == set()
}

decided_pairs(decision) := {[item.record, item.field] |
	some item in array.concat(decision.released, decision.withheld)
}

# --- owner notification -------------------------------------------------------------------------

la_record(true_indicators) := {
	"id": "0",
	"source": "social_care",
	"fields": ["name", "child_protection_plan", "looked_after", "child_in_need"],
	"true_indicators": true_indicators,
}

health_record := {"id": "1", "source": "health", "fields": ["name", "address"]}

notify_for(role, purpose, records) := release_records(role, purpose, clear_child, records).notify

test_a_child_protection_plan_notifies_the_holder_of_that_record if {
	records := [la_record(["child_protection_plan"]), health_record]
	notify := notify_for("ed_clinician", "DIRECT_CARE", records)
	notify == [{"record": "0", "reason": "CHILD_PROTECTION_PLAN"}]
}

test_a_looked_after_child_notifies_the_holder_of_that_record if {
	notify := notify_for("gp", "DIRECT_CARE", [health_record, la_record(["looked_after"])])
	notify == [{"record": "0", "reason": "LOOKED_AFTER"}]
}

test_each_notifying_status_is_a_reason if {
	notify := notify_for("gp", "DIRECT_CARE", [la_record(["child_protection_plan", "looked_after"])])
	{item.reason | some item in notify} == {"CHILD_PROTECTION_PLAN", "LOOKED_AFTER"}
}

test_other_statuses_notify_nobody if {
	records := [la_record(["child_in_need", "early_help"])]
	notify_for("social_worker", "SAFEGUARDING_ENQUIRY", records) == []
}

test_an_ordinary_lookup_notifies_nobody if {
	notify_for("social_worker", "SAFEGUARDING_ENQUIRY", [la_record([]), health_record]) == []
}

test_a_record_without_indicators_notifies_nobody if {
	notify_for("gp", "DIRECT_CARE", [health_record]) == []
}

test_the_holder_is_notified_even_when_the_caller_may_not_see_the_status if {
	records := [la_record(["child_protection_plan"])]
	decision := release_records("la_shielding_admin", "SHIELDING_ADMINISTRATION", clear_child, records)
	not "child_protection_plan" in released_fields(decision)
	decision.notify == [{"record": "0", "reason": "CHILD_PROTECTION_PLAN"}]
}

test_notifying_statuses_come_from_data if {
	notify := notify_for("gp", "DIRECT_CARE", [la_record(["child_protection_plan"])])
		with data.childlookup.owner_notification.indicators as {"child_in_need": "LOOKED_AFTER"}
	notify == []
}

test_a_break_glass_override_notifies_every_record_holder if {
	notify := notify_for("police_safeguarding", "EMERGENCY_OVERRIDE", [la_record([]), health_record])
	notify == [
		{"record": "0", "reason": "EMERGENCY_OVERRIDE"},
		{"record": "1", "reason": "EMERGENCY_OVERRIDE"},
	]
}

test_an_override_of_a_child_on_a_plan_gives_both_reasons if {
	notify := notify_for("social_worker", "EMERGENCY_OVERRIDE", [la_record(["child_protection_plan"])])
	notify == [
		{"record": "0", "reason": "CHILD_PROTECTION_PLAN"},
		{"record": "0", "reason": "EMERGENCY_OVERRIDE"},
	]
}

test_an_override_the_role_is_not_granted_notifies_for_status_only if {
	notify := notify_for("gp", "EMERGENCY_OVERRIDE", [la_record(["looked_after"]), health_record])
	notify == [{"record": "0", "reason": "LOOKED_AFTER"}]
}

test_other_purposes_notify_for_status_only if {
	every pair in granted_pairs {
		not_notified_for_purpose(pair[0], pair[1])
	}
}

not_notified_for_purpose(_, "EMERGENCY_OVERRIDE")

not_notified_for_purpose(role, purpose) if {
	purpose != "EMERGENCY_OVERRIDE"
	notify_for(role, purpose, [health_record]) == []
}
