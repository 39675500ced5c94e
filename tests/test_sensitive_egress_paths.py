"""A sensitive provider's name, organisation, practitioner, contact or dates leave the
gateway nowhere but a lookup answer to a role the policy grants `sensitive_service_details`.

DOMAIN.md: 'ordinary users never see the provider's name or contact details - contact is
brokered'. The GraphQL answer path is tested elsewhere (test_sensitive_*.py); this checks every
other egress with real components end to end - real gateway, real Rego, reference connectors on
loopback, the real audit log and outbox - for a child on a protection plan (so the local
authority is notified) with a marked CAMHS involvement (health) and an unmarked one (social care):
owner notifications as the agency received them, accessHistory, auditTrail and userAuditTrail,
the decision log file, OpenTelemetry spans, every log line of the gateway and connectors,
/metrics, and a connector answering malformed data holding a provider's name. A policy granting
`health_visitor` the details for DIRECT_CARE is the role that may see them; `gp` may not. The
difference must hold on the answer alone.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.protocol import Contact, Identifiers, Involvement
from gateway.audit import SqliteOutbox
from gateway.config import DEFAULT_POLICY_DIR
from gateway.demo import DEMO_ORGANISATIONS, reference_source
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.spans import span_exporter
from tests.stack import Stack, eventually, reference_apps, running_gateway, serving

CHILD = synthetic_nhs(61)
CAMHS_SINCE = date(2025, 2, 3)
SEXUAL_HEALTH = Involvement(
    service="Sexual health clinic",
    organisation="Pennine Sexual Health",
    practitioner=Contact(
        name="Nurse Quill", role="clinic nurse", phone="07700 900077", email="quill@psh.example"
    ),
    since=date(2025, 7, 9),
)
"""Unmarked, with dates and an email: caught by the vocabulary."""
DETAILS = (
    "Dr Mind",
    "07700 900002",
    "Leeds CAMHS",
    "CAMHS",
    "2025-02-03",
    "Nurse Quill",
    "07700 900077",
    "quill@psh.example",
    "Pennine Sexual Health",
    "Sexual health clinic",
    "2025-07-09",
)
"""Everything of the sensitive involvements a role without the grant must never be given."""
METRICS_TOKEN = "m" * 40

LOOKUP = """
query($nhs: String!, $purpose: Purpose!) {
  child(nhsNumber: $nhs, purpose: $purpose) {
    outcome complete auditId requestId policyRevision denial
    child {
      involvements {
        service organisation practitioner { name role phone email } lead since until sensitive
        broker { name role phone email } provenance { source asOf }
      }
      conflicts { field chosen disagreeing }
    }
    records { source method score }
    sources { source status errorCode failureCode recordsMatched cached }
    withheld { field source reason }
    ambiguity { reason }
  }
}
"""
TRAIL = """query($nhs: String!) { auditTrail(nhsNumber: $nhs) {
  auditId subject name role organisation purposeCode justification outcomeCode
  flaggedForInvestigation released withheld { field source reason } } }"""
USER_TRAIL = """query($subject: String!) { userAuditTrail(subject: $subject) {
  auditId role organisation released withheld { field source reason } } }"""
HISTORY = """query($nhs: String!) { accessHistory(nhsNumber: $nhs) { more accesses {
  auditId subject name role organisation purpose justification outcome override reasons } } }"""


def _camhs_since() -> Involvement:
    return Involvement(
        service="CAMHS",
        organisation="Leeds CAMHS",
        practitioner=Contact(name="Dr Mind", phone="07700 900002"),
        sensitive=True,
        since=CAMHS_SINCE,
        broker=Contact(name="Health safeguarding hub", phone="01632 960999"),
    )


def _records() -> dict[str, list[Any]]:
    health = health_record(CHILD, record_id=f"H-{CHILD}")
    health = health.model_copy(
        update={"involvements": [health.involvements[0], _camhs_since()]}  # type: ignore[index]
    )
    social = social_care_record(
        CHILD,
        record_id=f"LA-{CHILD}",
        identifiers=Identifiers(nhs_number=CHILD, local_id=f"LA-{CHILD}"),
    )
    social = social.model_copy(
        update={"involvements": [*(social.involvements or []), SEXUAL_HEALTH]}
    )
    return {"health": [health], "social_care": [social]}


def _policy_granting_details(tmp: Path) -> Path:
    """The shipped policy, but health visitors are granted sensitive service details for
    direct care: the role that may see them."""
    directory = tmp / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, directory)
    data_file = directory / "data.json"
    data = json.loads(data_file.read_text())
    grant = data["childlookup"]["roles"]["health_visitor"]["grants"]["DIRECT_CARE"]
    grant["fields"] = [*grant["fields"], "sensitive_service_details"]
    data_file.write_text(json.dumps(data))
    return directory


class _Lines(logging.Handler):
    """Every log record of the process, formatted with its extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in _PLAIN}
        self.lines.append(f"{record.name} {record.getMessage()} {extras!r} {record.exc_text}")


