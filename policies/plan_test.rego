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

# A justification as the gateway counts it: letters, and words holding at least one letter.
justification(words, letters) := {"words": words, "letters": letters}

no_justification := justification(0, 0)

# "Strategy discussion agreed an urgent visit to the child at home today."
a_real_sentence := justification(12, 58)

plan_for(role, purpose) := plan_justified(role, purpose, a_real_sentence)

plan_justified(role, purpose, counts) := decision if {
	# rego-cpp reads `with ... as <rule>` as undefined; a local variable works.
	offered := sources
	decision := plan.decision with input.caller as {"role": role, "organisation": "X00001"}
		with input.purpose as purpose
		with input.justification as counts
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
	decision := plan_justified("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", no_justification)
	decision == refused("JUSTIFICATION_REQUIRED")
}

test_malformed_justification_counts_count_as_none if {
	many := {"words": "many", "letters": "lots"}
	plan_justified("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", many) == refused("JUSTIFICATION_REQUIRED")
	negative := {"words": 12, "letters": -58}
	plan_justified("police_safeguarding", "CHILD_PROTECTION_ENQUIRY", negative) == refused("JUSTIFICATION_REQUIRED")
}

test_a_lookup_that_sends_no_justification_counts_is_refused_where_one_is_required if {
	offered := sources
	decision := plan.decision with input.caller as {"role": "social_worker", "organisation": "X00001"}
		with input.purpose as "EMERGENCY_OVERRIDE"
		with input.sources as offered
	decision == refused("JUSTIFICATION_REQUIRED")
}

# The minimum for break-glass, restated from data.json on purpose (as the grants table is):
# lowering it must change both.
test_an_override_needs_at_least_four_words_and_twenty_letters if {
	data.childlookup.purposes.EMERGENCY_OVERRIDE.justification.min_words == 4
	data.childlookup.purposes.EMERGENCY_OVERRIDE.justification.min_letters == 20
}

test_an_override_with_exactly_the_minimum_justification_is_permitted if {
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(4, 20)).permitted
}

test_an_override_justified_only_by_invisible_characters_is_refused if {
	# 21 zero-width spaces: nothing is left once the gateway removes what prints as nothing.
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", no_justification) == refused("JUSTIFICATION_REQUIRED")
}

test_an_override_justified_by_one_long_word_is_refused if {
	# "aaaaaaaaaaaaaaaaaaaa": twenty letters, one word.
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(1, 20)) == refused("JUSTIFICATION_REQUIRED")
}

test_an_override_justified_by_three_words_is_refused if {
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(3, 40)) == refused("JUSTIFICATION_REQUIRED")
}

test_an_override_justified_by_four_short_words_is_refused if {
	plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(4, 19)) == refused("JUSTIFICATION_REQUIRED")
}

test_the_minimum_is_read_from_data if {
	raised := plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(4, 20))
		with data.childlookup.purposes.EMERGENCY_OVERRIDE.justification as {"min_words": 5, "min_letters": 20}
	raised == refused("JUSTIFICATION_REQUIRED")
	lowered := plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(2, 10))
		with data.childlookup.purposes.EMERGENCY_OVERRIDE.justification as {"min_words": 2, "min_letters": 10}
	lowered.permitted
}

test_a_purpose_needing_a_justification_without_a_stated_minimum_needs_one_word if {
	unstated := plan_justified("social_worker", "EMERGENCY_OVERRIDE", no_justification)
		with data.childlookup.purposes.EMERGENCY_OVERRIDE.justification as {}
	unstated == refused("JUSTIFICATION_REQUIRED")
	one_word := plan_justified("social_worker", "EMERGENCY_OVERRIDE", justification(1, 1))
		with data.childlookup.purposes.EMERGENCY_OVERRIDE.justification as {}
	one_word.permitted
}

test_a_section_47_enquiry_needs_two_words_and_eight_letters if {
	# "s47 strategy" is enough; "urgent" is not.
	plan_justified("social_worker", "CHILD_PROTECTION_ENQUIRY", justification(2, 9)).permitted
	plan_justified("social_worker", "CHILD_PROTECTION_ENQUIRY", justification(1, 6)) == refused("JUSTIFICATION_REQUIRED")
	plan_justified("social_worker", "CHILD_PROTECTION_ENQUIRY", justification(2, 7)) == refused("JUSTIFICATION_REQUIRED")
}

test_an_override_is_refused_to_roles_without_the_grant if {
	plan_for("gp", "EMERGENCY_OVERRIDE") == refused("PURPOSE_NOT_PERMITTED")
}

test_child_protection_enquiry_with_justification_is_permitted if {
	plan_for("police_safeguarding", "CHILD_PROTECTION_ENQUIRY").permitted
}

test_safeguarding_enquiry_needs_no_justification if {
	plan_justified("health_visitor", "SAFEGUARDING_ENQUIRY", no_justification).permitted
}

test_unknown_role_is_reported_before_the_purpose if {
	plan_for("janitor", "CURIOSITY").denial == "UNKNOWN_ROLE"
}

test_ungranted_purpose_is_reported_before_a_missing_justification if {
	plan_justified("school_dsl", "CHILD_PROTECTION_ENQUIRY", no_justification).denial == "PURPOSE_NOT_PERMITTED"
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

test_a_source_holding_only_a_status_an_owner_must_be_told_of_is_asked if {
	offered := [
		{"name": "health", "provides": ["address"], "shield_authority": false},
		{"name": "cpis", "provides": ["child_protection_plan", "looked_after"], "shield_authority": false},
	]
	decision := plan.decision with input.caller as {"role": "health_visitor", "organisation": "X00001"}
		with input.purpose as "DIRECT_CARE"
		with input.sources as offered
	"child_protection_plan" in decision.obligation_fields
	"cpis" in decision.sources
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

test_the_source_holding_the_nhs_restriction_is_asked_whatever_is_shown if {
	offered := [
		{"name": "pds", "provides": ["name"], "shield_authority": false, "restriction_authority": true},
		{"name": "education", "provides": ["school"], "shield_authority": false},
	]
	decision := plan.decision with input.caller as {"role": "school_dsl", "organisation": "X00001"}
		with input.purpose as "SAFEGUARDING_ENQUIRY"
		with input.sources as offered
	decision.sources == ["education", "pds"]
	# Identity alone too: a demographic search must rule a restriction out before it finds anyone.
	identity_only := plan.decision with input.caller as {"role": "la_shielding_admin", "organisation": "X00001"}
		with input.purpose as "SHIELDING_ADMINISTRATION"
		with input.sources as offered
	identity_only.sources == ["pds"]
}
