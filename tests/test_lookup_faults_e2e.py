"""End-to-end lookups when agencies misbehave: slow, dead, malformed, or answering for another
child. The answer must still come back, say what each source did, and never merge wrongly."""

import shutil
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

import gateway.pipeline
from connectors.protocol import MAX_RECORDS, LookupResponse
from connectors.serving import free_port
from gateway.config import DEFAULT_POLICY_DIR
from gateway.demo import reference_source
from tests.factories import NHS, OTHER_NHS, health_record, school_record, social_care_record
from tests.stack import eventually, reference_apps, reference_stack, running_gateway, serving


def _statuses(lookup):
    return {s["source"]: (s["status"], s["errorCode"]) for s in lookup["sources"]}


def _raw_connector(body_for):
    """A connector that answers with whatever bytes `body_for(request_json)` returns."""

    async def lookup(request):
        return Response(body_for(await request.json()), media_type="application/json")

    return Starlette(routes=[Route("/v1/lookup", lookup, methods=["POST"])])


def _dead_url():
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """health answers at once, social_care takes 3 s (timeout 300 ms), education is down."""
    tmp = tmp_path_factory.mktemp("faults")
    apps = reference_apps(
        tmp,
        {"health": [health_record()], "social_care": [social_care_record()]},
        latency_ms={"social_care": 3000},
    )
    with serving(apps) as urls:
        sources = [
            reference_source("health", urls["health"]),
            reference_source("education", _dead_url()),
            reference_source("social_care", urls["social_care"], timeout_ms=300),
        ]
        with running_gateway(tmp, sources) as gateway:
            yield gateway


def test_slow_and_dead_sources_are_reported_and_the_rest_is_answered(faulty):
    started = time.monotonic()
    body = faulty.lookup("health_visitor", NHS)
    elapsed = time.monotonic() - started
    lookup = body["data"]["child"]
    assert lookup["outcome"] == "FOUND"
    assert lookup["complete"] is False
    statuses = _statuses(lookup)
    assert statuses["health"] == ("ANSWERED", None)
    assert statuses["education"] == ("FAILED", "CONNECTION_FAILED")
    assert statuses["social_care"] == ("TIMED_OUT", "TIMEOUT")
    assert elapsed < 2.5  # the 3 s source did not hold the answer past its 300 ms timeout
    assert lookup["child"]["name"]["given"] == "Amelia"


def test_not_found_while_a_source_is_silent_is_not_the_complete_not_found(faulty):
    lookup = faulty.lookup("health_visitor", OTHER_NHS)["data"]["child"]
    assert _statuses(lookup)["health"] == ("NO_RECORD", None)
    assert lookup["outcome"] == "NOT_FOUND_INCOMPLETE"
    assert lookup["complete"] is False


def test_a_lookup_no_source_answered_is_unavailable_not_not_found(tmp_path):
    sources = [reference_source(name, _dead_url()) for name in ("health", "education")]
    with running_gateway(tmp_path, sources) as gateway:
        lookup = gateway.lookup("health_visitor", NHS)["data"]["child"]
        audit = gateway.components.audit.records()
    assert lookup["outcome"] == "UNAVAILABLE"
    assert lookup["complete"] is False
    assert audit[-1]["outcome"] == "UNAVAILABLE"


def test_a_denied_lookup_asked_nobody_so_is_not_complete(faulty):
    lookup = faulty.lookup("school_dsl", NHS, purpose="DIRECT_CARE")["data"]["child"]
    assert lookup["outcome"] == "DENIED"
    assert lookup["complete"] is False


def test_a_silent_shield_authority_withholds_location_as_unknown(faulty):
    lookup = faulty.lookup("health_visitor", NHS)["data"]["child"]
    assert lookup["child"]["address"] is None
    reasons = {(w["source"], w["field"]): w["reason"] for w in lookup["withheld"]}
    assert reasons[("health", "address")] == "SHIELD_STATUS_UNKNOWN"
    assert "LS6 2AB" not in str(lookup)


