"""A sensitive service configured as an agency of its own (`SourceConfig.sensitive`) is named only
to a caller shown sensitive service details (gateway.agency_names), and everything it sends is
brokered (gateway.decide).

DOMAIN.md: ordinary users never see a sensitive service's provider. A sexual health clinic run as
its own connector source used to be named in `sources[]` (with `recordsMatched: 1`: the child is
known there), `records[]`, `withheld[]` and the provenance of its involvement - and an involvement
it did not mark, in a service the vocabulary does not know, was shown in full. End to end: a real
gateway, the shipped policy (and a copy granting health visitors the details), the health
reference connector and the clinic served by the connector SDK over its own records file.
The copied policy is tests.test_sensitive_egress_paths's, granting health visitors the details
for direct care.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.app import create_connector_app
from connectors.protocol import Contact, FieldId, Involvement, RecordFlags
from connectors.records import FileBackend
from connectors.reference import create_reference_app
from gateway.config import SourceConfig, load_sources_file
from gateway.demo import reference_source
from tests.factories import health_record, social_care_record, synthetic_nhs
from tests.processes import CLI
from tests.stack import Stack, running_gateway, serving, write_records
from tests.test_sensitive_egress_paths import _policy_granting_details

CHILD = synthetic_nhs(73)
CLINIC = "pennine_clinic"
OTHER_CLINIC = "calder_clinic"
SENSITIVE_SERVICE = "sensitive_service"
"""The name a sensitive source is shown by (gateway.agency_names.SENSITIVE_SERVICE): portals
read it, so the test holds it as they do."""
BROKER = {"name": "Brokered contact desk", "phone": "01632 960123"}
VISIT = Involvement(
    service="Young people's drop-in",
    organisation="Pennine Youth Clinic",
    practitioner=Contact(name="Nurse Quill", role="nurse", phone="07700 900077"),
)
"""Unmarked, and named in words the sensitive-service vocabulary does not know: only the source
being sensitive brokers it."""
PROVIDES = (
    FieldId.NHS_NUMBER,
    FieldId.NAME,
    FieldId.DATE_OF_BIRTH,
    FieldId.SEX,
    FieldId.INVOLVEMENTS,
    FieldId.SENSITIVE_SERVICE_DETAILS,
)

LOOKUP = """
query($nhs: String!, $purpose: Purpose!) {
  child(nhsNumber: $nhs, purpose: $purpose) {
    outcome auditId denial
    child {
      name { provenance { source } }
      involvements {
        service organisation practitioner { name phone } sensitive broker { name phone }
        provenance { source }
      }
      conflicts { field chosen disagreeing }
    }
    records { source }
    sources { source status recordsMatched recordsUnmatched }
    withheld { field source reason }
  }
}
"""


def _clinic_app(tmp: Path, name: str, records: list[Any]) -> Any:
    """A clinic's connector, built on the SDK as an agency would build its own."""
    backend = FileBackend.from_jsonl(write_records(tmp / f"{name}.jsonl", records), fields=PROVIDES)
    return create_connector_app(backend, source=name)


