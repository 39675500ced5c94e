"""Every way an OPA server's answer can be wrong or missing, end to end through a real
gateway deciding over OPA's REST API (real OPA behind it), at each place the gateway asks the
policy (plan, release; the release a hidden search asks again; break-glass; sensitive services).

Each fault must leave the caller with POLICY_UNAVAILABLE and no personal data, no stack trace and
no HTTP 500, and the access audited as failed."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from connectors.protocol import Address, Identifiers, PersonName, RecordFlags
from connectors.serving import BackgroundServer, bind_socket
from tests.factories import (
    BREAK_GLASS_REASON,
    NHS,
    health_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import LOOKUP, RealOpa, reference_stack

SHIELDED = synthetic_nhs(13)
PERSONAL = ("Amelia", "Hart", "Test Street", "LS6", "07700", "Freya", "Lane", "Quiet Road", "Mind")
HIDDEN = dict(
    name=PersonName(given="Freya", family="Lane"),
    date_of_birth=date(2015, 1, 20),
    address=Address(lines=["3 Quiet Road", "Leeds"], postcode="LS8 1PQ"),
)
SEARCH = """
query Search($demographics: DemographicsInput, $purpose: Purpose!) {
  child(demographics: $demographics, purpose: $purpose) {
    outcome complete auditId
    child { name { given family } address { postcode } }
    sources { source status }
  }
}
"""

Fault = Callable[[str, int, dict[str, Any]], Response | None]
"""(kind: plan, release or other; the 1-based count of calls of that kind; OPA's real answer)
-> the response to give instead, or None for the real one."""


@dataclass
class Opa:
    """An OPA REST server over real OPA that misbehaves as `fault` says."""

    opa: RealOpa
    fault: Fault | None = None
    calls: Counter[str] = field(default_factory=Counter)
    revision: str | None = None
    url: str = ""

    def app(self) -> Starlette:
        from opa_bindings import OpaUndefinedError

        async def data(request: Request) -> Response:
            body = await request.json() if request.method == "POST" else {}
            path = request.path_params["path"]
            kind = path.split("/")[1] if path.endswith("/decision") else "other"
            self.calls[kind] += 1
            answer: dict[str, Any] = {}
            with contextlib.suppress(OpaUndefinedError):
                answer["result"] = self.opa.document(path, body.get("input"))
            if request.query_params.get("provenance") == "true":
                answer["provenance"] = {
                    "version": "1.20.2",
                    "bundles": {"childlookup": {"revision": self.revision or self.opa.revision}},
                }
            if self.fault is not None and kind != "other":
                given = self.fault(kind, self.calls[kind], answer)
                if given is not None:
                    return given
            return Response(json.dumps(answer), media_type="application/json")

        return Starlette(routes=[Route("/v1/data/{path:path}", data, methods=["GET", "POST"])])


def _records() -> dict[str, Any]:
    return {
        "health": [health_record(), health_record(SHIELDED, record_id="H-S", **HIDDEN)],
        "social_care": [
            social_care_record(),
            social_care_record(
                SHIELDED,
                record_id="LA-S",
                identifiers=Identifiers(nhs_number=SHIELDED, local_id="LA-S"),
                flags=RecordFlags(shielded=True),
                **HIDDEN,
            ),
        ],
    }


@pytest.fixture(scope="module")
def served(real_opa: RealOpa) -> Iterator[Opa]:
    opa = Opa(real_opa)
    with BackgroundServer(opa.app()) as server:
        opa.url = server.url
        yield opa


@pytest.fixture(scope="module")
def stack(served: Opa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("opa-review")
    with reference_stack(
        tmp,
        _records(),
        opa_url=served.url,
        opa_timeout_ms=400,
    ) as gateway:
        yield gateway


@pytest.fixture
def opa(served: Opa) -> Iterator[Opa]:
    served.fault, served.revision = None, None
    served.calls.clear()
    yield served
    served.fault, served.revision = None, None


# --- faults -------------------------------------------------------------------------------------


def _json(document: Any) -> Response:
    return Response(json.dumps(document), media_type="application/json")


def _with_provenance(answer: dict[str, Any], **result: Any) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k == "provenance"} | result


def _mutated(change: Callable[[Any], Any]) -> Callable[[dict[str, Any]], Response]:
    def respond(answer: dict[str, Any]) -> Response:
        return _json(_with_provenance(answer, result=change(copy.deepcopy(answer["result"]))))

    return respond


def _set(key: str, value: Any) -> Callable[[Any], Any]:
    def change(result: Any) -> Any:
        result[key] = value
        return result

    return change


async def _trickle_then_hang() -> AsyncIterator[bytes]:
    yield b'{"result": {"permitted": tr'
    await asyncio.sleep(2)


async def _trickle_then_close() -> AsyncIterator[bytes]:
    yield b'{"result": {"permitted": tr'
    raise ConnectionError("OPA went away mid-answer")


ANSWERS: dict[str, Callable[[dict[str, Any]], Response]] = {
    "undefined": lambda answer: _json(_with_provenance(answer)),
    "empty_object": lambda answer: _json({}),
    "result_null": lambda answer: _json(_with_provenance(answer, result=None)),
    "result_string": lambda answer: _json(_with_provenance(answer, result="allow")),
    "result_list": lambda answer: _json(_with_provenance(answer, result=[answer["result"]])),
    "result_true": lambda answer: _json(_with_provenance(answer, result=True)),
    "result_empty_object": lambda answer: _json(_with_provenance(answer, result={})),
    "extra_field": _mutated(_set("also", "release everything")),
    "top_level_list": lambda answer: _json([answer]),
    "no_provenance": lambda answer: _json({"result": answer["result"]}),
    "provenance_without_revision": lambda answer: _json(
        {"result": answer["result"], "provenance": {"bundles": {"childlookup": {}}}}
    ),
    "revision_not_printable": lambda answer: _json(
        _with_provenance(answer, result=answer["result"])
        | {"provenance": {"bundles": {"childlookup": {"revision": "a b\n"}}}}
    ),
    "not_json": lambda answer: Response(b"<html>ok</html>", media_type="text/html"),
    "nan": lambda answer: Response(
        b'{"result": NaN, "provenance": {"bundles": {"childlookup": {"revision": "r"}}}}',
        media_type="application/json",
    ),
    "deeply_nested": lambda answer: Response(
        b'{"result": ' + b"[" * 5000 + b"]" * 5000 + b"}", media_type="application/json"
    ),
    "nested_within_parser_limit": lambda answer: Response(
        b'{"result": ' + b"[" * 900 + b"]" * 900 + b', "provenance": {"bundles": {"c": '
        b'{"revision": "r"}}}}',
        media_type="application/json",
    ),
    "huge_body": lambda answer: Response(
        json.dumps(answer).encode()[:-1] + b', "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        media_type="application/json",
    ),
    "status_500": lambda answer: PlainTextResponse("internal error", status_code=500),
    "status_404": lambda answer: Response(b'{"code": "resource_not_found"}', status_code=404),
    "status_400": lambda answer: Response(
        json.dumps(answer).encode(), status_code=400, media_type="application/json"
    ),
    "status_204": lambda answer: Response(status_code=204),
    "hang_mid_body": lambda answer: StreamingResponse(
        _trickle_then_hang(), headers={"content-length": "4000"}, media_type="application/json"
    ),
    "close_mid_body": lambda answer: StreamingResponse(
        _trickle_then_close(), headers={"content-length": "4000"}, media_type="application/json"
    ),
}

PLAN_ANSWERS: dict[str, Callable[[dict[str, Any]], Response]] = {
    "permitted_as_string": _mutated(_set("permitted", "true")),
    "fields_as_object": _mutated(lambda r: r | {"fields": {f: True for f in r["fields"]}}),
    "unknown_field": _mutated(lambda r: r | {"fields": [*r["fields"], "favourite_colour"]}),
    "permitted_with_denial": _mutated(_set("denial", "UNKNOWN_ROLE")),
    "refused_without_denial": _mutated(
        lambda r: r | {"permitted": False, "denial": None, "fields": [], "sources": []}
    ),
    "a_release_answer": _mutated(lambda r: {"released": [], "withheld": [], "notify": []}),
    "missing_obligation_fields": _mutated(
        lambda r: {k: v for k, v in r.items() if k != "obligation_fields"}
    ),
}

RELEASE_ANSWERS: dict[str, Callable[[dict[str, Any]], Response]] = {
    "released_as_object": _mutated(_set("released", {"0": ["name"]})),
    "unknown_field": _mutated(
        lambda r: r | {"released": [*r["released"], {"record": "0", "field": "favourite_colour"}]}
    ),
    "unknown_reason": _mutated(
        lambda r: (
            r
            | {
                "withheld": [
                    *r["withheld"],
                    {"record": "0", "field": "address", "reason": "BECAUSE"},
                ]
            }
        )
    ),
    "reason_unknown_read_back_only": _mutated(
        lambda r: (
            r
            | {
                "withheld": [
                    *r["withheld"],
                    {"record": "0", "field": "address", "reason": "UNKNOWN"},
                ]
            }
        )
    ),
    "released_and_withheld": _mutated(
        lambda r: (
            r | {"withheld": [*r["withheld"], *[dict(x, reason="SHIELDED") for x in r["released"]]]}
        )
    ),
    "a_plan_answer": _mutated(
        lambda r: {
            "permitted": True,
            "denial": None,
            "fields": ["address"],
            "obligation_fields": [],
            "sources": ["health"],
        }
    ),
    "no_notify": _mutated(lambda r: {k: v for k, v in r.items() if k != "notify"}),
    "notify_other_record": _mutated(
        lambda r: r | {"notify": [{"record": "99", "reason": "CHILD_PROTECTION_PLAN"}]}
    ),
    "record_as_number": _mutated(
        lambda r: r | {"released": [dict(x, record=int(x["record"])) for x in r["released"]]}
    ),
}


def _lookup(stack: Any, role: str = "health_visitor", **kwargs: Any) -> tuple[int, str, Any]:
    variables = {"nhs": kwargs.pop("nhs", NHS), "purpose": "SAFEGUARDING_ENQUIRY"} | kwargs
    response = stack.post({"query": LOOKUP, "variables": variables}, stack.token(role))
    return response.status_code, response.text, response.json() if response.text else None


def _audited_failures(stack: Any) -> list[dict[str, Any]]:
    return [r for r in stack.components.audit.records() if r.get("error_code")]


def _assert_fail_closed(stack: Any, status: int, text: str, body: Any, before: int) -> None:
    assert status == 200, text
    assert "Traceback" not in text, text
    assert "Error(" not in text, text
    assert "OPA at" not in text, text  # no internals: the OPA URL, its error
    leaked = [marker for marker in PERSONAL if marker in text]
    assert not leaked, (leaked, text)
    assert body["data"] is None or body["data"]["child"] is None, text
    codes = [e["extensions"]["code"] for e in body["errors"]]
    assert codes == ["POLICY_UNAVAILABLE"], text
    failures = _audited_failures(stack)
    assert len(failures) == before + 1, failures[before:]
    assert failures[-1]["error_code"] == "POLICY_UNAVAILABLE", failures[-1]


def _check(stack: Any, opa: Opa, fault: Fault, role: str = "health_visitor", **kwargs: Any) -> None:
    """The lookup fails closed under `fault`, and the next one, OPA healthy again, is answered:
    a hung or cut connection to OPA must not poison the gateway's client."""
    opa.fault = fault
    opa.calls.clear()
    before = len(_audited_failures(stack))
    status, text, body = _lookup(stack, role, **kwargs)
    _assert_fail_closed(stack, status, text, body, before)
    assert opa.calls["plan"] == 1
    opa.fault = None
    status, text, body = _lookup(stack, role, **kwargs)
    assert status == 200, text
    assert body["data"]["child"]["outcome"] == "FOUND", text


def _on(kind: str, respond: Callable[[dict[str, Any]], Response], nth: int | None = None) -> Fault:
    def fault(asked: str, count: int, answer: dict[str, Any]) -> Response | None:
        if asked == kind and (nth is None or count == nth):
            return respond(answer)
        return None

    return fault


@pytest.mark.parametrize("kind", ["plan", "release"])
def test_an_opa_answering_the_purposes_but_not_a_decision_is_not_ready(stack, opa, kind):
    """An OPA serving another bundle, or this one without a decision, answers the purposes, yet
    refuses every lookup: /readyz asks each decision too, and says not ready until it answers."""
    assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
    opa.fault = _on(kind, lambda answer: _json({}))  # undefined, as for a rule not there

    unready = httpx.get(f"{stack.url}/readyz", timeout=5)

    assert unready.status_code == 503
    assert unready.json()["checks"]["policy"] is False
    opa.fault = None
    assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200


def test_a_healthy_opa_answers(stack, opa):
    status, text, body = _lookup(stack)
    assert status == 200
    assert body["data"]["child"]["outcome"] == "FOUND"
    assert "Amelia" in text


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_a_bad_plan_answer_releases_nothing(stack, opa, name):
    _check(stack, opa, _on("plan", ANSWERS[name]))


@pytest.mark.parametrize("name", sorted(PLAN_ANSWERS))
def test_a_malformed_plan_decision_releases_nothing(stack, opa, name):
    _check(stack, opa, _on("plan", PLAN_ANSWERS[name]))


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_a_bad_release_answer_releases_nothing(stack, opa, name):
    _check(stack, opa, _on("release", ANSWERS[name]))


@pytest.mark.parametrize("name", sorted(RELEASE_ANSWERS))
def test_a_malformed_release_decision_releases_nothing(stack, opa, name):
    _check(stack, opa, _on("release", RELEASE_ANSWERS[name]))


def _revised(revision: str) -> Callable[[dict[str, Any]], Response]:
    def respond(answer: dict[str, Any]) -> Response:
        return _json(answer | {"provenance": {"bundles": {"childlookup": {"revision": revision}}}})

    return respond


def test_a_new_bundle_revision_between_plan_and_release_releases_nothing(stack, opa):
    """OPA restarted with another bundle between the two phases: one revision must decide."""
    _check(stack, opa, _on("release", _revised("2099-01-01.9")))


def test_a_new_bundle_revision_before_the_plan_is_just_the_lookups_revision(stack, opa):
    opa.revision = "2099-01-01.9"
    status, _, body = _lookup(stack)
    assert status == 200
    assert body["data"]["child"]["policyRevision"] == "2099-01-01.9"


def _search(stack: Any, given: str, family: str, role: str = "health_visitor") -> Any:
    demographics = {
        "givenName": given,
        "familyName": family,
        "dateOfBirth": "2015-01-20",
        "postcode": "LS8 1PQ",
    }
    variables = {"demographics": demographics, "purpose": "SAFEGUARDING_ENQUIRY"}
    response = stack.post({"query": SEARCH, "variables": variables}, stack.token(role))
    return response


@pytest.mark.parametrize("name", ["status_500", "result_null", "hang_mid_body", "revision"])
def test_a_hidden_search_whose_second_release_fails_releases_nothing(stack, opa, name):
    """Shield-safe search asks the release decision again for the child it hides."""
    respond = _revised("2099-01-01.9") if name == "revision" else ANSWERS[name]
    opa.fault = _on("release", respond, nth=2)
    before = len(_audited_failures(stack))
    response = _search(stack, "Freya", "Lane")
    assert opa.calls["release"] == 2, "the hidden search asks the release decision twice"
    _assert_fail_closed(stack, response.status_code, response.text, response.json(), before)


def test_a_failed_override_is_audited_and_flagged(stack, opa):
    _check(
        stack,
        opa,
        _on("release", ANSWERS["status_500"]),
        role="social_worker",
        nhs=SHIELDED,
        purpose="EMERGENCY_OVERRIDE",
        justification=BREAK_GLASS_REASON,
    )
    assert _audited_failures(stack)[-1]["flagged_for_investigation"] is True


@pytest.mark.parametrize("kind", ["plan", "release"])
def test_a_failing_override_releases_nothing(stack, opa, kind):
    for name in ("undefined", "result_null", "status_500", "close_mid_body"):
        _check(
            stack,
            opa,
            _on(kind, ANSWERS[name]),
            role="social_worker",
            nhs=SHIELDED,
            purpose="EMERGENCY_OVERRIDE",
            justification=BREAK_GLASS_REASON,
        )


@pytest.mark.parametrize(
    ("role", "purpose"),
    [
        ("health_visitor", "SAFEGUARDING_ENQUIRY"),
        ("social_worker", "SAFEGUARDING_ENQUIRY"),
        ("gp", "DIRECT_CARE"),
        ("ed_clinician", "DIRECT_CARE"),
        ("la_shielding_admin", "SHIELDING_ADMINISTRATION"),
    ],
)
def test_a_release_of_everything_never_shows_a_sensitive_provider(stack, opa, role, purpose):
    """No grant names sensitive_service_details, so however much a release decision releases,
    the CAMHS provider is brokered, never shown."""

    def everything(result: dict[str, Any]) -> dict[str, Any]:
        asked = {(w["record"], w["field"]) for w in result["withheld"]}
        asked |= {(r["record"], r["field"]) for r in result["released"]}
        released = [{"record": r, "field": f} for r, f in sorted(asked)]
        return result | {"released": released, "withheld": []}

    opa.fault = _on("release", _mutated(everything))
    status, text, body = _lookup(stack, role, purpose=purpose)
    assert status == 200, text
    assert body["data"]["child"]["outcome"] == "FOUND", text
    assert "Dr Mind" not in text, text
    assert "Leeds CAMHS" not in text, text
    assert "900002" not in text, text
    if role in ("ed_clinician", "la_shielding_admin"):
        assert body["data"]["child"]["child"]["address"] is None, text


def test_a_release_that_releases_what_the_plan_did_not_grant_shows_only_the_plan(stack, opa):
    """A release decision naming every field of every record, for a role whose plan grants no
    address (school_dsl) nor any sensitive service details: the plan still bounds it."""

    def everything(result: dict[str, Any]) -> dict[str, Any]:
        asked = {(w["record"], w["field"]) for w in result["withheld"]}
        asked |= {(r["record"], r["field"]) for r in result["released"]}
        return result | {
            "released": [{"record": r, "field": f} for r, f in sorted(asked)],
            "withheld": [],
        }

    opa.fault = _on("release", _mutated(everything))
    status, text, body = _lookup(stack, "school_dsl")
    assert status == 200, text
    child = body["data"]["child"]["child"]
    assert child["address"] is None, child
    assert "Mind" not in text, text
    assert "Leeds CAMHS" not in text, text


def test_an_opa_restarted_with_another_bundle_is_followed_and_down_meanwhile_fails_closed(
    real_opa, tmp_path
):
    """A real restart: the server goes away (connection refused), then a new one on the same
    port serves another revision; the pooled connection to the old one must not matter."""
    first = Opa(real_opa)
    server = BackgroundServer(first.app()).start()
    port = int(server.url.rsplit(":", 1)[1])
    with reference_stack(tmp_path, _records(), opa_url=server.url, opa_timeout_ms=1000) as gw:
        assert _lookup(gw)[2]["data"]["child"]["outcome"] == "FOUND"
        server.stop()
        before = len(_audited_failures(gw))
        _assert_fail_closed(gw, *_lookup(gw), before)
        second = Opa(real_opa, revision="2099-01-01.9")
        restarted = BackgroundServer(second.app(), sock=bind_socket("127.0.0.1", port)).start()
        try:
            status, text, body = _lookup(gw)
        finally:
            restarted.stop()
    assert status == 200, text
    assert body["data"]["child"]["outcome"] == "FOUND", text
    assert body["data"]["child"]["policyRevision"] == "2099-01-01.9"


@pytest.mark.parametrize("kind", ["plan", "release"])
def test_an_opa_slower_than_the_lookup_deadline(real_opa, tmp_path, kind):
    """OPA's own timeout (3 s) longer than the lookup deadline (0.5 s), OPA taking 1 s: a slow
    plan leaves no time to ask the agencies (UNAVAILABLE, every source TIMED_OUT, nothing
    shown); a slow release is waited for, the deadline bounding the agencies only."""
    opa = Opa(real_opa)

    def fault(asked: str, count: int, answer: dict[str, Any]) -> Response | None:
        if asked == kind:
            time.sleep(1.0)  # holds this test server's loop: one lookup at a time here
        return None

    opa.fault = fault
    with (
        BackgroundServer(opa.app()) as server,
        reference_stack(
            tmp_path, _records(), opa_url=server.url, opa_timeout_ms=3000, lookup_deadline_ms=500
        ) as gw,
    ):
        status, text, body = _lookup(gw)
    assert status == 200, text
    assert "Traceback" not in text
    lookup = body["data"]["child"]
    if kind == "plan":
        assert lookup["outcome"] == "UNAVAILABLE", text
        assert {s["status"] for s in lookup["sources"]} == {"TIMED_OUT"}
        assert not [marker for marker in PERSONAL if marker in text]
    else:
        assert lookup["outcome"] == "FOUND", text


def test_an_opa_on_an_ipv6_literal_address_decides(real_opa, tmp_path):
    """CHILDLOOKUP_OPA_URL=http://[::1]:PORT is accepted as `http(s)://host:port`; before the fix
    every request went to `http://::1:PORT/v1/...`, which is no URL, so the gateway could never
    start (and, started, refused every lookup)."""
    opa = Opa(real_opa)
    with BackgroundServer(opa.app(), host="::1") as server:
        assert server.url.startswith("http://[::1]:")
        with reference_stack(tmp_path, _records(), opa_url=server.url) as gw:
            before = dict(opa.calls)  # start-up's readiness questions asked each decision once
            status, text, body = _lookup(gw)
    assert status == 200, text
    assert body["data"]["child"]["outcome"] == "FOUND", text
    assert opa.calls["plan"] - before["plan"] == opa.calls["release"] - before["release"] == 1


@pytest.mark.parametrize("sources", [["health"], ["health", "police", "nowhere"], []])
def test_a_plan_that_skips_the_shield_authority_never_shows_a_shielded_childs_location(
    stack, opa, sources
):
    """A plan naming other sources than the gateway would ask (the shield authority left out,
    unknown ones added): the shield status is then unknown, and location withheld."""
    opa.fault = _on("plan", _mutated(_set("sources", sources)))
    status, text, body = _lookup(stack, nhs=SHIELDED)
    assert status == 200, text
    assert "Quiet Road" not in text, text
    assert "LS8" not in text, text
    lookup = body["data"]["child"]
    if lookup["child"] is not None:
        assert lookup["child"]["address"] is None
