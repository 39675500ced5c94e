# METADATA
# title: Plan a lookup
# description: >-
#   Decides, before any agency is asked, whether this caller may look up a child for the purpose
#   they stated, which fields to request and which sources to ask. The gateway then never fetches
#   what the caller may not see, except the statuses an owner-notification obligation depends on,
#   which never leave it. See docs/policy-decisions.md for the input and output.
package childlookup.plan

import rego.v1

import data.childlookup.catalogue

# METADATA
# title: Plan decision
# description: >-
#   If the lookup is permitted: the fields to request and the sources to ask. If it is refused: the
#   reason, and no fields and no sources. The gateway refuses the lookup if this answer is missing
#   or malformed.
# scope: document
# entrypoint: true
decision := {
	"permitted": true,
	"denial": null,
	"fields": as_sorted_list(requested_fields),
	"obligation_fields": as_sorted_list(obligation_fields),
	"sources": as_sorted_list(sources_to_ask),
} if {
	permitted
}

decision := {
	"permitted": false,
	"denial": denial,
	"fields": [],
	"obligation_fields": [],
	"sources": [],
} if {
	not permitted
}

# sort() of a set must give an array; rego-cpp gives back a set, so the set is listed first.
as_sorted_list(items) := sort([item | some item in items])

# METADATA
# title: Lookup permitted
# description: A lookup is refused unless no reason to refuse it applies.
default permitted := false

permitted if not denial

# METADATA
# title: Reason to refuse the lookup
# description: >-
#   The first that applies of: the role is unknown; the role has no grant for this purpose; the
#   purpose needs a written justification and none was given.
denial := "UNKNOWN_ROLE" if {
	not catalogue.is_known_role
} else := "PURPOSE_NOT_PERMITTED" if {
	not catalogue.is_purpose_granted
} else := "JUSTIFICATION_REQUIRED" if {
	is_justification_missing
}

# METADATA
# title: Justification missing
# description: >-
#   The purpose needs a written justification (justification_required in data.json) and the
#   caller's falls short of the purpose's minimum in words or in letters (its justification entry
#   in data.json). The gateway counts the justification after removing what prints as nothing
#   (zero-width and direction characters, controls) and sends only the counts, never the text: a
#   word is a run of characters between spaces holding at least one letter, and each different word
#   counts once, with its letters (one word said four times is one word).
is_justification_missing if {
	is_justification_required
	not is_justification_sufficient
}

is_justification_required if data.childlookup.purposes[input.purpose].justification_required

is_justification_sufficient if {
	has_enough_words
	has_enough_letters
}

has_enough_words if {
	is_number(input.justification.words)
	input.justification.words >= justification_min_words
}

has_enough_letters if {
	is_number(input.justification.letters)
	input.justification.letters >= justification_min_letters
}

# METADATA
# title: Fewest words in a justification
# description: >-
#   From the purpose's justification entry in data.json (min_words); at least one word where the
#   purpose needs a justification and states no minimum.
default justification_min_words := 1

justification_min_words := data.childlookup.purposes[input.purpose].justification.min_words

# METADATA
# title: Fewest letters in a justification
# description: >-
#   From the purpose's justification entry in data.json (min_letters); at least one letter where
#   the purpose needs a justification and states no minimum.
default justification_min_letters := 1

justification_min_letters := data.childlookup.purposes[input.purpose].justification.min_letters

# METADATA
# title: Fields to request
# description: The fields the caller may see for this purpose, identity included.
requested_fields := catalogue.visible_fields

# METADATA
# title: Fields fetched only for obligations
# description: >-
#   Statuses that oblige the gateway to tell the agency holding them that the child was looked up
#   (owner_notification in data.json), when the caller may not see them. They are fetched so the
#   owner is told whoever looks - as CP-IS tells the local authority whichever clinician looks -
#   and the release decision withholds them like any other field the caller may not see.
obligation_fields := notifying_fields - requested_fields

notifying_fields contains field if data.childlookup.owner_notification.indicators[field]

# METADATA
# title: Sources to ask
# description: >-
#   Every source that holds at least one requested field beyond identity, every source holding a
#   field an obligation needs (the owner of a protection plan is told whoever looks, so it must be
#   asked whether it holds one), every source with shielding authority: its flags are needed
#   to apply shielding even when it shows nothing else; and every source holding the NHS
#   restricted flag, which withholds location from every source and which a demographic search
#   must rule out before it says it found anyone.
sources_to_ask contains source.name if {
	some source in input.sources
	is_worth_asking(source)
}

fields_to_fetch := requested_fields - catalogue.identity_fields

is_worth_asking(source) if {
	some field in source.provides
	field in fields_to_fetch
}

is_worth_asking(source) if {
	some field in source.provides
	field in obligation_fields
}

is_worth_asking(source) if source.shield_authority == true

is_worth_asking(source) if source.restriction_authority == true
