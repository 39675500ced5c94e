"""The OPA-server engine over real HTTP, against a server speaking OPA's REST Data API.

The server is a small Starlette app backed by real OPA (opa-golib-python-bindings) holding the
bundle tarball `childlookup policy bundle` writes, served on 127.0.0.1. It answers as OPA does:
`{"result": ...}` for a defined document, `{}` for an undefined one, and `provenance` with the
bundle's revision when asked. Variants of it fail in each way an OPA server can fail: the engine
must turn every one into PolicyError.
"""

from __future__ import annotations

import json
import time

import pytest

from connectors.serving import free_port
from gateway.config import Settings
from gateway.policy import (
    DecisionLog,
    LoggedPolicy,
    MemoisedPolicyEngine,
    OpaServerPolicyEngine,
    PolicyError,
    RegoPolicyEngine,
    RemotePolicyEngine,
    load_bundle,
    policy_engine_from_settings,
)
from gateway.policy.opa import MAX_ANSWER_BYTES
from tests.factories import POLICY_DIR, plan_input, release_input
from tests.stack import Behaviour

REVISION = load_bundle(POLICY_DIR).revision


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
async def test_decisions_over_http_match_the_in_process_engine(opa_server, rego):
    engine = OpaServerPolicyEngine(opa_server(), timeout_s=2.0)
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
async def test_revision_is_the_served_bundles_from_connect_and_from_every_answer(opa_server):
    engine = OpaServerPolicyEngine(opa_server(), timeout_s=2.0)
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
async def test_a_slow_server_times_out_as_a_policy_error_within_the_deadline(opa_server):
    url = opa_server(Behaviour(delay_s=0.8))
    started = time.perf_counter()

    with pytest.raises(PolicyError, match="within 200 ms"):
        await decide_both(url, timeout_s=0.2)

    assert time.perf_counter() - started < 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 404, 503])
async def test_a_non_200_answer_is_a_policy_error(opa_server, status):
    with pytest.raises(PolicyError, match="failed to answer"):
        await decide_both(opa_server(Behaviour(status=status)))


@pytest.mark.anyio
async def test_an_undefined_decision_is_a_policy_error(opa_server):
    with pytest.raises(PolicyError, match="undefined"):
        await decide_both(opa_server(Behaviour(undefined=True)))


@pytest.mark.anyio
async def test_an_answer_without_a_bundle_revision_is_a_policy_error(opa_server):
    with pytest.raises(PolicyError, match="without a bundle revision"):
        await decide_both(opa_server(Behaviour(provenance=False)))


@pytest.mark.anyio
async def test_a_malformed_decision_is_a_policy_error(opa_server):
    wrong = {"permitted": True, "denial": None, "fields": ["address"], "sources": [], "extra": 1}

    with pytest.raises(PolicyError, match="malformed"):
        await decide_both(opa_server(Behaviour(result=wrong)))


@pytest.mark.anyio
async def test_a_redirect_is_a_policy_error_and_its_target_is_never_asked(opa_server):
    """aiohttp follows redirects by default: the policy input went to, and the decision came
    from, wherever a 307 pointed."""
    healthy = opa_server()  # it would answer, as the first test shows
    with pytest.raises(PolicyError, match="HTTP 307"):
        await decide_both(opa_server(Behaviour(redirect_to=healthy)))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("behaviour", "said"),
    [
        (Behaviour(gzip=True), "compressed"),
        (Behaviour(padding=MAX_ANSWER_BYTES), f"larger than {MAX_ANSWER_BYTES} bytes"),
        (Behaviour(gzip=True, padding=10 * MAX_ANSWER_BYTES), "compressed"),
    ],
    ids=["gzip", "oversize", "gzip bomb"],
)
async def test_an_answer_compressed_or_past_the_cap_is_a_policy_error(opa_server, behaviour, said):
    with pytest.raises(PolicyError, match=said):
        await decide_both(opa_server(behaviour))


@pytest.mark.anyio
@pytest.mark.parametrize("revision", ["rev\n\x1b[31mFAKE", "r" * 129, "two words"])
async def test_a_revision_that_cannot_be_recorded_as_it_is_is_a_policy_error(opa_server, revision):
    """It goes into every audit record and decision log line, and answers."""
    with pytest.raises(PolicyError, match="printable"):
        await decide_both(opa_server(Behaviour(revision=revision)))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "unrevised", [{"revision": ""}, {}, {"revision": 7}, "r1"], ids=["empty", "none", "int", "str"]
)
async def test_a_bundle_answering_without_a_revision_beside_one_with_is_a_policy_error(
    opa_server, unrevised
):
    """Rules pushed through OPA's Policy API beside an unrelated bundle that has a revision: the
    decisions would be recorded under that bundle's revision, traced to a version that did not
    make them."""
    bundles = {"childlookup": unrevised, "unrelated": {"revision": "u-9"}}
    with pytest.raises(PolicyError, match="'childlookup' without a revision"):
        await decide_both(opa_server(Behaviour(bundles=bundles)))


class _Lines:
    def __init__(self) -> None:
        self.written: list[dict[str, object]] = []

    def write(self, text: str) -> None:
        self.written += [json.loads(line) for line in text.splitlines()]


@pytest.mark.anyio
async def test_each_decision_is_recorded_under_the_revision_that_made_it(opa_server):
    """The revision went through one attribute every lookup shares: a lookup recorded the one
    its engine had seen last, not the one that decided it."""
    behaviour = Behaviour(revision="rev-2")
    engine = OpaServerPolicyEngine(opa_server(behaviour), timeout_s=2.0)
    lines = _Lines()
    try:
        assert await engine.connect() == "rev-2"
        behaviour.revision = "rev-3"  # OPA loads a bundle before the lookup decides
        lookup = LoggedPolicy(engine, DecisionLog(lines, instance="t"))

        await lookup.plan(plan_input("gp", "DIRECT_CARE"))
        await lookup.release(release_input("gp", "DIRECT_CARE"))
    finally:
        await engine.aclose()
    assert lookup.revision == "rev-3"
    assert [line["bundles"]["childlookup"]["revision"] for line in lines.written] == ["rev-3"] * 2


@pytest.mark.anyio
async def test_a_lookup_whose_decisions_come_from_two_revisions_fails_closed(opa_server):
    behaviour = Behaviour(revision="rev-3")
    engine = OpaServerPolicyEngine(opa_server(behaviour), timeout_s=2.0)
    try:
        lookup = LoggedPolicy(engine, DecisionLog(None, instance="t"))
        await lookup.plan(plan_input("gp", "DIRECT_CARE"))
        behaviour.revision = "rev-4"  # between this lookup's plan and its release

        with pytest.raises(PolicyError, match="from revision rev-3 to rev-4"):
            await lookup.release(release_input("gp", "DIRECT_CARE"))
    finally:
        await engine.aclose()


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
