"""An owner's access history shows the practitioner's justification only where the owner
notification carried it (gateway.audit.history, gateway.audit.notify).

The justification goes only to an agency responsible for the child (holding its shield, or told
for a plan or looked-after status of its own): an override's reason is often the very story a
shield protects. A local authority holding only a child-in-need record is told of a break-glass
override without it - and its social worker's `accessHistory` showed the reason all the same.

Real gateway, real Rego bundle, reference connectors on loopback, the real audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.protocol import Identifiers, Indicators
from gateway.audit import SqliteOutbox
from gateway.demo import DEMO_ORGANISATIONS
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_stack

REASON = "Mother fled with the child to the refuge on Example Road; police need the address."
CHILD = synthetic_nhs(71)

HISTORY = """query($nhs: String!) { accessHistory(nhsNumber: $nhs) { accesses {
  auditId purpose justification override reasons } } }"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("history-justification")
    records = {
        "health": [health_record(CHILD, record_id="H-71")],
        # Known to LA-LEEDS's social care as a child in need only: no plan, not looked after,
        # not shielded by this authority.
        "social_care": [
            social_care_record(
                CHILD,
                record_id="LA-71",
                identifiers=Identifiers(nhs_number=CHILD, local_id="LA-71"),
                indicators=Indicators(child_in_need=True),
            )
        ],
        "education": [],
    }
    with reference_stack(tmp, records, organisations=DEMO_ORGANISATIONS) as stack:
        yield stack


def _payloads(gw: Stack, audit_id: str) -> dict[str, dict[str, Any] | None]:
    outbox = SqliteOutbox(gw.state_dir / "audit.sqlite3")
    try:
        return {
            e.source: (None if e.payload is None else json.loads(e.payload))
            for e in outbox.entries(audit_id)
        }
    finally:
        outbox.close()


def test_history_does_not_show_a_justification_the_notification_withheld(gateway):
    lookup = gateway.lookup("police_safeguarding", CHILD, "EMERGENCY_OVERRIDE", REASON)
    audit_id = lookup["data"]["child"]["auditId"]
    record = gateway.audited(audit_id)
    # LA-LEEDS's social care source was told of the override, for the override alone ...
    notices = {n["source"]: n for n in record["notified"]}
    assert notices["social_care"]["reasons"] == ["EMERGENCY_OVERRIDE"], notices
    # ... and the record says the notification went without the reason.
    assert notices["social_care"]["told_why"] is False
    # ... and the notification composed for it carries no justification (notify._responsible),
    # when its payload can still be read (it is erased once delivered).
    payload = _payloads(gateway, audit_id).get("social_care")
    if payload is not None:
        assert payload["justification"] is None

    token = gateway.token("social_worker", "LA-LEEDS", "Sam Social")
    body = gateway.post({"query": HISTORY, "variables": {"nhs": CHILD}}, token).json()
    assert "errors" not in body, body
    (access,) = body["data"]["accessHistory"]["accesses"]
    assert access["auditId"] == audit_id
    assert access["override"] is True
    # The owner must learn nothing it was not already sent: the reason was withheld from it.
    assert access["justification"] is None, access["justification"]
