"""Key rotation without downtime: a new key version is added everywhere, connectors re-publish
under it, status shows the coverage, the old version is retired - and every lookup finds the
child's agencies at every step."""

from __future__ import annotations

import json
from collections.abc import Sequence

import anyio
import httpx
import pytest

from connectors.locator import (
    LocateResponse,
    PseudonymKey,
    PublishError,
    new_pseudonym_key,
    pseudonyms,
)
from connectors.protocol import Identifiers
from gateway.cli import main
from tests.factories import synthetic_nhs
from tests.locator.conftest import AGENCIES, RunningLocator

pytestmark = pytest.mark.anyio

CHILDREN = [Identifiers(nhs_number=synthetic_nhs(n)) for n in range(6)]
HOLDS = {agency: CHILDREN[i : i + 4] for i, agency in enumerate(AGENCIES)}
"""Each agency holds four of the six children; every child is held by someone."""


async def _found(
    locator: RunningLocator, client: httpx.AsyncClient, keys: Sequence[PseudonymKey]
) -> dict[str, set[str]]:
    """Per child, the agencies the gateway - asking under every key it has - is told of."""
    found: dict[str, set[str]] = {}
    for child in CHILDREN:
        refs = [(key.version, p) for key in keys for p in pseudonyms(key, child)]
        answer = await locator.locate(client, refs, request_id=f"r-{child.nhs_number}")
        assert answer.status_code == 200
        located = LocateResponse.model_validate_json(answer.content)
        found[child.nhs_number or ""] = {a for h in located.holders for a in h.agencies}
    return found


def _truth() -> dict[str, set[str]]:
    return {
        child.nhs_number or "": {a for a, held in HOLDS.items() if child in held}
        for child in CHILDREN
    }


async def _cli(locator: RunningLocator, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    settings = locator.settings
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_AGENCIES_FILE", str(settings.agencies_file))
    monkeypatch.setenv("CHILDLOOKUP_LOCATOR_DATABASE_URL", settings.database_url or "")
    if settings.database_schema:
        monkeypatch.setenv("CHILDLOOKUP_LOCATOR_DATABASE_SCHEMA", settings.database_schema)
    code: int = await anyio.to_thread.run_sync(main, ["locator", *argv])
    return code


async def test_rotating_the_key_keeps_every_child_found(
    locator: RunningLocator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    old = locator.pseudonym_keys[0]
    new = new_pseudonym_key("2027-05")
    async with httpx.AsyncClient() as client:
        for agency, held in HOLDS.items():
            await locator.publisher(agency, client, keys=[old]).sync(held)
        assert await _found(locator, client, [old]) == _truth()

        # Both keys everywhere; connectors re-publish one by one, gateways ask under both.
        for done, (agency, held) in enumerate(HOLDS.items(), start=1):
            await locator.publisher(agency, client, keys=[new, old]).sync(held)
            assert await _found(locator, client, [new, old]) == _truth()
            if done == 1:  # too early: the new key does not yet reach every agency
                assert await _cli(locator, monkeypatch, "retire-key", old.version) == 2

        capsys.readouterr()
        assert await _cli(locator, monkeypatch, "status", "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["versions"] == [
            {"version": old.version, "agencies": 3, "holdings": 12, "retired": False},
            {"version": new.version, "agencies": 3, "holdings": 12, "retired": False},
        ]

        assert await _cli(locator, monkeypatch, "retire-key", old.version) == 0
        assert await _found(locator, client, [new, old]) == _truth()
        assert await _found(locator, client, [new]) == _truth()
        # A gateway left with the retired key alone is refused, not told that nobody holds the
        # child: it would call every lookup complete while finding no one through the locator.
        child = CHILDREN[0]
        stale = [(old.version, p) for p in pseudonyms(old, child)]
        refused = await locator.locate(client, stale, request_id="r-stale")
        with pytest.raises(PublishError, match="retired"):
            await locator.publisher(AGENCIES[0], client, keys=[old]).sync(CHILDREN)
        served = await client.get(locator.url + "/v1/status")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "BAD_REQUEST"
    assert "retired" in refused.json()["error"]["message"]
    assert served.json()["versions"][0] == {
        "version": old.version,
        "agencies": 0,
        "holdings": 0,
        "retired": True,
    }


async def test_an_agency_under_the_old_key_alone_keeps_it_from_retiring_whoever_else_publishes(
    locator: RunningLocator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Counting agencies per version let one agency publishing under the new key alone make up
    for another not yet moved: retired, the old key's holdings went, and that agency's children
    were answered "nobody holds" (or an agency under the old key alone blocked it for ever)."""
    old = locator.pseudonym_keys[0]
    new = new_pseudonym_key("2027-05")
    la, gp, school = AGENCIES
    async with httpx.AsyncClient() as client:
        await locator.publisher(la, client, keys=[old]).sync(HOLDS[la])
        await locator.publisher(gp, client, keys=[old]).sync(HOLDS[gp])
        await locator.publisher(la, client, keys=[new, old]).sync(HOLDS[la])
        # The school holds nothing under the old key, a child under the new one: two agencies each.
        await locator.publisher(school, client, keys=[new]).sync(HOLDS[school][:1])
        capsys.readouterr()
        refused = await _cli(locator, monkeypatch, "retire-key", old.version)
        said = capsys.readouterr().err
        found = await _found(locator, client, [new, old])

    assert refused == 2
    assert gp in said
    assert found[CHILDREN[1].nhs_number or ""] >= {gp}  # still found under the old key


async def test_an_agency_taken_out_of_the_agencies_file_has_its_holdings_removed(
    locator: RunningLocator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """It can no longer withdraw them itself, and they kept `retire-key` refusing for it."""
    old = locator.pseudonym_keys[0]
    la, gp, _ = AGENCIES
    async with httpx.AsyncClient() as client:
        await locator.publisher(la, client, keys=[old]).sync(HOLDS[la])
        await locator.publisher(gp, client, keys=[old]).sync(HOLDS[gp])
    still_listed = await _cli(locator, monkeypatch, "remove-agency", gp)
    agencies_file = locator.settings.agencies_file
    assert agencies_file is not None
    listed = json.loads(agencies_file.read_text())
    listed["agencies"] = [a for a in listed["agencies"] if a["name"] != gp]
    agencies_file.write_text(json.dumps(listed))
    capsys.readouterr()
    removed = await _cli(locator, monkeypatch, "remove-agency", gp)
    said = capsys.readouterr().out
    assert await _cli(locator, monkeypatch, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)

    assert still_listed == 2
    assert removed == 0
    assert f"removed {gp}: {len(HOLDS[gp])} holdings deleted" in said
    assert status["versions"][0]["agencies"] == 1
