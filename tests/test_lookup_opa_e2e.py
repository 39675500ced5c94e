"""The whole gateway deciding through an OPA server over its REST API (real OPA behind it)."""

from gateway.demo import reference_source
from tests.factories import NHS, health_record, social_care_record
from tests.stack import reference_apps, running_gateway, serving
from tests.test_policy_opa import REVISION, Behaviour, real_opa, serve  # noqa: F401 - fixtures


def test_lookups_decided_by_opa_match_the_in_process_policy(tmp_path, serve):  # noqa: F811
    opa_url = serve()
    apps = reference_apps(
        tmp_path, {"health": [health_record()], "social_care": [social_care_record()]}
    )
    with serving(apps) as urls:
        sources = [reference_source(name, url) for name, url in urls.items()]
        with running_gateway(tmp_path / "opa", sources, opa_url=opa_url) as via_opa:
            remote = via_opa.lookup("school_dsl", NHS)["data"]["child"]
        with running_gateway(tmp_path / "local", sources) as in_process:
            local = in_process.lookup("school_dsl", NHS)["data"]["child"]
    assert remote["policyRevision"] == REVISION
    assert remote["outcome"] == local["outcome"] == "FOUND"
    assert remote["child"] == local["child"]
    assert sorted(map(str, remote["withheld"])) == sorted(map(str, local["withheld"]))


def test_an_opa_server_that_fails_mid_service_releases_nothing(tmp_path, serve):  # noqa: F811
    behaviour = Behaviour()
    opa_url = serve(behaviour)
    apps = reference_apps(tmp_path, {"health": [health_record()]})
    with serving(apps) as urls:
        sources = [reference_source("health", urls["health"])]
        with running_gateway(tmp_path, sources, opa_url=opa_url) as gateway:
            assert gateway.lookup("health_visitor", NHS)["data"]["child"]["outcome"] == "FOUND"
            behaviour.status = 503
            body = gateway.lookup("health_visitor", NHS)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "POLICY_UNAVAILABLE"
    assert "Amelia" not in str(body)
