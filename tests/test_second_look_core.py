"""What the day's first fixes in the gateway core missed or broke: an ambiguous UPN made FOUND by
routing, a shielded record a later round brought in by NHS number, refused break-glass attempts
outside the limits, NHS numbers set apart by Unicode dashes, a record linked in one round and
refused in the next.

Real components only: reference connectors and the connector SDK on loopback, the real Rego
bundle, the real match, second-round and decide stages, the real SQLite audit store.
"""

from __future__ import annotations

import pytest

from connectors.app import create_connector_app
from connectors.protocol import ConnectorRecord, Identifiers, LookupRequest, RecordFlags
from connectors.reference import create_reference_app
from gateway.audit import BREAK_GLASS_ALERTS
from gateway.demo import reference_source
from gateway.linkage import LinkageModel
from gateway.match import FORMER_UPN, RECORD_MISMATCH, match_records
from gateway.second_round import combined
from gateway.types import LookupQuery, Purpose, SourceAnswer, SourceStatus
from tests.factories import (
    NHS,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import reference_stack, running_gateway, serving, write_records

REASON = "Child reported missing; police at the door need the current address now."

SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) {
    outcome complete
    child { address { postcode } gpPractice { odsCode } }
    sources { source status recordsMatched recordsUnmatched }
    withheld { field source reason }
  }
}
"""

AMELIA = {
    "givenName": "Amelia",
    "familyName": "Hart",
    "dateOfBirth": "2019-03-04",
    "postcode": "LS6 2AB",
    "sex": "FEMALE",
}


class CaseIdOnly:
    """A local authority's connector backend whose record of the child is filed under its own case
    id: asked for the child's NHS number, it answers with that record, which holds no NHS number;
    asked by demographics (a name it holds differently), it finds nobody."""

    def __init__(self, record: ConnectorRecord) -> None:
        self.record = record

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        return [self.record] if request.identifiers.nhs_number else []


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    records = {"health": [health_record(synthetic_nhs(64))]}
    with reference_stack(tmp_path_factory.mktemp("review-core"), records) as gateway:
        yield gateway


# --- decide: the shield of a record returned for the identifier a demographic search found ------


def test_a_search_asking_again_by_nhs_number_heeds_a_shielded_record_held_under_a_case_id(
    tmp_path,
):
    """e7bed23 made a shielded record a source returned for the child's NHS number count, linked
    or not - but only when the caller gave the NHS number. A demographic search finds the NHS
    number in the health record and asks social care again with it (gateway.second_round); social
    care answers the NHS number with its shielded record, held under its case id. That answer is
    as much the child's as in a lookup by NHS number, yet decide ignores it (identified_by is
    DEMOGRAPHICS) and the search releases the shielded child's address."""
    child = synthetic_nhs(61)
    shielded = social_care_record(
        None, identifiers=Identifiers(local_id="LA-61"), flags=RecordFlags(shielded=True)
    )
    apps = {
        "health": create_reference_app(
            "health", write_records(tmp_path / "health.jsonl", [health_record(child)])
        ),
        "social_care": create_connector_app(CaseIdOnly(shielded), source="social_care"),
    }
    with (
        serving(apps) as urls,
        running_gateway(tmp_path, [reference_source(n, u) for n, u in urls.items()]) as gateway,
    ):
        body = {
            "query": SEARCH,
            "variables": {"purpose": "SAFEGUARDING_ENQUIRY", "demographics": AMELIA},
        }
        response = gateway.post(body, gateway.token("social_worker"))
        assert response.status_code == 200, response.text
        found = response.json()["data"]["child"]

    # A search by postcode must never return a shielded child (DOMAIN.md, shield-safe search):
    # it reads as one that found nobody, let alone the child's address.
    assert (found["child"] or {}).get("address") is None, "a shielded child's address was released"
    assert found["outcome"] in ("NOT_FOUND", "NOT_FOUND_INCOMPLETE")
    assert found["child"] is None


# --- break-glass refused for its justification: counted against the limits ---------------------


