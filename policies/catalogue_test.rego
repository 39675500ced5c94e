# METADATA
# title: Tests of the catalogue and grants
# description: >-
#   Checks that data.json is complete and consistent, and that the shared rules read grants as
#   intended.
#
#   Written for rego-cpp as well as OPA (see gateway/policy/interpreter.py): inputs replace parts of
#   the input (with input.caller as ...), never the whole of it, which crashes rego-cpp; and inside
#   an `every`, a check that negates (`not`) or nests (comprehension, another `every`) is a helper
#   function, because rego-cpp loses the loop variable there and the check silently passes.
package childlookup.catalogue_test

import rego.v1

import data.childlookup.catalogue

contract_fields := {
	"nhs_number", "name", "date_of_birth", "sex",
	"address", "school", "gp_practice", "carers", "involvements",
	"sensitive_service_details",
	"child_protection_plan", "looked_after", "child_in_need", "early_help",
}

# --- data.json ------------------------------------------------------------------------------

test_field_catalogue_is_the_contract_vocabulary if {
	object.keys(data.childlookup.fields) == contract_fields
}

test_every_field_has_a_known_category_and_a_description if {
	every field in data.childlookup.fields {
		data.childlookup.categories[field.category]
		trim_space(field.description) != ""
	}
}

test_every_category_is_described if {
	every category in data.childlookup.categories {
		trim_space(category.description) != ""
	}
}

test_every_purpose_is_described_and_says_whether_it_needs_a_justification if {
	every purpose in data.childlookup.purposes {
		trim_space(purpose.description) != ""
		is_boolean(purpose.justification_required)
	}
}

test_every_purpose_needing_a_justification_says_how_much_in_words_and_letters if {
	every purpose in data.childlookup.purposes {
		states_how_much_justification(purpose)
	}
}

states_how_much_justification(purpose) if purpose.justification_required == false

states_how_much_justification(purpose) if {
	purpose.justification_required == true
	trim_space(purpose.justification.description) != ""
	is_positive_whole_number(purpose.justification.min_words)
	is_positive_whole_number(purpose.justification.min_letters)
}

is_positive_whole_number(n) if {
	is_number(n)
	n >= 1
	n == round(n)
}

test_every_role_and_every_grant_is_described if {
	every role in data.childlookup.roles {
		trim_space(role.description) != ""
		every grant in role.grants {
			trim_space(grant.description) != ""
		}
	}
}

test_every_grant_is_for_a_catalogued_purpose if {
	every role in data.childlookup.roles {
		every purpose, _ in role.grants {
			data.childlookup.purposes[purpose]
		}
	}
}

test_every_name_in_a_grant_is_a_field_or_a_field_group if {
	every role in data.childlookup.roles {
		every grant in role.grants {
			every name in grant.fields {
				is_field_or_group(name)
			}
		}
	}
}

is_field_or_group(name) if data.childlookup.fields[name]

is_field_or_group(name) if data.childlookup.field_groups[name]

test_field_group_names_are_not_field_names if {
	every name, _ in data.childlookup.field_groups {
		is_not_a_field(name)
	}
}

is_not_a_field(name) if not data.childlookup.fields[name]

test_field_groups_list_only_catalogued_fields if {
	every group in data.childlookup.field_groups {
		trim_space(group.description) != ""
		every field in group.fields {
			data.childlookup.fields[field]
		}
	}
}

test_no_grant_names_sensitive_service_details if {
	every role in data.childlookup.roles {
		every grant in role.grants {
			does_not_name_sensitive_service_details(grant)
		}
	}
}

does_not_name_sensitive_service_details(grant) if not "sensitive_service_details" in grant.fields

# --- categories ------------------------------------------------------------------------------

test_identity_fields if {
	catalogue.identity_fields == {"nhs_number", "name", "date_of_birth", "sex"}
}

test_location_fields if {
	catalogue.location_fields == {"address", "school", "gp_practice", "carers", "involvements"}
}

