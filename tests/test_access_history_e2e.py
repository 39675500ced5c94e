"""Owners see who looked: the local authority holding a child's protection plan reads, through
GraphQL, the lookups of the child it was notified of - and no one else may. Real gateway, real Rego
bundle, reference connectors on loopback, the real audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.check_digits import upn_check_letter
from connectors.protocol import Identifiers, Indicators
from gateway.audit import SqliteOutbox
from gateway.demo import DEMO_ORGANISATIONS
from tests.factories import health_record, school_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_stack

REASON = "Child reported missing; police at the door need the current address now."

LOOKED_UP = synthetic_nhs(41)
BROKEN_GLASS = synthetic_nhs(42)
NEVER_LOOKED_UP = synthetic_nhs(43)
ORDINARY = synthetic_nhs(44)
REVIEWED = synthetic_nhs(45)
LOOKED_UP_BY_OTHERS = synthetic_nhs(46)
KNOWN_BY_UPN = synthetic_nhs(47)
UPN = school_record().identifiers.upn
IN_NEED = synthetic_nhs(49)
"""A child in need at the local authority: no plan, not looked after, not shielded by it."""
PLAN_WITHOUT_NHS = synthetic_nhs(48)
"""A child whose plan social care records under the school's UPN, and no NHS number."""
PLAN_UPN = upn_check_letter("801200004801") + "801200004801"

HISTORY = """query($nhs: String!) { accessHistory(nhsNumber: $nhs) { more accesses {
  auditId at subject name role organisation purpose justification outcome override reasons } } }"""
HISTORY_BY_UPN = """query($upn: String, $nhs: String) {
  accessHistory(upn: $upn, nhsNumber: $nhs) { accesses { auditId reasons } } }"""
TRAIL = """query($nhs: String!) { auditTrail(nhsNumber: $nhs) {
  auditId role organisation purposeCode outcomeCode } }"""


