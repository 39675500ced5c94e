"""Anti-harvesting attacks: too many lookups, too many distinct children. Each is refused,
audited and alerted, and the refusal says nothing about the child."""

import pytest

from tests.factories import NHS, health_record, synthetic_nhs
from tests.stack import reference_connectors, running_gateway


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    with reference_connectors(tmp, {"health": [health_record()]}) as sources:
        yield sources


SHORT = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'


def _code(body):
    assert body["data"] is None
    return body["errors"][0]["extensions"]["code"]


def test_a_user_over_the_per_minute_limit_is_refused_and_audited(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=3) as gateway:
        for _ in range(3):
            assert gateway.lookup("gp", NHS, "DIRECT_CARE")["data"]["child"]["outcome"] == "FOUND"
        refused = gateway.lookup("gp", NHS, "DIRECT_CARE")
        other_user = gateway.post(
            {"query": SHORT},
            gateway.token("gp", name="Someone Else"),
        ).json()
        audit = gateway.components.audit.records()
    assert _code(refused) == "RATE_LIMITED"
    assert "Amelia" not in str(refused)
    assert other_user["data"]["child"]["outcome"] == "FOUND"
    assert [r["outcome"] for r in audit][-2] == "REFUSED"
    assert audit[-2]["error_code"] == "RATE_LIMITED"


def test_an_organisation_over_its_limit_is_refused_whoever_asks(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_organisation_per_minute=2) as gateway:
        for name in ("A", "B"):
            gateway.post(
                {"query": SHORT},
                gateway.token("gp", org="ORGX", name=name),
            )
        third = gateway.post(
            {"query": SHORT},
            gateway.token("gp", org="ORGX", name="C"),
        ).json()
    assert _code(third) == "RATE_LIMITED"


def test_the_distinct_children_cap_refuses_new_children_but_not_ones_already_seen(
    tmp_path, sources
):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gateway:
        first = gateway.lookup("gp", NHS, "DIRECT_CARE")
        second = gateway.lookup("gp", synthetic_nhs(11), "DIRECT_CARE")
        third = gateway.lookup("gp", synthetic_nhs(12), "DIRECT_CARE")
        again = gateway.lookup("gp", NHS, "DIRECT_CARE")
        audit = gateway.components.audit.records()
    assert first["data"]["child"]["outcome"] == "FOUND"
    assert second["data"]["child"]["outcome"] == "NOT_FOUND"
    assert _code(third) == "LOOKUP_CAP_REACHED"
    assert again["data"]["child"]["outcome"] == "FOUND"
    refused = [r for r in audit if r["outcome"] == "REFUSED"]
    assert [r["error_code"] for r in refused] == ["DISTINCT_CHILDREN_CAP"]


def test_the_cap_survives_a_gateway_restart(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway:
        gateway.lookup("gp", NHS, "DIRECT_CARE")
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway:
        assert _code(gateway.lookup("gp", synthetic_nhs(13), "DIRECT_CARE")) == "LOOKUP_CAP_REACHED"
