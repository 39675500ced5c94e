"""The OPA-server engine over real HTTP, against a server speaking OPA's REST Data API.

The server is a small Starlette app backed by real OPA (opa-golib-python-bindings) holding the
bundle tarball `childlookup policy bundle` writes, served on 127.0.0.1. It answers as OPA does:
`{"result": ...}` for a defined document, `{}` for an undefined one, and `provenance` with the
bundle's revision when asked. Variants of it fail in each way an OPA server can fail: the engine
must turn every one into PolicyError.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.serving import BackgroundServer, free_port
from gateway.config import Settings
from gateway.policy import (
    MemoisedPolicyEngine,
    OpaServerPolicyEngine,
    PolicyError,
    RegoPolicyEngine,
    RemotePolicyEngine,
    load_bundle,
    policy_engine_from_settings,
)
from tests.test_policy_bundle import POLICY_DIR
from tests.test_policy_engine import plan_input, release_input

REVISION = load_bundle(POLICY_DIR).revision


@dataclass
class Behaviour:
    """How the test server misbehaves; the default is a healthy OPA."""

    delay_s: float = 0.0
    status: int = 200
    undefined: bool = False
    provenance: bool = True
    result: Any = None
    """An answer to give instead of OPA's."""


def opa_rest_app(opa: Any, behaviour: Behaviour) -> Starlette:
    """OPA's Data API: POST (with input) and GET (without) of /v1/data/<path>."""

    async def data(request: Request) -> Response:
        body = await request.json() if request.method == "POST" else {}
        await asyncio.sleep(behaviour.delay_s)
        if behaviour.status != 200:
            return PlainTextResponse("internal error", status_code=behaviour.status)
        answer: dict[str, Any] = {}
        if behaviour.result is not None:
            answer["result"] = behaviour.result
        elif not behaviour.undefined:
            try:
                answer["result"] = opa.document(request.path_params["path"], body.get("input"))
            except opa_undefined():
                pass
        if behaviour.provenance and request.query_params.get("provenance") == "true":
            answer["provenance"] = {
                "version": "1.20.2",
                "bundles": {"childlookup": {"revision": opa.revision}},
            }
        return JSONResponse(answer)

    return Starlette(routes=[Route("/v1/data/{path:path}", data, methods=["GET", "POST"])])


def opa_undefined() -> type[Exception]:
    from opa_bindings import OpaUndefinedError

    return OpaUndefinedError


@pytest.fixture(scope="module")
def real_opa(tmp_path_factory):
    pytest.importorskip(
        "opa_bindings",
        reason="real OPA (opa-golib-python-bindings) is not installed; `./dev test` installs it",
    )
    from tests.test_policy_parity import RealOpa, build_archive

    return RealOpa(build_archive(POLICY_DIR, tmp_path_factory.mktemp("bundle") / "b.tar.gz"))


@pytest.fixture
def serve(real_opa) -> Iterator[Any]:
    """Start an OPA test server with the given behaviour; all are stopped after the test."""
    servers: list[BackgroundServer] = []

    def start(behaviour: Behaviour | None = None) -> str:
        server = BackgroundServer(opa_rest_app(real_opa, behaviour or Behaviour())).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def rego() -> RegoPolicyEngine:
    return RegoPolicyEngine.from_directory(POLICY_DIR)


async def decide_both(url: str, timeout_s: float = 2.0) -> None:
    engine = OpaServerPolicyEngine(url, timeout_s)
    try:
        await engine.plan(plan_input("gp", "DIRECT_CARE"))
    finally:
        await engine.aclose()


