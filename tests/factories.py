"""Small builders for protocol records used across gateway tests."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from connectors.check_digits import nhs_check_digit
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    School,
    Sex,
)
from gateway.config import DEFAULT_POLICY_DIR
from gateway.policy import DecisionLog, LoggedPolicy, PolicyEngine, RegoPolicyEngine
from gateway.types import Caller, LookupContext, LookupQuery

NHS = "9434765919"
OTHER_NHS = "9000000009"
AS_OF = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def health_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "H1",
        "identifiers": Identifiers(nhs_number=nhs),
        "name": PersonName(given="Amelia", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "sex": Sex.FEMALE,
        "address": Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
        "gp_practice": GpPractice(ods_code="A81001", name="Test Surgery", phone="01632 960001"),
        "carers": [Carer(name="Jo Hart", relationship="mother", parental_responsibility=True)],
        "involvements": [
            Involvement(
                service="health visiting",
                organisation="Leeds Community Healthcare",
                practitioner=Contact(
                    name="Hana Visitor", role="health visitor", phone="07700 900001"
                ),
            ),
            Involvement(
                service="CAMHS",
                organisation="Leeds CAMHS",
                practitioner=Contact(name="Dr Mind", phone="07700 900002"),
                sensitive=True,
                broker=Contact(name="Health safeguarding hub", phone="01632 960999"),
            ),
        ],
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def social_care_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "LA-000001",
        "identifiers": Identifiers(nhs_number=nhs, local_id="LA-000001"),
        "name": PersonName(given="Amelia", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "address": Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
        "involvements": [
            Involvement(
                service="children's social care",
                organisation="Leeds City Council",
                practitioner=Contact(name="Sam Social", role="social worker", phone="07700 900003"),
                lead=True,
            )
        ],
        "indicators": Indicators(child_protection_plan=True, child_in_need=True),
        "flags": RecordFlags(),
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def school_record(nhs: str | None = NHS, **overrides: Any) -> ConnectorRecord:
    fields: dict[str, Any] = {
        "record_id": "E1",
        "identifiers": Identifiers(nhs_number=nhs, upn="H801200001001"),
        "name": PersonName(given="Millie", family="Hart"),
        "date_of_birth": date(2019, 3, 4),
        "school": School(urn="107000", name="Test Primary", phone="01632 960500"),
        "as_of": AS_OF,
    }
    fields.update(overrides)
    return ConnectorRecord(**fields)


def synthetic_nhs(n: int) -> str:
    """The n-th valid NHS number in the synthetic range (never issued to a real person)."""
    found = -1
    stem = 900_000_000
    while True:
        check = nhs_check_digit(str(stem))
        if check is not None:
            found += 1
            if found == n:
                return f"{stem}{check}"
        stem += 1


CALLER = Caller(subject="s", name="n", role="gp", organisation="A81001")


@cache
def _real_policy() -> PolicyEngine:
    return RegoPolicyEngine.from_directory(DEFAULT_POLICY_DIR)


def lookup_context(
    query: LookupQuery,
    caller: Caller = CALLER,
    *,
    policy: PolicyEngine | None = None,
    deadline_s: float = 5.0,
    request_id: str = "req-1",
) -> LookupContext:
    """A lookup as the pipeline starts it, deciding by `policy` (the real bundle by default)."""
    logged = LoggedPolicy(policy or _real_policy(), DecisionLog(None, instance="test"))
    return LookupContext(
        caller=caller,
        query=query,
        request_id=request_id,
        child_ref="nhs:test",
        deadline=time.monotonic() + deadline_s,
        policy=logged,
    )