test_sensitive_fields if {
	catalogue.sensitive_fields == {"sensitive_service_details"}
}

# --- the caller's role and grant ---------------------------------------------------------------

test_catalogued_role_is_known if {
	catalogue.is_known_role with input.caller.role as "gp"
}

test_uncatalogued_role_is_not_known if {
	not catalogue.is_known_role with input.caller.role as "janitor"
}

test_missing_caller_is_not_a_known_role if {
	not catalogue.is_known_role with input.purpose as "DIRECT_CARE"
}

test_purpose_in_the_roles_grants_is_granted if {
	catalogue.is_purpose_granted with input.caller.role as "gp" with input.purpose as "DIRECT_CARE"
}

test_purpose_outside_the_roles_grants_is_not_granted if {
	not catalogue.is_purpose_granted with input.caller.role as "school_dsl"
		with input.purpose as "DIRECT_CARE"
}

test_identity_only_grant_still_grants_the_purpose if {
	catalogue.is_purpose_granted with input.caller.role as "la_shielding_admin"
		with input.purpose as "SHIELDING_ADMINISTRATION"
}

test_field_granted_under_another_purpose_of_the_role if {
	catalogue.is_granted_for_other_purpose("address") with input.caller.role as "police_safeguarding"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
}

test_identity_counts_as_granted_under_any_other_granted_purpose if {
	catalogue.is_granted_for_other_purpose("name") with input.caller.role as "school_dsl"
		with input.purpose as "DIRECT_CARE"
}

test_field_no_purpose_of_the_role_grants if {
	not catalogue.is_granted_for_other_purpose("school") with input.caller.role as "health_visitor"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
}

test_the_stated_purpose_does_not_count_as_another if {
	not catalogue.is_granted_for_other_purpose("school") with input.caller.role as "school_dsl"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
}

test_unknown_role_has_nothing_granted_elsewhere if {
	not catalogue.is_granted_for_other_purpose("name") with input.caller.role as "janitor"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
}

test_grant_adds_named_fields_and_field_group_members if {
	fields := catalogue.granted_fields with input.caller.role as "school_dsl"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
	fields == {
		"school", "carers", "involvements",
		"child_protection_plan", "looked_after", "child_in_need", "early_help",
	}
}

test_misspelt_name_in_a_grant_adds_nothing if {
	fields := catalogue.granted_fields with input.caller.role as "gp"
		with input.purpose as "DIRECT_CARE"
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["adress", "carers"]
	fields == {"carers"}
}

test_field_group_never_adds_sensitive_service_details if {
	fields := catalogue.granted_fields with input.caller.role as "gp"
		with input.purpose as "DIRECT_CARE"
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["all_indicators"]
		with data.childlookup.field_groups.all_indicators.fields as [
			"looked_after",
			"sensitive_service_details",
		]
	fields == {"looked_after"}
}

test_naming_sensitive_service_details_grants_it if {
	fields := catalogue.granted_fields with input.caller.role as "gp"
		with input.purpose as "DIRECT_CARE"
		with data.childlookup.roles.gp.grants.DIRECT_CARE.fields as ["sensitive_service_details"]
	fields == {"sensitive_service_details"}
}

test_visible_fields_are_identity_plus_the_grant if {
	fields := catalogue.visible_fields with input.caller.role as "ed_clinician"
		with input.purpose as "DIRECT_CARE"
	fields == {
		"nhs_number", "name", "date_of_birth", "sex",
		"gp_practice", "carers", "involvements", "child_protection_plan", "looked_after",
	}
}

test_identity_only_grant_shows_identity if {
	fields := catalogue.visible_fields with input.caller.role as "la_shielding_admin"
		with input.purpose as "SHIELDING_ADMINISTRATION"
	fields == catalogue.identity_fields
}

test_nothing_is_visible_without_a_grant_for_the_purpose if {
	fields := catalogue.visible_fields with input.caller.role as "ed_clinician"
		with input.purpose as "SAFEGUARDING_ENQUIRY"
	fields == set()
}