def _clinic_source(name: str, url: str, **fields: Any) -> SourceConfig:
    return SourceConfig.model_validate(
        {"name": name, "url": url, "provides": [f.value for f in PROVIDES]}
        | {"sensitive": True, "sensitive_broker": BROKER}
        | fields
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Health holds the child (no involvements); the Pennine clinic holds her visit, the Calder
    clinic nothing; social care shields nobody here."""
    tmp = tmp_path_factory.mktemp("sensitive-sources")
    identity = health_record(CHILD, record_id=f"H-{CHILD}", involvements=None)
    visit = health_record(
        CHILD,
        record_id=f"PC-{CHILD}",
        address=None,
        gp_practice=None,
        carers=None,
        involvements=[VISIT],
    )
    apps = {
        "health": create_reference_app("health", write_records(tmp / "health.jsonl", [identity])),
        CLINIC: _clinic_app(tmp, CLINIC, [visit]),
        OTHER_CLINIC: _clinic_app(tmp, OTHER_CLINIC, []),
    }
    with serving(apps) as urls:
        sources = [
            reference_source("health", urls["health"]),
            _clinic_source(CLINIC, urls[CLINIC]),
            _clinic_source(OTHER_CLINIC, urls[OTHER_CLINIC]),
        ]
        with running_gateway(tmp, sources, policy_dir=_policy_granting_details(tmp)) as stack:
            yield stack


def _lookup(stack: Stack, role: str, purpose: str, nhs: str = CHILD) -> dict[str, Any]:
    body = stack.post(
        {"query": LOOKUP, "variables": {"nhs": nhs, "purpose": purpose}}, stack.token(role)
    ).json()
    assert "errors" not in body, body
    return body["data"]["child"]  # type: ignore[no-any-return]


def _shown(answer: dict[str, Any]) -> set[str]:
    """Every agency name the caller is shown."""
    child = answer["child"] or {"involvements": []}
    return (
        {s["source"] for s in answer["sources"]}
        | {r["source"] for r in answer["records"]}
        | {w["source"] for w in answer["withheld"]}
        | {i["provenance"]["source"] for i in child["involvements"]}
    )


@pytest.mark.parametrize(
    ("role", "purpose"),
    [("gp", "DIRECT_CARE"), ("social_worker", "SAFEGUARDING_ENQUIRY")],
)
def test_a_caller_not_shown_sensitive_details_sees_the_clinic_only_by_the_neutral_name(
    gateway, role, purpose
):
    answer = _lookup(gateway, role, purpose)

    assert answer["outcome"] == "FOUND"
    text = json.dumps(answer).casefold()
    assert "pennine" not in text, answer
    assert "calder" not in text
    assert _shown(answer) == {"health", SENSITIVE_SERVICE}
    # Both clinics asked, each still its own entry: the answer's shape does not tell them apart.
    clinics = [s for s in answer["sources"] if s["source"] == SENSITIVE_SERVICE]
    assert len(clinics) == 2
    assert {r["source"] for r in answer["records"]} == {"health", SENSITIVE_SERVICE}
    assert {"field": "sensitive_service_details", "source": SENSITIVE_SERVICE} in [
        {k: w[k] for k in ("field", "source")} for w in answer["withheld"]
    ]


def test_an_unmarked_involvement_a_sensitive_source_sends_is_brokered(gateway):
    answer = _lookup(gateway, "gp", "DIRECT_CARE")

    assert answer["child"]["involvements"] == [
        {
            "service": None,
            "organisation": None,
            "practitioner": None,
            "sensitive": True,
            "broker": BROKER,
            "provenance": {"source": SENSITIVE_SERVICE},
        }
    ]
    assert "nurse quill" not in json.dumps(answer).casefold()


def test_the_audit_keeps_the_clinics_own_names(gateway):
    answer = _lookup(gateway, "gp", "DIRECT_CARE")

    audited = gateway.audited(answer["auditId"])
    assert {s["source"] for s in audited["sources"]} == {"health", CLINIC, OTHER_CLINIC}
    withheld_from = {w["source"] for w in audited["withheld"]}
    assert CLINIC in withheld_from
    assert SENSITIVE_SERVICE not in withheld_from


def test_a_caller_granted_sensitive_details_sees_the_clinic_by_its_name(gateway):
    answer = _lookup(gateway, "health_visitor", "DIRECT_CARE")

    assert answer["outcome"] == "FOUND"
    assert _shown(answer) == {"health", CLINIC, OTHER_CLINIC}
    (visit,) = answer["child"]["involvements"]
    assert visit["organisation"] == "Pennine Youth Clinic"
    assert visit["sensitive"] is True
    assert visit["provenance"] == {"source": CLINIC}
    assert [s["recordsMatched"] for s in answer["sources"] if s["source"] == CLINIC] == [1]


def test_a_lookup_refused_outright_names_no_sensitive_source(gateway):
    answer = _lookup(gateway, "gp", "CHILD_PROTECTION_ENQUIRY")

    assert answer["outcome"] == "DENIED"
    assert sorted(s["source"] for s in answer["sources"]) == [
        "health",
        SENSITIVE_SERVICE,
        SENSITIVE_SERVICE,
    ]


def test_a_shielded_childs_clinic_is_not_named_even_to_a_caller_granted_details(tmp_path):
    """Details are withheld for the shield, from the granted role too: so is the clinic's name."""
    shielded = social_care_record(
        CHILD, record_id=f"LA-{CHILD}", involvements=None, flags=RecordFlags(shielded=True)
    )
    visit = health_record(CHILD, record_id=f"PC-{CHILD}", involvements=[VISIT])
    apps = {
        "health": create_reference_app(
            "health", write_records(tmp_path / "health.jsonl", [health_record(CHILD)])
        ),
        "social_care": create_reference_app(
            "social_care", write_records(tmp_path / "social_care.jsonl", [shielded])
        ),
        CLINIC: _clinic_app(tmp_path, CLINIC, [visit]),
    }
    with serving(apps) as urls:
        sources = [
            reference_source("health", urls["health"]),
            reference_source("social_care", urls["social_care"]),
            _clinic_source(CLINIC, urls[CLINIC]),
        ]
        with running_gateway(
            tmp_path, sources, policy_dir=_policy_granting_details(tmp_path)
        ) as stack:
            answer = _lookup(stack, "health_visitor", "DIRECT_CARE")
            audited = stack.audited(answer["auditId"])

    assert answer["outcome"] == "FOUND"
    assert "pennine" not in json.dumps(answer).casefold(), answer
    assert SENSITIVE_SERVICE in _shown(answer)
    assert CLINIC in {s["source"] for s in audited["sources"]}


# Configuration


def _config(tmp: Path, clinic: str) -> Path:
    config = tmp / "sources.toml"
    config.write_text(
        '[[sources]]\nname = "health"\nurl = "http://127.0.0.1:1"\nprovides = ["name"]\n'
        f'\n[[sources]]\nname = "{CLINIC}"\nurl = "http://127.0.0.1:2"\n'
        f'provides = ["name", "involvements"]\n{clinic}'
    )
    return config


def test_a_sensitive_source_with_a_broker_is_read_from_the_sources_file(tmp_path):
    broker = 'sensitive_broker = { name = "Brokered contact desk", phone = "01632 960123" }\n'
    sources = load_sources_file(_config(tmp_path, f"sensitive = true\n{broker}")).sources

    assert [(s.name, s.sensitive) for s in sources] == [("health", False), (CLINIC, True)]
    assert sources[1].sensitive_broker == Contact(**BROKER)


def test_a_sensitive_source_without_a_broker_is_refused_at_start_up(tmp_path):
    """`childlookup serve` as an operator runs it stops with one line saying what is missing."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHILDLOOKUP_")}
    run = subprocess.run(
        [*CLI, "serve", "--config", str(_config(tmp_path, "sensitive = true\n")), "--port", "0"],
        env=environment | {"CHILDLOOKUP_STATE_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2, run.stdout + run.stderr
    err = run.stderr.strip()
    assert "invalid connector config" in err
    assert "needs a sensitive_broker" in err
    assert len(err.splitlines()) == 1, err
