"""National routing through the locator: many pseudonym key versions, a hidden search's timing, a
locator whose holdings pages never advance.

Real components on loopback as in tests/test_routing_e2e.py (whose national stack is reused):
the locator on SQLite, agencies publishing to it, the identity sources and the gateway.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import tests.test_routing_e2e as national_e2e
from connectors.agencies import AgencyHoldings
from connectors.locator import (
    HOLDINGS_LIST_PATH,
    HOLDINGS_PATH,
    LOCATE_PATH,
    LocatorPublisher,
    PublishError,
    new_pseudonym_key,
)
from connectors.protocol import Identifiers, RecordFlags
from connectors.serving import BackgroundServer
from connectors.trust import AnswerSigner
from tests.factories import synthetic_nhs

AMELIA = {
    "givenName": "Amelia",
    "familyName": "Hart",
    "dateOfBirth": "2019-03-04",
    "postcode": "LS6 2AB",
}
NOBODY = {
    "givenName": "Zebedee",
    "familyName": "Nobody",
    "dateOfBirth": "2012-01-01",
    "postcode": "LS6 2AB",
}

SEARCH = """
query($d: DemographicsInput!) {
  child(identify: {demographics: $d}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete
    sources { source status failureCode }
  }
}
"""


def _search(gateway: Any, demographics: dict[str, str]) -> dict[str, Any]:
    response = gateway.post(
        {"query": SEARCH, "variables": {"d": demographics}}, gateway.token("social_worker")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the gateway holding more pseudonym key versions than one locate carries ---------------------


def test_a_search_asked_under_many_key_versions_is_answered_not_an_internal_error(
    tmp_path, monkeypatch
):
    """A gateway holding five key versions (the publishers' current one among them, others
    added ahead of rotations) searches by demographics: the child's NHS number and UPN under
    every version are ten pseudonyms, more than one locate may carry (MAX_LOCATE = 8). The
    locate request could not even be built, and the whole lookup failed with INTERNAL_ERROR
    instead of the locator being asked (or reported FAILED)."""
    current = new_pseudonym_key("k1")
    monkeypatch.setattr(national_e2e, "new_pseudonym_key", lambda version: current)
    spare = [new_pseudonym_key(f"k{n}") for n in range(2, 6)]
    with national_e2e.national(tmp_path, gateway_keys=[*spare, current]) as (gateway, _):
        body = _search(gateway, AMELIA)

    assert "errors" not in body, body
    child = body["data"]["child"]
    sources = {s["source"]: s for s in child["sources"]}
    assert child["outcome"] == "FOUND"
    assert sources["locator"]["status"] == "ANSWERED"
    assert child["complete"] is True


# --- shield-safe search and a locator that answers slowly (in time) -----------------------------


class _Slow:
    """The locator, answering each locate after `delay_s` (within the gateway's 500 ms)."""

    def __init__(self, app: ASGIApp, signer: AnswerSigner, delay_s: float = 0.35) -> None:
        self._app = app
        self._delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == LOCATE_PATH:
            await asyncio.sleep(self._delay_s)
        await self._app(scope, receive, send)


def test_a_search_hidden_after_routing_takes_no_longer_than_one_for_nobody(tmp_path, monkeypatch):
    """Amelia's former authority shields her. A demographic search that finds her in the
    identity sources goes on to the locator and the agencies it names before the shield is
    seen, then answers "not found" - as a search for nobody does. With a locator answering in
    350 ms (inside its 500 ms timeout), the hidden search answers hundreds of milliseconds
    after the search for nobody, which is held only to the 200 ms demographic answer floor:
    "found but hidden" is told from "not found" by the clock (DOMAIN: no timing tell)."""
    held = national_e2e._agencies()

    def shielding() -> list[AgencyHoldings]:
        return [
            AgencyHoldings(
                a.name,
                a.kind,
                tuple(
                    r.model_copy(update={"flags": RecordFlags(shielded=True)})
                    if a.name == "la_e0800002"
                    else r
                    for r in a.records
                ),
                a.provides,
            )
            for a in held
        ]

    monkeypatch.setattr(national_e2e, "_agencies", shielding)
    with national_e2e.national(tmp_path, answers=_Slow) as (gateway, _):
        _search(gateway, NOBODY)  # warm connections and keys
        _search(gateway, AMELIA)
        timings: dict[str, list[float]] = {"hidden": [], "nobody": []}
        outcomes = set()
        for _ in range(3):
            for label, who in (("hidden", AMELIA), ("nobody", NOBODY)):
                started = time.monotonic()
                body = _search(gateway, who)
                timings[label].append(time.monotonic() - started)
                outcomes.add(body["data"]["child"]["outcome"])

    assert outcomes == {"NOT_FOUND"}  # both answered alike...
    hidden, nobody = min(timings["hidden"]), min(timings["nobody"])
    assert hidden - nobody < 0.1, timings  # ...and in the same time


# --- the publisher and a locator whose holdings pages never advance -----------------------------


def _stuck_locator(calls: list[str]) -> Starlette:
    """A locator whose every holdings page says there is more, after the same pseudonym."""
    stuck = "A" * 42 + "A"

    async def listed(request: Request) -> JSONResponse:
        calls.append("list")
        return JSONResponse({"pseudonyms": [stuck], "next": stuck})

    async def published(request: Request) -> JSONResponse:
        calls.append("publish")
        return JSONResponse({"batch_id": "b", "published": 0, "withdrawn": 0, "held": 0})

    return Starlette(
        routes=[
            Route(HOLDINGS_LIST_PATH, listed, methods=["POST"]),
            Route(HOLDINGS_PATH, published, methods=["POST"]),
        ]
    )


@pytest.mark.anyio
async def test_a_locator_whose_pages_never_advance_fails_the_sync_rather_than_looping_forever():
    """A locator (broken, or answering in an attacker's place: the publisher checks no
    signature on its answers) lists the same page again and again, each saying `next` is the
    pseudonym the publisher asked after. The publisher asked for ever - its sync never ended,
    run_periodically never synced again, and the locator was hammered - rather than failing
    the sync with PublishError."""
    calls: list[str] = []
    with BackgroundServer(_stuck_locator(calls)) as server:
        async with httpx.AsyncClient() as client:
            publisher = LocatorPublisher(
                "la_e0800001",
                server.url,
                ec.generate_private_key(ec.SECP256R1()),
                [new_pseudonym_key("2026-11")],
                client,
            )
            with pytest.raises(PublishError):
                await asyncio.wait_for(
                    publisher.sync([Identifiers(nhs_number=synthetic_nhs(1))]), timeout=10
                )

    assert len(calls) < 20, len(calls)