def test_malformed_output_and_another_childs_record_are_failed_sources(tmp_path):
    def wrong_child(request):
        record = school_record(OTHER_NHS)
        return LookupResponse(
            request_id=request["request_id"], source="education", records=[record]
        ).model_dump_json()

    apps = reference_apps(tmp_path, {"health": [health_record()], "social_care": []})
    apps["education"] = _raw_connector(wrong_child)
    apps["garbled"] = _raw_connector(lambda request: b'{"records": [{"name": ')
    # The child's record, MAX_RECORDS + 1 times: matching scores every pair of a source's records,
    # and thousands of them held the gateway's CPU for tens of seconds.
    apps["flooding"] = _raw_connector(
        lambda request: LookupResponse(
            request_id=request["request_id"],
            source="flooding",
            records=[school_record(record_id=f"S-{i}") for i in range(MAX_RECORDS + 1)],
        ).model_dump_json()
    )
    with serving(apps) as urls:
        sources = [reference_source(n, urls[n]) for n in ("health", "education", "social_care")]
        misbehaving = [
            reference_source("education", urls[name]).model_copy(update={"name": name})
            for name in ("garbled", "flooding")
        ]
        with running_gateway(tmp_path, [*sources, *misbehaving]) as gateway:
            lookup = gateway.lookup("social_worker", NHS)["data"]["child"]
    statuses = _statuses(lookup)
    assert statuses["education"] == ("FAILED", "RECORD_MISMATCH")
    assert statuses["garbled"] == ("FAILED", "MALFORMED_RESPONSE")
    assert statuses["flooding"] == ("FAILED", "MALFORMED_RESPONSE")
    assert lookup["child"]["school"] is None
    assert OTHER_NHS not in str(lookup)
    assert {r["source"] for r in lookup["records"]} == {"health"}


def test_a_policy_that_cannot_decide_releases_nothing(tmp_path):
    policies = shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    release = policies / "release.rego"
    release.write_text(
        release.read_text().replace("decision := {", 'decision := {\n\t"broken": input.nope,', 1)
    )
    with reference_stack(tmp_path, {"health": [health_record()]}, policy_dir=policies) as gateway:
        body = gateway.lookup("social_worker", NHS)
        records = gateway.components.audit.records()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "POLICY_UNAVAILABLE"
    assert "Amelia" not in str(body)
    assert records[-1]["outcome"] == "ERROR"
    assert records[-1]["error_code"] == "POLICY_UNAVAILABLE"


def test_a_fault_no_stage_expected_after_the_agencies_were_asked_is_still_audited(
    tmp_path, monkeypatch
):
    """Fault injection: matching raises an error of a kind the pipeline does not expect (none is
    known; one of an answer-signature check's was found by fuzzing and is fixed). The agencies
    were asked, so the lookup has its audit record, as failed, and releases nothing."""

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(gateway.pipeline, "match_records", broken)
    with reference_stack(tmp_path, {"health": [health_record()]}) as gateway_:
        body = gateway_.lookup("social_worker", NHS)
        records = gateway_.components.audit.records()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_ERROR"
    assert "Amelia" not in str(body)
    assert [(r["outcome"], r["error_code"]) for r in records] == [("ERROR", "INTERNAL_ERROR")]


def test_a_lookup_whose_request_fails_on_another_alias_still_runs_to_its_audit_record(tmp_path):
    """Two aliases, one user allowed one lookup a minute: the second is refused at once, which
    fails the whole request while the first is still waiting for a slow agency. The first has
    asked an agency on the user's behalf, so it must still be audited."""
    query = " ".join(
        f'{alias}: child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }}'
        for alias in ("first", "second")
    )
    records = {"health": [health_record()]}
    with reference_stack(
        tmp_path, records, latency_ms={"health": 300}, lookups_per_user_per_minute=1
    ) as gateway:
        body = gateway.post({"query": f"{{ {query} }}"}, gateway.token("gp")).json()
        audit = eventually(lambda: len(r := gateway.components.audit.records()) >= 2 and r)

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert sorted(r["outcome"] for r in audit) == ["FOUND", "REFUSED"]
