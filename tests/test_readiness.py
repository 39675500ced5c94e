"""What /readyz promises a load balancer: this instance can take lookups and audit them now.

Ready means the policy is loaded, a record can really be committed to the audit log, and the
instance is not shutting down. A dead agency does not make it unready (every instance shares the
agencies, and lookups still answer with that source's status); sources are reported instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from connectors.serving import free_port
from gateway.demo import reference_source
from tests.factories import NHS, health_record, social_care_record, synthetic_nhs
from tests.processes import (
    dev_token,
    graphql,
    health_source_config,
    serve_gateway,
    serve_health_connector,
    wait_for,
)
from tests.stack import reference_stack, running_gateway, write_records

CHATTR = shutil.which("chattr")


def _chattr(flag: str, path: Path) -> subprocess.CompletedProcess[str]:
    assert CHATTR is not None
    return subprocess.run([CHATTR, flag, str(path)], capture_output=True, text=True)


@pytest.fixture
def immutable():
    """Make files immutable (chattr +i), unwritable even to root, as a read-only or failing disk
    would leave them; undone however the test ends."""
    if CHATTR is None:
        pytest.skip("chattr is not installed: cannot make a file unwritable to root")
    made: list[Path] = []

    def make(path: Path) -> None:
        result = _chattr("+i", path)
        if result.returncode != 0:
            pytest.skip(f"this filesystem refuses chattr +i: {result.stderr.strip()}")
        made.append(path)

    def undo(path: Path) -> None:
        _chattr("-i", path)
        made.remove(path)

    make.undo = undo  # type: ignore[attr-defined]
    yield make
    for path in made:
        _chattr("-i", path)


def test_an_audit_log_that_cannot_be_written_makes_the_instance_unready(tmp_path, immutable):
    with reference_stack(tmp_path, {"health": [health_record()]}) as gateway:
        assert gateway.lookup("gp", NHS, "DIRECT_CARE")["data"]["child"]["outcome"] == "FOUND"
        # The write-ahead log still opens and locks, so a transaction can begin; writing fails.
        immutable(Path(f"{gateway.components.audit.path}-wal"))

        refused = gateway.lookup("gp", NHS, "DIRECT_CARE")
        ready = httpx.get(f"{gateway.url}/readyz", timeout=5)

        immutable.undo(Path(f"{gateway.components.audit.path}-wal"))
        recovered = httpx.get(f"{gateway.url}/readyz", timeout=5)

    assert refused["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["checks"]["audit"] is False
    assert recovered.status_code == 200


def test_a_dead_source_is_reported_but_does_not_make_the_instance_unready(tmp_path):
    dead = reference_source("education", f"http://127.0.0.1:{free_port()}")
    with reference_stack(tmp_path, {"health": [health_record()]}) as live:
        sources = [*live.components.sources, dead]
        with running_gateway(tmp_path / "second", sources) as gateway:
            before = httpx.get(f"{gateway.url}/readyz", timeout=5).json()
            gateway.lookup("gp", NHS, "DIRECT_CARE")
            ready = httpx.get(f"{gateway.url}/readyz", timeout=5)

    assert before["source_status"]["education"] == {"last_status": None, "seconds_ago": None}
    assert ready.status_code == 200
    report = ready.json()["source_status"]
    assert report["health"]["last_status"] == "RESPONDED"
    assert report["education"]["last_status"] == "FAILED"
    assert report["education"]["seconds_ago"] >= 0


def test_readiness_turns_false_while_draining_and_lookups_are_still_answered(tmp_path):
    records = write_records(tmp_path / "health.jsonl", [health_record()])
    connector_port, port = free_port(), free_port()
    config = health_source_config(tmp_path / "sources.toml", connector_port, 800)
    env = os.environ | {"CHILDLOOKUP_STATE_DIR": str(tmp_path), "CHILDLOOKUP_SHUTDOWN_DRAIN_S": "3"}
    connector = serve_health_connector(records, connector_port, env)
    gateway = serve_gateway(config, port, env)
    try:
        wait_for(f"http://127.0.0.1:{connector_port}/healthz", connector)
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
        token = dev_token(tmp_path)
        gateway.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        draining = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        query = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'
        answered = graphql(port, query, token)
        code = gateway.wait(timeout=20)
    finally:
        for process in (gateway, connector):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert draining.status_code == 503
    assert draining.json()["status"] == "shutting down"
    assert answered["data"]["child"]["outcome"] == "FOUND"
    assert code == 0


SHIELDED = synthetic_nhs(13)
HIDDEN = dict(
    name=PersonName(given="Freya", family="Lane"),
    date_of_birth=date(2015, 1, 20),
    address=Address(lines=["3 Quiet Road", "Leeds"], postcode="LS8 1PQ"),
)
SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) {
    outcome sources { source status }
  }
}
"""


def _search_then_readyz(stack, given, family, born="2015-01-20", postcode="LS8 1PQ"):
    details = {
        "givenName": given,
        "familyName": family,
        "dateOfBirth": born,
        "postcode": postcode,
    }
    body = {
        "query": SEARCH,
        "variables": {"purpose": "SAFEGUARDING_ENQUIRY", "demographics": details},
    }
    answer = stack.post(body, stack.token("social_worker")).json()["data"]["child"]
    ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
    statuses = {source: report["last_status"] for source, report in ready["source_status"].items()}
    return answer, statuses


def test_readyz_does_not_tell_a_hidden_search_from_a_search_for_nobody(tmp_path):
    """A demographic search reaching a shielded child is answered as one for nobody; /readyz,
    which needs no token, showed the agencies ANSWERED right after it, NO_RECORD after the
    other."""
    records = {
        "health": [health_record(SHIELDED, record_id="H-S", **HIDDEN)],
        "social_care": [
            social_care_record(
                SHIELDED,
                record_id="LA-S",
                identifiers=Identifiers(nhs_number=SHIELDED, local_id="LA-S"),
                flags=RecordFlags(shielded=True),
                **HIDDEN,
            )
        ],
    }
    with reference_stack(tmp_path, records) as stack:
        hidden, after_hidden = _search_then_readyz(stack, "Freya", "Lane")
        absent, after_absent = _search_then_readyz(
            stack, "Nobody", "Atall", "2016-02-02", "LS1 1AA"
        )

    # The caller cannot tell them apart (shield-safe search) ...
    assert hidden == absent
    assert {s["status"] for s in hidden["sources"]} == {"NO_RECORD"}
    # ... and neither should anyone reading the unauthenticated readiness page right after.
    assert after_hidden == after_absent, (after_hidden, after_absent)
