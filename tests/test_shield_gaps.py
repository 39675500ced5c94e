"""Ways a shield was missed or lifted too easily: a shielded record returned for the child's NHS
number but not linked, a justification of one word said again, a grant for another purpose.

Real components throughout: the project's policy bundle (or a copy of it a policy officer has
edited), the match and decide stages, and, end to end, a gateway in front of connectors on
loopback (the reference agencies, or the connector SDK over an agency's own records).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.app import create_connector_app
from connectors.protocol import (
    ConnectorRecord,
    FieldId,
    Identifiers,
    LookupRequest,
    RecordFlags,
)
from connectors.reference import create_reference_app
from gateway.config import SourceConfig
from gateway.decide import SHIELD_REASONS, decide
from gateway.demo import reference_source
from gateway.match import match_records
from gateway.plan import make_plan
from gateway.policy import RegoPolicyEngine
from gateway.types import Caller, LookupQuery, Purpose, SourceAnswer, SourceStatus
from tests.factories import (
    NHS,
    POLICY_DIR,
    health_record,
    lookup_context,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import reference_stack, running_gateway, serving, write_records

REASON = "Child reported missing; police at the door need the current address now."

PDS = SourceConfig(
    name="pds",
    url="http://127.0.0.1:1",
    provides=tuple(FieldId),
    restriction_authority=True,
)
SOCIAL_CARE = SourceConfig(
    name="social_care",
    url="http://127.0.0.1:2",
    provides=tuple(FieldId),
    shield_authority=True,
)
SOURCES = (PDS, SOCIAL_CARE)


async def _decide(role: str, purpose: Purpose, answers: Sequence[SourceAnswer], reason=None):
    """Match `answers` to the child with NHS number NHS, then decide what `role` sees."""
    query = LookupQuery(purpose=purpose, nhs_number=NHS, justification=reason)
    lookup = lookup_context(query, Caller("dev:X:u", "U", role, "X1"))
    plan = await make_plan(lookup, SOURCES)
    assert plan.permitted
    matching = match_records(query, answers, None)
    return matching, await decide(lookup, plan, matching)


def _released_addresses(release) -> list[Any]:
    return [r.record.address for r in release.records if FieldId.ADDRESS in r.fields]


# --- records a source returns for the child's identifier without carrying it ----------------------


@pytest.mark.anyio
async def test_a_shielded_record_returned_for_the_nhs_number_shields_the_child():
    """Social care "often holds the NHS number" - not always. Asked for this child's NHS number,
    the shield authority answers with its record of the child, held under its own case id and
    shielded. The gateway does not link it (no NHS number: `recordsUnmatched`), and then ignores
    its shield: the health record's address is released to an ordinary lookup."""
    shielded = social_care_record(
        None, identifiers=Identifiers(local_id="LA-7"), flags=RecordFlags(shielded=True)
    )
    answers = [
        SourceAnswer("pds", SourceStatus.ANSWERED, 1.0, (health_record(),)),
        SourceAnswer("social_care", SourceStatus.ANSWERED, 1.0, (shielded,)),
    ]

    matching, release = await _decide("social_worker", Purpose.SAFEGUARDING_ENQUIRY, answers)

    assert matching.unmatched == {"social_care": 1}  # returned for the NHS number, not linked
    assert _released_addresses(release) == []
    withheld = {w.field: w.reason for w in release.withheld if w.source == "pds"}
    assert withheld[FieldId.ADDRESS] in SHIELD_REASONS


@pytest.mark.anyio
async def test_a_restricted_record_returned_for_the_nhs_number_is_not_lifted_by_break_glass():
    """The NHS restriction is never lifted, break-glass or not. The restriction authority answers
    the NHS number with a restricted record that carries no usable NHS number (PDS holds two for
    the patient, say, so the connector gives none): the restriction is ignored, and the override
    shows social care's copy of the address."""
    restricted = health_record(
        None, flags=RecordFlags(restricted=True), address=None, gp_practice=None, carers=None
    )
    answers = [
        SourceAnswer("pds", SourceStatus.ANSWERED, 1.0, (restricted,)),
        SourceAnswer("social_care", SourceStatus.ANSWERED, 1.0, (social_care_record(),)),
    ]

    _, release = await _decide(
        "police_safeguarding", Purpose.EMERGENCY_OVERRIDE, answers, reason=REASON
    )

    assert _released_addresses(release) == []
    assert release.flags.restricted or not release.flags.restriction_status_known


class CaseIdOnly:
    """A local authority's connector backend whose record of the child is filed under its own case
    id: asked for the child's NHS number, it answers with that record, which holds no NHS number."""

    def __init__(self, record: ConnectorRecord) -> None:
        self.record = record

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        return [self.record] if request.identifiers.nhs_number else []