def test_break_glass_attempts_refused_for_their_justification_are_held_to_the_usage_limits(
    tmp_path,
):
    """17dcf97 audits and alerts a break-glass attempt refused for its justification - through
    LookupPipeline.refuse, which skips the usage limits (`_admit`). An attempt the policy refuses
    is admitted first, so a flood of them meets RATE_LIMITED and the trawling alert; a flood of
    too-long justifications does not: any signed-in user, of any role, writes audit records and
    BREAK_GLASS_REFUSED alerts as fast as it can post, drowning the privacy officers' feed."""
    child = synthetic_nhs(62)
    records = {"health": [health_record(child)]}
    too_long = REASON + " " + "x" * 1000
    with reference_stack(
        tmp_path, records, lookups_per_user_per_minute=3, distinct_children_per_user_per_day=3
    ) as gateway:
        codes = []
        for n in range(8):
            body = gateway.lookup(
                "school_dsl", synthetic_nhs(100 + n), "EMERGENCY_OVERRIDE", too_long
            )
            codes.append(body["errors"][0]["extensions"]["code"])
        alerts = gateway.components.audit.alerts(kinds=BREAK_GLASS_ALERTS)

    assert codes[:3] == ["INVALID_JUSTIFICATION"] * 3
    assert "INVALID_JUSTIFICATION" not in codes[3:], (
        f"refused attempts past the per-user limit were still audited and alerted: {codes}"
    )
    assert len(alerts) <= 3


# --- a former UPN on a record a later round brings in ------------------------------------------

CURRENT, FORMER, ANOTHER = "H801200001001", "X801200001002", "A801200001003"
BY_FORMER = LookupQuery(upn=FORMER, purpose=Purpose.SAFEGUARDING_ENQUIRY)
LINKAGE = LinkageModel.load()


def _answer(source: str, *records: ConnectorRecord) -> SourceAnswer:
    status = SourceStatus.ANSWERED if records else SourceStatus.NO_RECORD
    return SourceAnswer(source, status, 1.0, tuple(records))


def _renumbered_at_school(current: str = CURRENT) -> ConnectorRecord:
    """The school's record of the child under its new UPN, listing the one asked as former."""
    ids = Identifiers(nhs_number=NHS, upn=current, former_upns=(FORMER,))
    return school_record(NHS, identifiers=ids)


def test_the_same_record_is_the_childs_in_a_later_round_as_in_the_first():
    """Asked by FORMER, the school's record under CURRENT listing FORMER as its former UPN is
    linked (FORMER_UPN, c7c910e). Social care holds the child under FORMER with the NHS number; a
    school connector that finds pupils by current UPN and NHS number only answers FORMER with no
    record, and is asked again by the NHS number: the very same record - the NHS number, and the
    UPN asked listed as former - now fails the school RECORD_MISMATCH, as another child's."""
    at_la = social_care_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    record = _renumbered_at_school()

    in_first = match_records(BY_FORMER, [_answer("education", record)], LINKAGE)
    assert [m.reasons for m in in_first.matched] == [(FORMER_UPN,)]

    first = match_records(BY_FORMER, [_answer("social_care", at_la), _answer("education")], LINKAGE)
    by_nhs = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)
    again = match_records(by_nhs, [_answer("education", record)], LINKAGE)
    both = combined(BY_FORMER, first, again, LINKAGE)

    education = next(a for a in both.answers if a.source == "education")
    assert education.error_code != RECORD_MISMATCH
    assert education.status is SourceStatus.ANSWERED
    assert {m.source for m in both.matched} == {"social_care", "education"}


def test_a_later_record_may_not_bring_a_second_new_upn_for_the_former_one():
    """The rule the match stage keeps (one new UPN for a former UPN at most) holds across rounds:
    a record under ANOTHER listing FORMER, after one under CURRENT listing it, is another
    child's."""
    first = match_records(
        BY_FORMER, [_answer("social_care", _renumbered_at_school()), _answer("education")], LINKAGE
    )
    by_nhs = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)
    again = match_records(by_nhs, [_answer("education", _renumbered_at_school(ANOTHER))], LINKAGE)
    both = combined(BY_FORMER, first, again, LINKAGE)

    education = next(a for a in both.answers if a.source == "education")
    assert (education.status, education.error_code) == (SourceStatus.FAILED, RECORD_MISMATCH)


