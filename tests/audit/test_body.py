"""An audit record's body - the JSON its hash covers - is exactly what `dataclasses.asdict` made of
it before the body was built without asdict's deep copies: a different byte would make every
record written since verify differently from the rule in gateway.audit.chain."""

import dataclasses
import json

import pytest

from bench.audit_verify import _record
from gateway.audit import AuditAmbiguity, AuditCandidates, AuditRecord
from tests.factories import audit_record, break_glass_record, notifying_record


def _asdict_body(record: AuditRecord) -> str:
    """The body as it was built until now: asdict, then the access time as ISO text."""
    data = dataclasses.asdict(record)
    data["access"]["at"] = record.access.at.isoformat()
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


AMBIGUOUS = dataclasses.replace(
    audit_record("amb"),
    outcome="AMBIGUOUS",
    ambiguity=AuditAmbiguity(
        "TWO_CHILDREN", (AuditCandidates("health", "NHS_NUMBER", 2), AuditCandidates("x", "D", 1))
    ),
    child_flags={"shielded": True, "restricted": False},
    decision_ids=("d1", "d2"),
)


@pytest.mark.parametrize(
    "record",
    [
        audit_record("plain"),
        break_glass_record("glass"),
        notifying_record("told", "m-1", "m-2")[0],
        AMBIGUOUS,
        _record(7),
        _record(200),  # a break-glass override among the bench's records
    ],
    ids=["plain", "break glass", "notified", "ambiguous", "bench", "bench override"],
)
def test_the_body_is_byte_for_byte_what_asdict_made(record):
    assert record.body() == _asdict_body(record)
