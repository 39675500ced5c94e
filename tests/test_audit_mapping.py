"""An audit record as GraphQL shows it, read back as a store gives it (its body's JSON)."""

from __future__ import annotations

import json

import pytest

from resolvers.mapping import audit_entry
from resolvers.types import AuditOutcome, AuditPurpose
from tests.factories import access, audit_record


def _entry(**changes: str):
    record = json.loads(audit_record("a1").body())
    record["access"]["purpose"] = changes.get("purpose", record["access"]["purpose"])
    record["outcome"] = changes.get("outcome", record["outcome"])
    return audit_entry(record)


def test_codes_this_version_knows_are_shown_as_their_enum():
    entry = _entry()

    assert entry.purpose_code is AuditPurpose(access().purpose)
    assert entry.outcome_code is AuditOutcome.FOUND


@pytest.mark.parametrize(
    ("purpose", "outcome"), [("FUTURE_PURPOSE", "FOUND"), ("DIRECT_CARE", "X")]
)
def test_a_code_a_newer_gateway_recorded_is_unknown_not_a_failed_trail(purpose, outcome):
    """Gateways of two versions share one log in a rolling upgrade: one record of a purpose or
    outcome this version lacks failed every trail holding it (INTERNAL_ERROR)."""
    entry = _entry(purpose=purpose, outcome=outcome)

    assert (entry.purpose, entry.outcome) == (purpose, outcome)  # as recorded, deprecated
    assert (entry.purpose_code is AuditPurpose.UNKNOWN) is (purpose == "FUTURE_PURPOSE")
    assert (entry.outcome_code is AuditOutcome.UNKNOWN) is (outcome == "X")
