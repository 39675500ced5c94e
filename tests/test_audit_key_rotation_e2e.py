"""Rotating the audit key: records are written under the new key from the restart on, and the
retired key (CHILDLOOKUP_AUDIT_PREVIOUS_KEYS) still finds the child's earlier accesses - for an
auditor's trail, an owner's history and `audit query --child` - while the log verifies whole.
Real gateways one after the other on one state directory, reference connectors, the real log."""

from __future__ import annotations

import json
from typing import Any

from connectors.protocol import Identifiers
from gateway.cli import main
from gateway.demo import DEMO_ORGANISATIONS
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.stack import Stack, reference_stack

CHILD = synthetic_nhs(47)
OLD_KEY = "0f" * 32
NEW_KEY = "e1" * 32

TRAIL = """query($nhs: String!) { auditTrail(nhsNumber: $nhs) { auditId purposeCode } }"""
HISTORY = """query($nhs: String!) { accessHistory(nhsNumber: $nhs) { accesses { auditId } } }"""
RECORDS = {
    "health": [health_record(CHILD, record_id="H-ROT")],
    "social_care": [
        social_care_record(
            CHILD, record_id="LA-ROT", identifiers=Identifiers(nhs_number=CHILD, local_id="LA-ROT")
        )
    ],
    "education": [],
}


def _looked_up(gw: Stack) -> str:
    token = gw.token("health_visitor", "RR8", "Hana Visitor")
    query = "query($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { auditId } }"
    body = gw.post({"query": query, "variables": {"nhs": CHILD}}, token).json()
    return str(body["data"]["child"]["auditId"])


def _read(gw: Stack, query: str, token: str) -> Any:
    body = gw.post({"query": query, "variables": {"nhs": CHILD}}, token).json()
    assert "errors" not in body, body
    return body["data"]


def _lookups_on_trail(gw: Stack) -> list[str]:
    trail = _read(gw, TRAIL, gw.token("auditor", "LA-LEEDS-IG"))["auditTrail"]
    return [e["auditId"] for e in trail if e["purposeCode"] == "DIRECT_CARE"]


def _owners_history(gw: Stack) -> set[str]:
    history = _read(gw, HISTORY, gw.token("social_worker", "LA-LEEDS", "Sam Social"))
    return {a["auditId"] for a in history["accessHistory"]["accesses"]}


def test_a_rotated_audit_key_still_finds_the_childs_earlier_accesses(tmp_path, monkeypatch, capsys):
    def stack(**keys: Any) -> Any:
        return reference_stack(tmp_path, RECORDS, organisations=DEMO_ORGANISATIONS, **keys)

    with stack(audit_key=OLD_KEY) as gw:
        before = _looked_up(gw)
    with stack(audit_key=NEW_KEY) as gw:  # rotated, the old key forgotten
        forgotten = _lookups_on_trail(gw)
    with stack(audit_key=NEW_KEY, audit_previous_keys=(OLD_KEY,)) as gw:
        after = _looked_up(gw)
        trail = _lookups_on_trail(gw)
        history = _owners_history(gw)

    assert forgotten == []  # the old key alone named the earlier lookup
    assert trail == [before, after]
    assert history == {before, after}

    monkeypatch.setenv("CHILDLOOKUP_AUDIT_KEY", NEW_KEY)
    monkeypatch.setenv("CHILDLOOKUP_AUDIT_PREVIOUS_KEYS", json.dumps([OLD_KEY]))
    capsys.readouterr()
    assert main(["audit", "query", "--child", CHILD, "--state-dir", str(tmp_path)]) == 0
    queried = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["audit_id"] for r in queried if r["access"]["purpose"] == "DIRECT_CARE"] == [
        before,
        after,
    ]
    assert main(["audit", "verify", "--state-dir", str(tmp_path)]) == 0