def _on_a_plan(nhs: str, record_id: str) -> Any:
    return social_care_record(
        nhs, record_id=record_id, identifiers=Identifiers(nhs_number=nhs, local_id=record_id)
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    """The three reference agencies, acted for by the demo's organisations (the social worker's
    LA-LEEDS for social care), and a gateway asking them."""
    tmp = tmp_path_factory.mktemp("access-history")
    on_plan = (
        *(LOOKED_UP, BROKEN_GLASS, NEVER_LOOKED_UP, REVIEWED, LOOKED_UP_BY_OTHERS),
        KNOWN_BY_UPN,
    )
    records = {
        "health": [
            health_record(nhs, record_id=f"H-{nhs}") for nhs in (*on_plan, ORDINARY, IN_NEED)
        ],
        "social_care": [
            *(_on_a_plan(nhs, f"LA-{nhs}") for nhs in on_plan),
            *(
                social_care_record(
                    nhs,
                    record_id=f"LA-{nhs}",
                    identifiers=Identifiers(nhs_number=nhs, local_id=f"LA-{nhs}"),
                    indicators=Indicators(child_in_need=True),
                )
                for nhs in (ORDINARY, IN_NEED)
            ),
            social_care_record(
                None, record_id="LA-48", identifiers=Identifiers(upn=PLAN_UPN, local_id="LA-48")
            ),
        ],
        "education": [
            school_record(KNOWN_BY_UPN, record_id="S-UPN"),
            school_record(
                PLAN_WITHOUT_NHS,
                record_id="S-48",
                identifiers=Identifiers(nhs_number=PLAN_WITHOUT_NHS, upn=PLAN_UPN),
            ),
        ],
    }
    with reference_stack(tmp, records, organisations=DEMO_ORGANISATIONS) as stack:
        yield stack


def history(gw: Stack, role: str, org: str, nhs: str, name: str = "Sam Social") -> dict[str, Any]:
    token = gw.token(role, org, name)
    response = gw.post({"query": HISTORY, "variables": {"nhs": nhs}}, token)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def owner_reads(gw: Stack, nhs: str) -> dict[str, Any]:
    """The LA-LEEDS social worker reads the child's access history."""
    body = history(gw, "social_worker", "LA-LEEDS", nhs)
    assert "errors" not in body, body
    return body["data"]["accessHistory"]  # type: ignore[no-any-return]


def test_the_owner_sees_a_health_visitors_lookup_of_a_child_on_its_plan(gateway):
    token = gateway.token("health_visitor", "RR8", "Hana Visitor")
    lookup = gateway.post(
        {
            "query": "query($nhs: String!) { child(identify: {nhsNumber: $nhs},"
            " purpose: DIRECT_CARE) { auditId outcome } }",
            "variables": {"nhs": LOOKED_UP},
        },
        token,
    ).json()["data"]["child"]

    seen = owner_reads(gateway, LOOKED_UP)

    (access,) = seen["accesses"]
    assert access["auditId"] == lookup["auditId"]
    assert (access["role"], access["organisation"], access["name"]) == (
        "health_visitor",
        "RR8",
        "Hana Visitor",
    )
    assert (access["purpose"], access["outcome"], access["override"]) == (
        "DIRECT_CARE",
        "FOUND",
        False,
    )
    assert access["reasons"] == ["CHILD_PROTECTION_PLAN"]
    audited = gateway.audited(lookup["auditId"])
    recorded = audited["access"]
    assert (access["subject"], access["at"]) == (recorded["subject"], recorded["at"])
    assert audited["linked_refs"] == []  # asked by NHS number: its child_ref names the child
    assert seen["more"] is False


def test_a_lookup_by_upn_is_in_the_history_and_trail_of_the_child_it_reached(gateway):
    """The health visitor knows the child by the school's UPN only: the school's record holds the
    NHS number, the other agencies are asked again with it, and social care's record shows the
    plan. Looked for by that NHS number, the lookup is in the owner's history and in the
    auditors' trail of the child - and in no other child's."""
    token = gateway.token("health_visitor", "RR8", "Hana Visitor")
    lookup = gateway.post(
        {
            "query": "query($upn: String!) { child(identify: {upn: $upn}, purpose: DIRECT_CARE)"
            " { auditId outcome records { source method } } }",
            "variables": {"upn": UPN},
        },
        token,
    ).json()["data"]["child"]
    assert lookup["outcome"] == "FOUND"
    assert ("social_care", "NHS_NUMBER") in {(r["source"], r["method"]) for r in lookup["records"]}

    (access,) = owner_reads(gateway, KNOWN_BY_UPN)["accesses"]
    assert (access["auditId"], access["reasons"]) == (lookup["auditId"], ["CHILD_PROTECTION_PLAN"])
    auditor = gateway.token("auditor", "LA-LEEDS-IG")

    def trail(nhs: str) -> list[str]:
        body = gateway.post({"query": TRAIL, "variables": {"nhs": nhs}}, auditor).json()
        return [entry["auditId"] for entry in body["data"]["auditTrail"]]

    assert lookup["auditId"] in trail(KNOWN_BY_UPN)
    assert lookup["auditId"] not in trail(NEVER_LOOKED_UP)
    audited = gateway.audited(lookup["auditId"])
    assert audited["access"]["child_ref"].startswith("upn:")
    assert [ref[:4] for ref in audited["linked_refs"]] == ["nhs:"]  # the one child it reached


def test_a_break_glass_lookup_shows_as_an_override_with_its_justification(gateway):
    gateway.lookup("social_worker", BROKEN_GLASS)
    gateway.lookup("police_safeguarding", BROKEN_GLASS, "EMERGENCY_OVERRIDE", REASON)

    newest, earlier = owner_reads(gateway, BROKEN_GLASS)["accesses"]

    assert (newest["role"], newest["purpose"], newest["override"]) == (
        "police_safeguarding",
        "EMERGENCY_OVERRIDE",
        True,
    )
    assert newest["justification"] == REASON
    assert newest["reasons"] == ["CHILD_PROTECTION_PLAN", "EMERGENCY_OVERRIDE"]
    assert (earlier["purpose"], earlier["override"]) == ("SAFEGUARDING_ENQUIRY", False)


@pytest.mark.parametrize(
    ("role", "org"),
    [
        ("school_dsl", "URN-107000"),
        ("social_worker", "LA-YORK"),
        ("auditor", "LA-LEEDS-IG"),
        ("health_visitor", "RR8"),
    ],
    ids=["a school DSL", "another authority's social worker", "an auditor", "a health visitor"],
)
def test_anyone_but_the_owner_is_refused_with_the_code(gateway, role, org):
    gateway.lookup("health_visitor", LOOKED_UP_BY_OTHERS, "DIRECT_CARE")

    body = history(gateway, role, org, LOOKED_UP_BY_OTHERS)

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_THE_OWNER"


def test_a_child_nobody_looked_up_has_an_empty_history(gateway):
    assert owner_reads(gateway, NEVER_LOOKED_UP) == {"accesses": [], "more": False}


def test_an_override_the_owner_was_told_of_without_its_reason_shows_none(gateway):
    """The justification goes only to an agency responsible for the child (holding its shield, a
    plan or a looked-after status): an override's reason is often the very story a shield
    protects. Told of an override of a child in need without it, the local authority read it in
    the history all the same."""
    lookup = gateway.lookup("police_safeguarding", IN_NEED, "EMERGENCY_OVERRIDE", REASON)
    audit_id = lookup["data"]["child"]["auditId"]
    notices = {n["source"]: n for n in gateway.audited(audit_id)["notified"]}
    assert notices["social_care"]["reasons"] == ["EMERGENCY_OVERRIDE"]
    assert notices["social_care"]["told_why"] is False

    (access,) = owner_reads(gateway, IN_NEED)["accesses"]

    assert (access["auditId"], access["override"]) == (audit_id, True)
    assert access["justification"] is None


def test_a_lookup_no_one_was_told_of_is_not_in_the_history(gateway):
    gateway.lookup("health_visitor", ORDINARY, "DIRECT_CARE")  # child in need: no notification
    assert owner_reads(gateway, ORDINARY)["accesses"] == []


def test_the_owners_reading_is_on_the_audit_trail_and_notifies_no_one(gateway):
    gateway.lookup("health_visitor", REVIEWED, "DIRECT_CARE")
    owner_reads(gateway, REVIEWED)

    trail = gateway.post(
        {"query": TRAIL, "variables": {"nhs": REVIEWED}}, gateway.token("auditor", "LA-LEEDS-IG")
    ).json()["data"]["auditTrail"]
    reviews = [e for e in trail if e["purposeCode"] == "OWNER_REVIEW"]

    assert [(e["role"], e["organisation"], e["outcomeCode"]) for e in reviews] == [
        ("social_worker", "LA-LEEDS", "ACCESS_HISTORY_VIEWED")
    ]
    outbox = SqliteOutbox(gateway.state_dir / "audit.sqlite3")
    try:
        assert outbox.entries(reviews[0]["auditId"]) == []
    finally:
        outbox.close()
    # Nor is the reading itself an access the owner is shown.
    assert len(owner_reads(gateway, REVIEWED)["accesses"]) == 1


def test_an_invalid_nhs_number_is_refused(gateway):
    body = history(gateway, "social_worker", "LA-LEEDS", "123")
    assert body["errors"][0]["extensions"]["code"] == "INVALID_NHS_NUMBER"


def test_an_owner_whose_record_holds_no_nhs_number_reads_the_history_by_upn(gateway):
    """Social care records the plan under the school's UPN alone: a lookup by NHS number reaches it
    through the school's record (the second round), the owner is told, and reads who looked by
    the UPN its record holds - or by the NHS number it was told of."""
    lookup = gateway.lookup("health_visitor", PLAN_WITHOUT_NHS, "DIRECT_CARE")["data"]["child"]
    assert lookup["outcome"] == "FOUND"

    def owner_reads_by(**child: str) -> dict[str, Any]:
        token = gateway.token("social_worker", "LA-LEEDS", "Sam Social")
        variables = {"upn": child.get("upn"), "nhs": child.get("nhs")}
        body = gateway.post({"query": HISTORY_BY_UPN, "variables": variables}, token).json()
        return body  # type: ignore[no-any-return]

    by_upn = owner_reads_by(upn=PLAN_UPN)["data"]["accessHistory"]["accesses"]
    assert [(a["auditId"], a["reasons"]) for a in by_upn] == [
        (lookup["auditId"], ["CHILD_PROTECTION_PLAN"])
    ]
    assert owner_reads(gateway, PLAN_WITHOUT_NHS)["accesses"][0]["auditId"] == lookup["auditId"]
    for child, code in (
        ({}, "IDENTIFY_ONE_WAY"),
        ({"upn": PLAN_UPN, "nhs": PLAN_WITHOUT_NHS}, "IDENTIFY_ONE_WAY"),
        ({"upn": "X" + PLAN_UPN[1:]}, "INVALID_UPN"),
    ):
        assert owner_reads_by(**child)["errors"][0]["extensions"]["code"] == code
