"""The whole gateway deciding through an OPA server over its REST API (real OPA behind it)."""

import httpx

from gateway.policy import load_bundle
from tests.factories import NHS, POLICY_DIR, health_record, social_care_record
from tests.stack import Behaviour, reference_connectors, reference_stack, running_gateway

REVISION = load_bundle(POLICY_DIR).revision


def test_lookups_decided_by_opa_match_the_in_process_policy(tmp_path, opa_server):
    opa_url = opa_server()
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path, records) as sources:
        with running_gateway(tmp_path / "opa", sources, opa_url=opa_url) as via_opa:
            remote = via_opa.lookup("school_dsl", NHS)["data"]["child"]
        with running_gateway(tmp_path / "local", sources) as in_process:
            local = in_process.lookup("school_dsl", NHS)["data"]["child"]
    assert remote["policyRevision"] == REVISION
    assert remote["outcome"] == local["outcome"] == "FOUND"
    assert remote["child"] == local["child"]
    assert sorted(map(str, remote["withheld"])) == sorted(map(str, local["withheld"]))


def test_an_opa_server_that_fails_mid_service_releases_nothing(tmp_path, opa_server):
    behaviour = Behaviour()
    opa_url = opa_server(behaviour)
    with reference_stack(tmp_path, {"health": [health_record()]}, opa_url=opa_url) as gateway:
        assert gateway.lookup("health_visitor", NHS)["data"]["child"]["outcome"] == "FOUND"
        behaviour.status = 503
        body = gateway.lookup("health_visitor", NHS)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "POLICY_UNAVAILABLE"
    assert "Amelia" not in str(body)


def test_an_instance_whose_opa_stops_answering_is_not_ready_until_it_answers_again(
    tmp_path, opa_server
):
    """Every lookup would be refused POLICY_UNAVAILABLE meanwhile: a load balancer reading
    /readyz sends them to an instance whose OPA answers."""
    behaviour = Behaviour()
    opa_url = opa_server(behaviour)
    records = {"health": [health_record()]}
    # A generous timeout: a busy machine must not pass for an OPA that does not answer.
    with reference_stack(tmp_path, records, opa_url=opa_url, opa_timeout_ms=5000) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz")
        behaviour.status = 503
        down = httpx.get(f"{gateway.url}/readyz")
        behaviour.status = 200
        back = httpx.get(f"{gateway.url}/readyz")

    assert (ready.status_code, ready.json()["checks"]["policy"]) == (200, True)
    assert (down.status_code, down.json()["checks"]["policy"]) == (503, False)
    assert down.json()["status"] == "not ready"
    assert (back.status_code, back.json()["checks"]["policy"]) == (200, True)
    assert back.json()["policy_revision"] == REVISION