def test_nor_may_a_third_round_after_the_second_established_one():
    """The routing stage combines its agencies' answers with both rounds: a new UPN the second
    round established (a record linked by the NHS number, listing FORMER) is the one."""
    at_la = social_care_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    first = match_records(BY_FORMER, [_answer("social_care", at_la), _answer("education")], LINKAGE)
    by_nhs = LookupQuery(nhs_number=NHS, purpose=Purpose.SAFEGUARDING_ENQUIRY)
    again = match_records(by_nhs, [_answer("education", _renumbered_at_school())], LINKAGE)
    both = combined(BY_FORMER, first, again, LINKAGE)
    routed = match_records(by_nhs, [_answer("school_b", _renumbered_at_school(ANOTHER))], LINKAGE)
    third = combined(BY_FORMER, both, routed, LINKAGE)

    school_b = next(a for a in third.answers if a.source == "school_b")
    assert (school_b.status, school_b.error_code) == (SourceStatus.FAILED, RECORD_MISMATCH)
    same = match_records(by_nhs, [_answer("school_b", _renumbered_at_school())], LINKAGE)
    assert (
        next(
            a for a in combined(BY_FORMER, both, same, LINKAGE).answers if a.source == "school_b"
        ).status
        is SourceStatus.ANSWERED
    )


# --- an identifier lookup made ambiguous by a former UPN stays ambiguous past routing -----------


def test_a_lookup_ambiguous_in_its_first_round_stays_ambiguous_when_later_answers_are_combined():
    """A former UPN naming two children makes a lookup by it AMBIGUOUS (c7c910e) - the first
    identifier lookup that can be. The routing stage still locates and asks agencies with the
    UPN, and `combined` rebuilds the result from them: identifier lookups never had an ambiguity
    to keep, so it is dropped and the routed agency's record - either child's - is FOUND."""
    child_a = social_care_record(NHS, identifiers=Identifiers(nhs_number=NHS, upn=FORMER))
    child_b = social_care_record(
        synthetic_nhs(63),
        record_id="LA-2",
        identifiers=Identifiers(
            nhs_number=synthetic_nhs(63), upn=CURRENT, local_id="LA-2", former_upns=(FORMER,)
        ),
    )
    first = match_records(BY_FORMER, [_answer("social_care", child_a, child_b)], LINKAGE)
    assert first.ambiguous

    at_school = school_record(None, identifiers=Identifiers(upn=FORMER))
    routed = match_records(BY_FORMER, [_answer("school_b", at_school)], LINKAGE)
    both = combined(BY_FORMER, first, routed, LINKAGE)

    assert both.ambiguous, "the ambiguity was dropped and a record linked"
    assert both.matched == ()


def test_end_to_end_a_former_upn_naming_two_children_is_ambiguous_not_found(tmp_path):
    """Through the national stack: education holds one child under the UPN and another who
    lists it as former (two NHS numbers): the lookup must be AMBIGUOUS. The locator names the
    schools holding the UPN, they are asked with it, and their record is shown as the child."""
    import tests.test_routing_e2e as national_e2e

    upn = national_e2e.AMELIA_UPN
    renumbered = school_record(
        national_e2e.AMELIA_NHS,
        record_id="E-A",
        identifiers=Identifiers(nhs_number=national_e2e.AMELIA_NHS, upn=FORMER, former_upns=(upn,)),
    )
    other = school_record(
        national_e2e.BEN_NHS,
        record_id="E-B",
        identifiers=Identifiers(nhs_number=national_e2e.BEN_NHS, upn=upn),
    )
    identity = {
        "health": [health_record(national_e2e.AMELIA_NHS)],
        "education": [renumbered, other],
    }
    with national_e2e.national(tmp_path, identity=identity) as (gateway, _):
        found = national_e2e._lookup(gateway, {"upn": upn})

    assert found["outcome"] == "AMBIGUOUS", (found["outcome"], found["sources"])
    assert found["child"] is None


# --- an NHS number in a justification, grouped another way with a Unicode hyphen ----------------


@pytest.mark.parametrize("dash", ["\u2010", "\u2011", "\u2013", "\u2212"])
def test_an_nhs_number_grouped_with_a_unicode_hyphen_is_refused_in_a_justification(stack, dash):
    """4c4c3dc refuses an NHS number "grouped another way" - with spaces or hyphens. Only the
    ASCII hyphen counts: the same number typed in a word processor (which makes U+2010 or an en
    dash of a hyphen, and NFKC leaves them) or pasted from a PDF is kept in the audit log, sent
    to the owners in notifications and shown in the alerts feed."""
    number = synthetic_nhs(5)
    written = dash.join((number[:4], number[4:7], number[7:]))  # grouped 4-3-3
    reason = f"Child at risk tonight; police reference given as {written} by the duty officer."
    body = stack.lookup("social_worker", synthetic_nhs(64), "CHILD_PROTECTION_ENQUIRY", reason)

    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "INVALID_JUSTIFICATION"
