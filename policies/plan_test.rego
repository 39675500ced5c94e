# METADATA
# title: Tests of the plan decision
# description: >-
#   Who may look up a child for which purpose, which fields are requested and which sources are
#   asked. The grants table below restates data.json on purpose: widening a grant must change both,
#   so it cannot happen by accident.
package childlookup.plan_test

import rego.v1

import data.childlookup.plan

identity := {"nhs_number", "name", "date_of_birth", "sex"}

# What each role may see beyond identity, per purpose. Any pair not listed is refused.
# (rego-cpp rejects an operator such as `|` inside an object literal, so the sets are spelled out.)
grants_table := {
	"social_worker": {
		"SAFEGUARDING_ENQUIRY": {
			"address", "school", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
		"CHILD_PROTECTION_ENQUIRY": {
			"address", "school", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
		"EMERGENCY_OVERRIDE": {
			"address", "school", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
	},
	"police_safeguarding": {
		"CHILD_PROTECTION_ENQUIRY": {
			"address", "school", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
		"SAFEGUARDING_ENQUIRY": {"involvements", "child_protection_plan", "looked_after"},
		"EMERGENCY_OVERRIDE": {
			"address", "school", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
	},
	"health_visitor": {
		"SAFEGUARDING_ENQUIRY": {
			"address", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
		"DIRECT_CARE": {"address", "gp_practice", "carers", "involvements"},
	},
	"school_nurse": {
		"SAFEGUARDING_ENQUIRY": {
			"address", "gp_practice", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
		"DIRECT_CARE": {"address", "gp_practice", "carers", "involvements"},
	},
	"gp": {
		"DIRECT_CARE": {
			"address", "carers", "involvements", "child_protection_plan", "looked_after",
		},
		"SAFEGUARDING_ENQUIRY": {
			"address", "carers", "involvements", "child_protection_plan", "looked_after",
		},
	},
	"ed_clinician": {
		"DIRECT_CARE": {"gp_practice", "carers", "involvements", "child_protection_plan", "looked_after"},
	},
	"school_dsl": {
		"SAFEGUARDING_ENQUIRY": {
			"school", "carers", "involvements",
			"child_protection_plan", "looked_after", "child_in_need", "early_help",
		},
	},
	"la_shielding_admin": {"SHIELDING_ADMINISTRATION": set()},
}

sources := [
	{
		"name": "pds",
		"provides": ["nhs_number", "name", "date_of_birth", "sex"],
		"shield_authority": false,
	},
	{
		"name": "health",
		"provides": ["nhs_number", "name", "address", "gp_practice"],
		"shield_authority": false,
	},
	{"name": "education", "provides": ["name", "school"], "shield_authority": false},
	{
		"name": "social_care",
		"provides": ["nhs_number", "name", "carers", "child_protection_plan", "looked_after"],
		"shield_authority": true,
	},
]

plan_for(role, purpose) := plan_justified(role, purpose, 38)

plan_justified(role, purpose, justification_chars) := decision if {
	# rego-cpp reads `with ... as <rule>` as undefined; a local variable works.
	offered := sources
	decision := plan.decision with input.caller as {"role": role, "organisation": "X00001"}
		with input.purpose as purpose
		with input.justification_chars as justification_chars
		with input.sources as offered
}

# Every role and purpose pair, so that each check is a single `every` whose body negates or nests
# only inside helper functions: rego-cpp loses an `every` variable in a nested `every`,
# comprehension or `not`, and the check then silently fails or passes.
every_role_and_purpose contains [role, purpose] if {
	some role, _ in data.childlookup.roles
	some purpose, _ in data.childlookup.purposes
}

refused(denial) := {
	"permitted": false,
	"denial": denial,
	"fields": [],
	"obligation_fields": [],
	"sources": [],
}

# --- who may look up, and what they see ---------------------------------------------------------

test_every_role_and_purpose_is_planned_as_the_grants_table_says if {
	count(every_role_and_purpose) == count(data.childlookup.roles) * count(data.childlookup.purposes)
	every pair in every_role_and_purpose {
		is_planned_as_the_table_says(pair[0], pair[1])
	}
}

is_planned_as_the_table_says(role, purpose) if {
	granted := grants_table[role][purpose]
	planned := {field | some field in plan_for(role, purpose).fields}
	planned == identity | granted
}

is_planned_as_the_table_says(role, purpose) if {
	not grants_table[role][purpose]
	plan_for(role, purpose) == refused("PURPOSE_NOT_PERMITTED")
}

test_every_role_in_the_grants_table_is_catalogued if {
	every role, _ in grants_table {
		data.childlookup.roles[role]
	}
}

test_permitted_plan if {
	plan_for("health_visitor", "DIRECT_CARE") == {
		"permitted": true,
		"denial": null,
		"fields": [
			"address", "carers", "date_of_birth", "gp_practice",
			"involvements", "name", "nhs_number", "sex",
		],
		"obligation_fields": ["child_protection_plan", "looked_after"],
		"sources": ["health", "social_care"],
	}
}

test_school_dsl_is_not_planned_gp_practice_or_address if {
	fields := plan_for("school_dsl", "SAFEGUARDING_ENQUIRY").fields
	not "gp_practice" in fields
	not "address" in fields
}

test_sensitive_service_details_are_never_planned_by_default if {
	every pair in every_role_and_purpose {
		plans_no_sensitive_service_details(plan_for(pair[0], pair[1]))
	}
}

plans_no_sensitive_service_details(decision) if {
	is_array(decision.fields)
	not "sensitive_service_details" in decision.fields
}

test_sensitive_service_details_are_planned_when_a_grant_names_them if {
	fields := plan_for("gp", "DIRECT_CARE").fields
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["sensitive_service_details"]
	"sensitive_service_details" in fields
}

# --- refusals -----------------------------------------------------------------------------------

test_unknown_role_is_refused if {
	plan_for("janitor", "SAFEGUARDING_ENQUIRY") == refused("UNKNOWN_ROLE")
}

test_caller_without_a_role_is_refused_as_unknown if {
	offered := sources
	decision := plan.decision with input.caller as {"organisation": "X00001"}
		with input.purpose as "SAFEGUARDING_ENQUIRY"
		with input.sources as offered
	decision == refused("UNKNOWN_ROLE")
}

test_purpose_the_role_has_no_grant_for_is_refused if {
	plan_for("school_dsl", "DIRECT_CARE") == refused("PURPOSE_NOT_PERMITTED")
}

test_uncatalogued_purpose_is_refused if {
	plan_for("social_worker", "CURIOSITY") == refused("PURPOSE_NOT_PERMITTED")
}

test_child_protection_enquiry_without_justification_is_refused if {
	decision := plan_justified("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", 0)
	decision == refused("JUSTIFICATION_REQUIRED")
}

test_malformed_justification_length_counts_as_none if {
	decision := plan_justified("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", "many")
	decision == refused("JUSTIFICATION_REQUIRED")
}

test_an_override_needs_a_justification_of_the_purposes_minimum_length if {
	short := plan_justified("social_worker", "EMERGENCY_OVERRIDE", 19)
	short == refused("JUSTIFICATION_REQUIRED")
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", 20).permitted
}

test_an_override_is_refused_to_roles_without_the_grant if {
	plan_for("gp", "EMERGENCY_OVERRIDE") == refused("PURPOSE_NOT_PERMITTED")
}

test_child_protection_enquiry_with_justification_is_permitted if {
	plan_for("police_safeguarding", "CHILD_PROTECTION_ENQUIRY").permitted
}

test_safeguarding_enquiry_needs_no_justification if {
	plan_justified("health_visitor", "SAFEGUARDING_ENQUIRY", 0).permitted
}

test_unknown_role_is_reported_before_the_purpose if {
	plan_for("janitor", "CURIOSITY").denial == "UNKNOWN_ROLE"
}

test_ungranted_purpose_is_reported_before_a_missing_justification if {
	plan_justified("school_dsl", "CHILD_PROTECTION_ENQUIRY", 0).denial == "PURPOSE_NOT_PERMITTED"
}

# --- sources ------------------------------------------------------------------------------------

test_source_holding_a_requested_field_is_asked if {
	"education" in plan_for("school_dsl", "SAFEGUARDING_ENQUIRY").sources
}

test_source_holding_only_fields_the_caller_may_not_see_is_not_asked if {
	not "health" in plan_for("school_dsl", "SAFEGUARDING_ENQUIRY").sources
}

test_source_holding_only_identity_fields_is_not_asked if {
	not "pds" in plan_for("social_worker", "SAFEGUARDING_ENQUIRY").sources
}

test_shield_authority_is_asked_even_when_nothing_it_holds_is_shown if {
	plan_for("la_shielding_admin", "SHIELDING_ADMINISTRATION").sources == ["social_care"]
}

test_sources_are_listed_in_order_whatever_order_they_are_offered_in if {
	offered := [
		{"name": "social_care", "provides": ["looked_after"], "shield_authority": true},
		{"name": "health", "provides": ["address"], "shield_authority": false},
		{"name": "education", "provides": ["school"], "shield_authority": false},
	]
	decision := plan.decision with input.caller as {"role": "social_worker", "organisation": "X00001"}
		with input.purpose as "SAFEGUARDING_ENQUIRY"
		with input.sources as offered
	decision.sources == ["education", "health", "social_care"]
}

test_refused_lookup_asks_no_source_not_even_the_shield_authority if {
	plan_for("school_dsl", "DIRECT_CARE").sources == []
}

# --- fields fetched only to meet obligations ----------------------------------------------------

test_a_plan_status_the_caller_may_not_see_is_still_fetched_for_owner_notification if {
	plan := plan_for("health_visitor", "DIRECT_CARE")
	not "child_protection_plan" in plan.fields
	"child_protection_plan" in plan.obligation_fields
	"looked_after" in plan.obligation_fields
}

test_a_status_the_caller_may_see_is_not_fetched_twice if {
	plan := plan_for("social_worker", "SAFEGUARDING_ENQUIRY")
	"child_protection_plan" in plan.fields
	plan.obligation_fields == []
}
