"""Auditors' readings of a child's trail under the per-user limits a lookup is admitted under
(gateway.audit.trail): a trail tells whether any agency knows the identifier, who works with the
child and what each source released, so reading child after child is trawling as looking them up
is. Real gateway, real Rego, reference connectors on loopback, the real SQLite audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import health_record, synthetic_nhs
from tests.stack import Stack, reference_connectors, running_gateway

CHILDREN = [synthetic_nhs(90 + n) for n in range(5)]
TRAIL = "query($nhs: String!) { auditTrail(nhsNumber: $nhs) { auditId outcome } }"
LOOKUP = "query($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { outcome } }"
ORG, NAME = "LA-LEEDS-IG", "Trawling Auditor"
SUBJECT = f"dev:{ORG}:{NAME}"


@pytest.fixture
def sources(tmp_path) -> Iterator[Any]:
    records = {"health": [health_record(nhs, record_id=f"H-{nhs}") for nhs in CHILDREN]}
    with reference_connectors(tmp_path, records) as sources:
        yield sources


def _read(gw: Stack, nhs: str) -> httpx.Response:
    return gw.post({"query": TRAIL, "variables": {"nhs": nhs}}, gw.token("auditor", ORG, NAME))


def _code(response: httpx.Response) -> str:
    body = response.json()
    assert body["data"] is None, body
    return str(body["errors"][0]["extensions"]["code"])


def test_a_trail_read_past_the_daily_cap_is_refused_recorded_and_alerted_as_a_lookup_is(
    tmp_path, sources
):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gw:
        admitted = [_read(gw, nhs) for nhs in CHILDREN[:2]]
        again = _read(gw, CHILDREN[0])  # a child read already today is no second child
        refused = _read(gw, CHILDREN[2])
        alerts = gw.post({"query": "{ limitAlerts { subject kind } }"}, gw.token("auditor"))
        logged = gw.components.audit.records(
            child_refs=gw.components.pseudonymiser.refs("nhs", CHILDREN[2]), since=None, limit=10
        )

    assert [r.status_code for r in (*admitted, again)] == [200, 200, 200]
    assert all("errors" not in r.json() for r in (*admitted, again))
    # As a lookup refused at the cap: 429 until the next UTC midnight, LOOKUP_CAP_REACHED.
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert _code(refused) == "LOOKUP_CAP_REACHED"
    assert {"subject": SUBJECT, "kind": "DISTINCT_CHILDREN_CAP"} in alerts.json()["data"][
        "limitAlerts"
    ]
    # Nothing was read: the refused reading is the child's only record.
    (record,) = logged
    assert (record["access"]["purpose"], record["outcome"]) == ("AUDIT_REVIEW", "REFUSED")
    assert record["error_code"] == "DISTINCT_CHILDREN_CAP"


def test_trail_reads_count_against_the_per_minute_limit(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=2) as gw:
        codes = [_read(gw, CHILDREN[0]).status_code for _ in range(2)]
        refused = _read(gw, CHILDREN[0])

    assert codes == [200, 200]
    assert _code(refused) == "RATE_LIMITED"


def test_trail_reads_and_lookups_by_one_user_count_against_one_cap(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gw:
        lookup = gw.post(
            {"query": LOOKUP, "variables": {"nhs": CHILDREN[0]}}, gw.token("gp", ORG, NAME)
        )
        read = _read(gw, CHILDREN[1])
        refused = _read(gw, CHILDREN[2])

    assert lookup.status_code == read.status_code == 200
    assert _code(refused) == "LOOKUP_CAP_REACHED"


def test_the_children_whose_trails_were_read_are_counted_after_a_restart(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gw:
        before = [_read(gw, nhs).status_code for nhs in CHILDREN[:2]]
    # restarted: today's children are read back from the audit log, trail readings too
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gw:
        read_again = _read(gw, CHILDREN[1])
        refused = _read(gw, CHILDREN[2])

    assert before == [200, 200]
    assert read_again.status_code == 200
    assert _code(refused) == "LOOKUP_CAP_REACHED"
