"""A sensitive involvement the gateway brokers without a broker of its own gets its source's
configured `sensitive_broker`: a practitioner always has a route to contact.

A local authority listing "CAMHS / Leeds CAMHS / Dr Mind" unmarked is marked sensitive (by the
SDK's minimise, and again by the gateway's decide stage), its provider removed - but the agency
named no broker, so the practitioner saw `broker: null` and nobody to ask. The source's entry in
the connector config now names the agency's own contact for brokering access, and decide fills it
in; with none configured the broker stays null (the portal then says to contact the agency named
by provenance).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.protocol import Contact, Involvement
from gateway.config import SourceConfig, SourcesFile, sensitive_brokers
from gateway.types import Purpose
from tests.factories import (
    FULL_SOURCES,
    NHS,
    answered,
    decided,
    health_record,
    matched,
    social_care_with_unmarked_camhs,
    synthetic_nhs,
)
from tests.stack import reference_connectors, running_gateway

CHILD = synthetic_nhs(92)
LA_BROKER = {"name": "Leeds children's front door", "phone": "0113 222 4403"}
HEALTH_BROKER = {"name": "Health safeguarding hub", "phone": "01632 960999"}
"""The broker the health record names on its own (marked) CAMHS involvement."""


def _records() -> dict[str, list]:
    return {
        "health": [health_record(CHILD, record_id=f"H-{CHILD}")],
        "social_care": [social_care_with_unmarked_camhs(CHILD, record_id=f"LA-{CHILD}")],
    }


# The decide stage


@pytest.mark.anyio
async def test_decide_gives_a_brokerless_sensitive_involvement_its_sources_broker():
    sources = [
        s.model_copy(update={"sensitive_broker": Contact(**LA_BROKER)})
        if s.name == "social_care"
        else s
        for s in FULL_SOURCES
    ]
    records = (
        matched(health_record(), "health"),
        matched(social_care_with_unmarked_camhs(NHS), "social_care"),
    )

    release = await decided(
        "gp",
        Purpose.DIRECT_CARE,
        answered(*records, sources=sources),
        sources=sources,
        brokers=sensitive_brokers(sources),
    )

    by_source = {r.matched.source: r.record.involvements for r in release.records}
    assert by_source["social_care"][1] == Involvement(
        service=None, sensitive=True, broker=Contact(**LA_BROKER)
    )
    assert by_source["social_care"][0].broker is None
    assert by_source["health"][1].broker == Contact(**HEALTH_BROKER)


def _brokered(sources, tmp, broker: dict[str, str] | None) -> list[SourceConfig]:
    """`sources`, the social care one with `broker` as its `sensitive_broker`, validated as a
    sources file would be."""
    return [
        SourceConfig.model_validate(
            s.model_dump(mode="json")
            | ({"sensitive_broker": broker} if s.name == "social_care" else {})
        )
        for s in sources
    ]


def _social_care_involvements(tmp, broker: dict[str, str] | None) -> list[dict]:
    with (
        reference_connectors(tmp, _records()) as sources,
        running_gateway(tmp, _brokered(sources, tmp, broker)) as gateway,
    ):
        answer = gateway.lookup("gp", CHILD, "DIRECT_CARE")["data"]["child"]
    assert answer["outcome"] == "FOUND"
    involvements = answer["child"]["involvements"]
    assert "Dr Mind" not in str(involvements)
    health = [i for i in involvements if i["provenance"]["source"] == "health"]
    assert [i["broker"] for i in health if i["sensitive"]] == [HEALTH_BROKER]  # its own, kept
    return [i for i in involvements if i["provenance"]["source"] == "social_care"]


def test_an_unmarked_camhs_involvement_is_brokered_by_its_sources_configured_broker(tmp_path):
    social_care = _social_care_involvements(tmp_path, LA_BROKER)

    assert [i["sensitive"] for i in social_care] == [False, True]
    assert social_care[0]["broker"] is None  # not sensitive: reached directly, no broker added
    assert social_care[1]["service"] is None
    assert social_care[1]["practitioner"] is None
    assert social_care[1]["broker"] == LA_BROKER


def test_without_a_configured_broker_the_broker_stays_null(tmp_path):
    social_care = _social_care_involvements(tmp_path, None)

    assert [i["sensitive"] for i in social_care] == [False, True]
    assert social_care[1]["broker"] is None


# Configuration


def _source(**fields) -> dict:
    return {
        "name": "social_care",
        "url": "http://127.0.0.1:1",
        "provides": ["involvements"],
    } | fields


def test_a_sensitive_broker_is_read_from_the_sources_file():
    parsed = SourcesFile.model_validate(
        {"sources": [_source(sensitive_broker=LA_BROKER | {"role": "duty desk"})]}
    )

    assert parsed.sources[0].sensitive_broker == Contact(
        name="Leeds children's front door", role="duty desk", phone="0113 222 4403"
    )


def test_a_sensitive_broker_is_optional():
    assert SourceConfig.model_validate(_source()).sensitive_broker is None


@pytest.mark.parametrize(
    "broker",
    [
        {"name": "Leeds children's front door"},  # no phone: no route to contact
        {"name": "Leeds children's front door", "phone": "  "},
        {"name": "", "phone": "0113 222 4403"},
        {"phone": "0113 222 4403"},
        LA_BROKER | {"fax": "0113 000 0000"},  # unknown keys are errors, as elsewhere
    ],
)
def test_a_sensitive_broker_without_a_name_and_phone_is_refused(broker):
    with pytest.raises(ValidationError, match="sensitive_broker"):
        SourceConfig.model_validate(_source(sensitive_broker=broker))
