"""The auditors', privacy officers' and owners' reads (auditTrail, userAuditTrail, the
alert feeds, undeliveredNotifications, accessHistory) and of the harvesting defences around them.
Real gateway, real Rego bundle, reference connectors on loopback, the real SQLite and PostgreSQL
audit logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.notifications import NotificationReason
from connectors.protocol import Identifiers
from gateway.audit import (
    AccessHistory,
    AuditField,
    AuditNotice,
    AuditTrail,
    Pseudonymiser,
    SqliteAuditStore,
)
from gateway.demo import DEMO_ORGANISATIONS, reference_source
from gateway.types import Caller
from resolvers.mapping import audit_entry
from tests.factories import (
    AUDIT_KEY,
    CHECKPOINT_KEY,
    NHS,
    audit_record,
    health_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import Stack, reference_stack
from tests.test_audit_postgres_e2e import Link, database  # noqa: F401  (fixture)

CHILD = synthetic_nhs(61)
TRAIL = "query($nhs: String!) { auditTrail(nhsNumber: $nhs) { auditId outcomeCode } }"
HISTORY = "query($nhs: String!) { accessHistory(nhsNumber: $nhs) { accesses { auditId } } }"
USER_TRAIL = "query($subject: String!) { userAuditTrail(subject: $subject) { auditId } }"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("review-audit-queries")
    ids = Identifiers(nhs_number=CHILD, local_id="LA-61")
    records = {
        "health": [health_record(CHILD, record_id="H-61")],
        "social_care": [social_care_record(CHILD, record_id="LA-61", identifiers=ids)],
        "education": [],
    }
    with reference_stack(tmp, records, organisations=DEMO_ORGANISATIONS) as stack:
        yield stack


def _ask(gw: Stack, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    response = gw.post({"query": query, "variables": variables}, token)
    # 429 where every error is a usage limit's refusal (with Retry-After), as for a lookup.
    assert response.status_code in (200, 429), response.text
    return response.json()  # type: ignore[no-any-return]


def _code(body: dict[str, Any]) -> str:
    assert body["data"] is None, body
    return str(body["errors"][0]["extensions"]["code"])


# --- no child's identifier in clear in the log ----------------------------------------------------


def test_a_users_trail_asked_for_by_a_childs_nhs_number_keeps_no_nhs_number_in_the_log(gateway):
    """An auditor pasting a child's NHS number into the user box: the reading's record held the
    NHS number in clear (`read.subject`), in a log that must name children only by keyed
    pseudonym, and showed it in `reading.subject` to every auditor after."""
    spaced = f"{CHILD[:3]} {CHILD[3:6]} {CHILD[6:]}"
    for subject in (CHILD, spaced):
        _ask(gateway, USER_TRAIL, {"subject": subject}, gateway.token("auditor", "LA-LEEDS-IG"))

    path = gateway.components.audit.path
    log = path.read_bytes() + path.with_name(path.name + "-wal").read_bytes()
    assert CHILD.encode() not in log
    assert spaced.encode() not in log


# --- the audit store down -------------------------------------------------------------------------


@pytest.fixture
def link(database) -> Iterator[tuple[str, Link]]:  # noqa: F811
    url, _ = database
    cable = Link(5432)
    yield url.replace(":5432/", f":{cable.port}/"), cable
    cable.cut()


def test_reads_of_an_audit_database_cut_off_are_refused_audit_unavailable(
    tmp_path,
    database,  # noqa: F811
    link,
):
    """The README's promise for an audit store that cannot be reached is AUDIT_UNAVAILABLE
    (nothing is released); the auditors' and owners' reads answered INTERNAL_ERROR, a fault
    logged as a resolver error, so an outage read as a bug in the gateway."""
    _, schema = database
    through_link, cable = link
    settings = {"database_url": through_link, "database_schema": schema}
    records = {"social_care": [social_care_record(NHS, identifiers=Identifiers(nhs_number=NHS))]}
    organisations = {"social_care": ("LA-LEEDS",)}
    with reference_stack(tmp_path, records, organisations=organisations, **settings) as gw:
        gw.lookup("gp", NHS, "DIRECT_CARE")
        auditor = gw.token("auditor", "LA-LEEDS-IG")
        assert "errors" not in _ask(gw, TRAIL, {"nhs": NHS}, auditor)

        cable.cut()
        codes = [
            _code(_ask(gw, TRAIL, {"nhs": NHS}, auditor)),
            _code(_ask(gw, USER_TRAIL, {"subject": "dev:ORG1:Test User"}, auditor)),
            _code(_ask(gw, "{ overrideAlerts { auditId } }", {}, auditor)),
            _code(_ask(gw, "{ limitAlerts { auditId } }", {}, auditor)),
            _code(_ask(gw, "{ undeliveredNotifications { auditId } }", {}, auditor)),
            _code(_ask(gw, HISTORY, {"nhs": NHS}, gw.token("social_worker", "LA-LEEDS"))),
        ]
    assert codes == ["AUDIT_UNAVAILABLE"] * 6


# --- trawling through the auditors' reads ---------------------------------------------------------


def test_reading_the_trails_of_more_children_than_the_daily_cap_is_refused_and_alerted(tmp_path):
    """A child's trail tells whether any agency knows an NHS number, who works with the child
    (roles, organisations), whether it was an override and which fields each source released: a
    lookup of the child in all but name. An auditor account reading the trails of child after
    child is held to no limit at all and raises no alert, where a lookup of as many would be
    refused at the per-user limits and reported as possible trawling."""
    children = [synthetic_nhs(80 + n) for n in range(6)]
    records = {"health": [health_record(nhs, record_id=f"H-{nhs}") for nhs in children]}
    limits = {"lookups_per_user_per_minute": 100_000, "distinct_children_per_user_per_day": 3}
    with reference_stack(tmp_path, records, **limits) as gw:
        auditor = gw.token("auditor", "LA-LEEDS-IG", "Trawling Auditor")
        answers = [_ask(gw, TRAIL, {"nhs": nhs}, auditor) for nhs in children]
        alerts = _ask(gw, "{ limitAlerts { subject kind } }", {}, gw.token("auditor", "IG2", "IG"))

    refused = [a for a in answers if "errors" in a]
    assert refused, "six children's trails read by one user on a day capped at three"
    assert {"subject": "dev:LA-LEEDS-IG:Trawling Auditor", "kind": "DISTINCT_CHILDREN_CAP"} in (
        alerts["data"]["limitAlerts"]
    )


# --- a log shared with a newer gateway ------------------------------------------------------------

PSEUDONYMS = Pseudonymiser(AUDIT_KEY)
OWNER = Caller("dev:LA-LEEDS:sam", "Sam Social", "social_worker", "LA-LEEDS")
SOURCES = (
    reference_source("health", "http://127.0.0.1:1", organisations=["RR8"]),
    reference_source("social_care", "http://127.0.0.1:3", organisations=["LA-LEEDS"]),
)


@pytest.fixture
def shared_log(tmp_path) -> Iterator[SqliteAuditStore]:
    store = SqliteAuditStore(
        tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY, checkpoint_every=5
    )
    yield store
    store.close()


@pytest.mark.anyio
async def test_a_notification_reason_a_newer_gateway_recorded_does_not_fail_the_history(
    shared_log,
):
    """Gateways of two versions share one PostgreSQL log in a rolling upgrade; purposes and
    outcomes this version lacks are read as UNKNOWN so that one record "must not fail every trail
    an older one reads". A notification reason this version lacks failed the owner's whole
    access history of the child with INTERNAL_ERROR (NotificationReason(reason) raising)."""
    newer = audit_record(
        "from-newer",
        notified=[AuditNotice("social_care", ["CHILD_PROTECTION_PLAN", "CHILD_IN_NEED"], "m-1")],
    )
    await shared_log.append(newer)

    seen = await AccessHistory(shared_log, PSEUDONYMS, SOURCES).for_child(OWNER, ("nhs", NHS), 25)

    (entry,) = seen.accesses
    assert entry.audit_id == "from-newer"
    assert NotificationReason.CHILD_PROTECTION_PLAN in entry.reasons


@pytest.mark.anyio
async def test_a_withholding_reason_a_newer_gateway_recorded_does_not_fail_the_childs_trail(
    shared_log,
):
    """The same for an auditor: one record with a withholding reason this version lacks failed
    the child's whole trail (resolvers.mapping builds WithholdingReason(reason), which has no
    UNKNOWN), so an auditor could read no access to that child at all."""
    await shared_log.append(
        audit_record("from-newer", withheld=[AuditField("health", "address", "NEW_REASON")])
    )
    trail = AuditTrail(shared_log, PSEUDONYMS, ("auditor",))
    auditor = Caller("dev:IG:ann", "Ann Auditor", "auditor", "LA-LEEDS-IG")

    records = await trail.for_child(auditor, ("nhs", NHS), None, limit=1000)

    entries = [audit_entry(r) for r in records.entries]
    assert [e.audit_id for e in entries] == ["from-newer"]