_PLAIN = set(vars(logging.LogRecord("x", 0, "", 0, "", None, None)))


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return span_exporter()


class World:
    def __init__(self, stack: Stack, tmp: Path, lines: _Lines) -> None:
        self.stack, self.tmp, self.lines = stack, tmp, lines

    def notifications(self) -> list[bytes]:
        """The owner notifications queued for the agencies, as they are sent (the reference
        connector refuses unsigned-verifier deliveries, so each stays queued with its payload)."""
        outbox = SqliteOutbox(self.stack.state_dir / "audit.sqlite3")
        try:
            return [e.payload for e in outbox.entries() if e.payload is not None]
        finally:
            outbox.close()

    def ask(self, role: str, org: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        token = self.stack.token(role, org, f"{role} user")
        response = self.stack.post({"query": query, "variables": variables}, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body  # type: ignore[no-any-return]

    def lookup(self, role: str, org: str, purpose: str) -> dict[str, Any]:
        body = self.ask(role, org, LOOKUP, {"nhs": CHILD, "purpose": purpose})
        answer = body["data"]["child"]
        assert answer["outcome"] == "FOUND", answer
        return answer  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory, spans) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("sensitive-egress")
    lines = _Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    level, root.level = root.level, logging.DEBUG
    apps = reference_apps(tmp, _records())
    try:
        with serving(apps) as urls:
            sources = [
                reference_source(name, url, organisations=DEMO_ORGANISATIONS.get(name, ()))
                for name, url in urls.items()
            ]
            with running_gateway(
                tmp,
                sources,
                policy_dir=_policy_granting_details(tmp),
                decision_log=str(tmp / "decisions.jsonl"),
                metrics_token=METRICS_TOKEN,
                auditor_roles=("auditor",),
                notification_poll_s=0.05,
            ) as stack:
                yield World(stack, tmp, lines)
    finally:
        root.removeHandler(lines)
        root.level = level


def _leaked(text: str) -> list[str]:
    return [d for d in DETAILS if d.casefold() in text.casefold()]


@pytest.fixture(scope="module")
def looked_up(world: World) -> dict[str, dict[str, Any]]:
    """The ordinary GP's lookup, then the health visitor's, who may see the details."""
    return {
        "gp": world.lookup("gp", "A81001", "DIRECT_CARE"),
        "health_visitor": world.lookup("health_visitor", "RR8", "DIRECT_CARE"),
    }


def test_the_role_granted_the_details_sees_them_and_the_gp_does_not(looked_up):
    """The baseline: the policy change is in force, and the GP's answer holds none of it."""
    shown = json.dumps(looked_up["health_visitor"]["child"]["involvements"])
    assert "Dr Mind" in shown
    # Social care does not provide the details (its profile): its unmarked sexual health
    # service is brokered even for the health visitor.
    assert "Nurse Quill" not in shown
    assert "2025-02-03" in shown
    assert _leaked(json.dumps(looked_up["gp"])) == []


def test_owner_notifications_name_no_sensitive_provider(world, looked_up):
    sent = eventually(lambda: len(world.notifications()) >= 2 and world.notifications())
    assert all(json.loads(p)["records"] for p in sent)
    assert _leaked(b"\n".join(sent).decode()) == []


def test_access_history_names_no_sensitive_provider(world, looked_up):
    body = world.ask("social_worker", "LA-LEEDS", HISTORY, {"nhs": CHILD})
    assert len(body["data"]["accessHistory"]["accesses"]) >= 2
    assert _leaked(json.dumps(body)) == []


def test_audit_trails_name_no_sensitive_provider(world, looked_up):
    trail = world.ask("auditor", "IG", TRAIL, {"nhs": CHILD})["data"]["auditTrail"]
    assert _leaked(json.dumps(trail)) == []
    released = {e["role"]: set(e["released"]) for e in trail if e["outcomeCode"] == "FOUND"}
    # An auditor reads which fields were released, not their values: the health visitor's
    # release includes the details, the GP's does not.
    assert "health:sensitive_service_details" in released["health_visitor"]
    assert not any("sensitive_service_details" in f for f in released["gp"])
    for subject in {e["subject"] for e in trail}:
        user = world.ask("auditor", "IG", USER_TRAIL, {"subject": subject})
        assert user["data"]["userAuditTrail"]
        assert _leaked(json.dumps(user)) == []


def test_the_audit_log_itself_names_no_sensitive_provider(world, looked_up):
    records = world.stack.components.audit.records()
    assert _leaked(json.dumps(records, default=str)) == []


def test_the_decision_log_names_no_sensitive_provider(world, looked_up):
    text = (world.tmp / "decisions.jsonl").read_text()
    assert text.count("\n") >= 4
    assert _leaked(text) == []


def test_spans_carry_no_sensitive_provider(world, looked_up, spans):
    time.sleep(0.2)
    finished = spans.get_finished_spans()
    assert any(s.name == "connector.lookup" for s in finished)
    text = json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [(e.name, dict(e.attributes or {})) for e in s.events],
                "status": s.status.description,
            }
            for s in finished
        ]
    )
    assert _leaked(text) == []