# --- a healthy server ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_decisions_over_http_match_the_in_process_engine(serve, rego):
    engine = OpaServerPolicyEngine(serve(), timeout_s=2.0)
    requests = [
        plan_input("health_visitor", "DIRECT_CARE"),
        plan_input("social_worker", "CHILD_PROTECTION_ENQUIRY"),
        plan_input("social_worker", "CHILD_PROTECTION_ENQUIRY", "strategy discussion today"),
        plan_input("nobody", "SAFEGUARDING_ENQUIRY"),
    ]
    releases = [release_input("school_dsl", "SAFEGUARDING_ENQUIRY"), release_input("gp", "X")]
    try:
        for request in requests:
            assert await engine.plan(request) == await rego.plan(request)
        for release in releases:
            assert await engine.release(release) == await rego.release(release)
    finally:
        await engine.aclose()


@pytest.mark.anyio
async def test_revision_is_the_served_bundles_from_connect_and_from_every_answer(serve):
    engine = OpaServerPolicyEngine(serve(), timeout_s=2.0)
    try:
        assert engine.revision == ""
        assert await engine.connect() == REVISION
        engine.revision = "stale"
        await engine.plan(plan_input("gp", "DIRECT_CARE"))
        assert engine.revision == REVISION
    finally:
        await engine.aclose()


# --- failing closed ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_server_that_is_down_is_a_policy_error():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(PolicyError, match="failed to answer"):
        await decide_both(url)


@pytest.mark.anyio
async def test_a_slow_server_times_out_as_a_policy_error_within_the_deadline(serve):
    url = serve(Behaviour(delay_s=0.8))
    started = time.perf_counter()

    with pytest.raises(PolicyError, match="within 200 ms"):
        await decide_both(url, timeout_s=0.2)

    assert time.perf_counter() - started < 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 404, 503])
async def test_a_non_200_answer_is_a_policy_error(serve, status):
    with pytest.raises(PolicyError, match="failed to answer"):
        await decide_both(serve(Behaviour(status=status)))


@pytest.mark.anyio
async def test_an_undefined_decision_is_a_policy_error(serve):
    with pytest.raises(PolicyError, match="undefined"):
        await decide_both(serve(Behaviour(undefined=True)))


@pytest.mark.anyio
async def test_an_answer_without_a_bundle_revision_is_a_policy_error(serve):
    with pytest.raises(PolicyError, match="without a bundle revision"):
        await decide_both(serve(Behaviour(provenance=False)))


@pytest.mark.anyio
async def test_a_malformed_decision_is_a_policy_error(serve):
    wrong = {"permitted": True, "denial": None, "fields": ["address"], "sources": [], "extra": 1}

    with pytest.raises(PolicyError, match="malformed"):
        await decide_both(serve(Behaviour(result=wrong)))


# --- choosing the engine -------------------------------------------------------------------------


def test_settings_choose_opa_when_a_url_is_set_else_the_in_process_engine(monkeypatch):
    monkeypatch.setenv("CHILDLOOKUP_OPA_URL", "http://127.0.0.1:8181")
    monkeypatch.setenv("CHILDLOOKUP_OPA_TIMEOUT_MS", "120")
    with_opa = policy_engine_from_settings(Settings())
    monkeypatch.delenv("CHILDLOOKUP_OPA_URL")
    without = policy_engine_from_settings(Settings())

    assert isinstance(with_opa, OpaServerPolicyEngine)
    assert with_opa.url == "http://127.0.0.1:8181"
    assert isinstance(without, MemoisedPolicyEngine)
    assert not isinstance(without, RemotePolicyEngine)
    assert isinstance(with_opa, RemotePolicyEngine)
    assert without.revision.startswith(f"{REVISION}@")  # manifest revision @ content hash


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:8181", "http://127.0.0.1:8181/v1/data", "127.0.0.1:8181"]
)
def test_an_opa_url_the_client_cannot_use_is_refused_at_start_up(url):
    with pytest.raises(ValueError, match="OPA URL"):
        OpaServerPolicyEngine(url, timeout_s=1.0)


def test_settings_refuse_a_timeout_of_zero(monkeypatch):
    monkeypatch.setenv("CHILDLOOKUP_OPA_TIMEOUT_MS", "0")

    with pytest.raises(ValueError, match="opa_timeout_ms"):
        Settings()