def test_end_to_end_a_shielded_child_held_under_a_case_id_is_not_located(tmp_path):
    child = synthetic_nhs(31)
    shielded = social_care_record(
        None, identifiers=Identifiers(local_id="LA-31"), flags=RecordFlags(shielded=True)
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
        lookup = gateway.lookup("social_worker", child, "SAFEGUARDING_ENQUIRY")["data"]["child"]

    sources = {s["source"]: s for s in lookup["sources"]}
    assert sources["social_care"]["recordsUnmatched"] == 1
    assert lookup["child"]["address"] is None
    assert lookup["child"]["gpPractice"] is None


# --- justification -------------------------------------------------------------------------------


SHIELDED = synthetic_nhs(41)


@pytest.fixture(scope="module")
def shielded_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review-glass")
    records = {
        "health": [health_record(SHIELDED)],
        "social_care": [
            social_care_record(
                SHIELDED,
                identifiers=Identifiers(nhs_number=SHIELDED, local_id="LA-41"),
                flags=RecordFlags(shielded=True),
            )
        ],
    }
    with reference_stack(tmp, records) as gateway:
        yield gateway


@pytest.mark.parametrize(
    "justification",
    [
        "urgent urgent urgent urgent urgent",
        "aaaaa aaaaa aaaaa aaaaa",
        "Urgent! urgent, URGENT. urgent?",
        "help help help help help help help",
    ],
)
def test_one_word_repeated_is_no_reason_to_lift_a_shield(shielded_stack, justification):
    """At least four words and twenty letters, "so neither zero-width spaces nor one long made-up
    word will do" (data.json): one made-up word said four times is still one word, and no reason."""
    lookup = shielded_stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", justification)[
        "data"
    ]["child"]

    assert lookup["outcome"] == "DENIED"
    assert lookup["denial"] == "JUSTIFICATION_REQUIRED"
    assert lookup["child"] is None


def test_a_real_reason_still_lifts_the_shield(shielded_stack):
    lookup = shielded_stack.lookup("social_worker", SHIELDED, "EMERGENCY_OVERRIDE", REASON)
    glass = lookup["data"]["child"]

    assert glass["outcome"] == "FOUND"
    assert glass["child"]["address"]["postcode"] == "LS6 2AB"


# --- lifting a shield outside break-glass -----------------------------------------------------


def _edited_policy(tmp: Path, edit) -> Path:
    """A copy of the project's policy bundle with its data.json changed by `edit`."""
    directory = tmp / "policies"
    shutil.copytree(POLICY_DIR, directory)
    data = json.loads((directory / "data.json").read_text())
    edit(data["childlookup"])
    (directory / "data.json").write_text(json.dumps(data))
    return directory


def _lift_shielding_for_section_47(catalogue: dict[str, Any]) -> None:
    catalogue["roles"]["social_worker"]["grants"]["CHILD_PROTECTION_ENQUIRY"]["lifts_shielding"] = (
        True
    )


@pytest.mark.anyio
async def test_only_the_break_glass_purpose_lifts_a_shield(tmp_path):
    """Only EMERGENCY_OVERRIDE is flagged for investigation, alerted on and told to every holder
    (gateway.audit.record, owner_notification.purposes). A grant for any other purpose that says
    `lifts_shielding` - a policy officer's slip - would show a shielded child's location with none
    of that: the policy must not honour it."""
    engine = RegoPolicyEngine.from_directory(
        _edited_policy(tmp_path, _lift_shielding_for_section_47)
    )
    query = LookupQuery(
        purpose=Purpose.CHILD_PROTECTION_ENQUIRY, nhs_number=NHS, justification=REASON
    )
    lookup = lookup_context(query, Caller("dev:X:u", "U", "social_worker", "X1"), policy=engine)
    plan = await make_plan(lookup, SOURCES)
    shielded = social_care_record(flags=RecordFlags(shielded=True))
    answers = [
        SourceAnswer("pds", SourceStatus.ANSWERED, 1.0, (health_record(),)),
        SourceAnswer("social_care", SourceStatus.ANSWERED, 1.0, (shielded,)),
    ]

    release = await decide(lookup, plan, match_records(query, answers, None))

    assert _released_addresses(release) == []
    assert {w.reason for w in release.withheld if w.field is FieldId.ADDRESS} == {"SHIELDED"}


def test_end_to_end_a_section_47_lookup_never_lifts_a_shield_unflagged(tmp_path):
    policy_dir = _edited_policy(tmp_path, _lift_shielding_for_section_47)
    child = synthetic_nhs(51)
    records = {
        "health": [health_record(child)],
        "social_care": [
            social_care_record(
                child,
                identifiers=Identifiers(nhs_number=child, local_id="LA-51"),
                flags=RecordFlags(shielded=True),
            )
        ],
    }
    with reference_stack(tmp_path, records, policy_dir=policy_dir) as gateway:
        lookup = gateway.lookup("social_worker", child, "CHILD_PROTECTION_ENQUIRY", REASON)
        lookup = lookup["data"]["child"]
        audited = gateway.audited(lookup["auditId"])

    assert lookup["outcome"] == "FOUND"
    # Shown past the shield, and yet not flagged: either is wrong without the other.
    assert lookup["child"]["address"] is None or audited["flagged_for_investigation"]