def test_metrics_carry_no_sensitive_provider(world, looked_up):
    page = httpx.get(
        f"{world.stack.url}/metrics",
        headers={"authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=10,
    )
    assert page.status_code == 200
    assert "childlookup" in page.text
    assert _leaked(page.text) == []


def test_no_log_line_names_a_sensitive_provider(world, looked_up):
    assert world.lines.lines
    assert [line for line in world.lines.lines if _leaked(line)] == []


# A connector answering malformed data that holds a provider's name


def _malformed_app(kind: str) -> Starlette:
    involvement = {
        "service": "CAMHS",
        "organisation": "Leeds CAMHS",
        "practitioner": {"name": "Dr Mind", "phone": "07700 900002"},
        "sensitive": "CAMHS Dr Mind",  # not a boolean
    }

    async def lookup(request: Request) -> Response:
        asked = await request.json()
        if kind == "invalid_record":
            body = {
                "protocol_version": "1",
                "request_id": asked["request_id"],
                "source": "social_care",
                "records": [
                    {
                        "record_id": "LA-X",
                        "identifiers": {"nhs_number": CHILD},
                        "as_of": "2026-11-01T09:00:00Z",
                        "involvements": [involvement],
                    }
                ],
            }
            return Response(json.dumps(body), media_type="application/json")
        if kind == "error_message":
            body = {
                "protocol_version": "1",
                "error": {
                    "code": "INTERNAL",
                    "message": "Dr Mind at Leeds CAMHS 07700 900002 could not be read",
                },
            }
            return Response(json.dumps(body), status_code=500, media_type="application/json")
        return Response("Dr Mind, Leeds CAMHS, 07700 900002", status_code=502)

    return Starlette(routes=[Route("/{path:path}", lookup, methods=["POST"])])


@pytest.mark.parametrize("kind", ["invalid_record", "error_message", "not_json"])
def test_a_malformed_answer_holding_a_provider_is_echoed_nowhere(tmp_path, spans, kind):
    lines = _Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    level, root.level = root.level, logging.DEBUG
    spans.clear()
    try:
        apps = reference_apps(tmp_path, {"health": _records()["health"]})
        apps["social_care"] = _malformed_app(kind)
        with serving(apps) as urls:
            sources = [reference_source(name, url) for name, url in urls.items()]
            with running_gateway(
                tmp_path,
                sources,
                decision_log=str(tmp_path / "decisions.jsonl"),
                metrics_token=METRICS_TOKEN,
            ) as stack:
                token = stack.token("gp", "A81001")
                response = stack.post(
                    {"query": LOOKUP, "variables": {"nhs": CHILD, "purpose": "DIRECT_CARE"}},
                    token,
                )
                body = response.text
                (social,) = [
                    s
                    for s in response.json()["data"]["child"]["sources"]
                    if s["source"] == "social_care"
                ]
                assert social["status"] == "FAILED"
                page = httpx.get(
                    f"{stack.url}/metrics",
                    headers={"authorization": f"Bearer {METRICS_TOKEN}"},
                    timeout=10,
                ).text
                audit = json.dumps(stack.components.audit.records(), default=str)
        time.sleep(0.1)
        traced = json.dumps(
            [
                [s.name, dict(s.attributes or {}), s.status.description]
                for s in spans.get_finished_spans()
            ]
        )
    finally:
        root.removeHandler(lines)
        root.level = level
    decisions = (tmp_path / "decisions.jsonl").read_text()
    echoed = {
        "answer": _leaked(body),
        "metrics": _leaked(page),
        "audit": _leaked(audit),
        "decisions": _leaked(decisions),
        "spans": _leaked(traced),
        "logs": [line for line in lines.lines if _leaked(line)],
    }
    assert echoed == {k: [] for k in echoed}


# A role shown no involvements at all is not told, by `withheld[]`, that the child has a
# sensitive service


WITH_SERVICE = synthetic_nhs(62)
WITHOUT_SERVICE = synthetic_nhs(63)


def _without_sensitive(record: Any) -> Any:
    kept = [i for i in record.involvements or [] if not i.sensitive]
    return record.model_copy(update={"involvements": kept})


@pytest.fixture(scope="module")
def identity_only(tmp_path_factory) -> Iterator[Stack]:
    from tests.factories import social_care_with_unmarked_camhs
    from tests.stack import reference_stack

    tmp = tmp_path_factory.mktemp("identity-only")

    def social(nhs: str, **kw: Any) -> Any:
        return social_care_with_unmarked_camhs(
            nhs,
            record_id=f"LA-{nhs}",
            identifiers=Identifiers(nhs_number=nhs, local_id=f"LA-{nhs}"),
            **kw,
        )

    records = {
        "health": [
            health_record(WITH_SERVICE, record_id=f"H-{WITH_SERVICE}"),
            _without_sensitive(health_record(WITHOUT_SERVICE, record_id=f"H-{WITHOUT_SERVICE}")),
        ],
        "social_care": [
            social(WITH_SERVICE),
            _without_sensitive(social(WITHOUT_SERVICE)),
        ],
    }
    with reference_stack(tmp, records) as stack:
        yield stack


@pytest.mark.parametrize(
    ("role", "purpose"),
    [("la_shielding_admin", "SHIELDING_ADMINISTRATION")],
)
def test_a_role_shown_no_involvements_is_not_told_the_child_has_a_sensitive_service(
    identity_only, role, purpose
):
    def withheld(nhs: str) -> set[tuple[str, str, str]]:
        answer = identity_only.lookup(role, nhs, purpose)["data"]["child"]
        assert answer["outcome"] == "FOUND"
        assert answer["child"]["involvements"] == []
        return {(w["source"], w["field"], w["reason"]) for w in answer["withheld"]}

    assert withheld(WITH_SERVICE) == withheld(WITHOUT_SERVICE)
