"""The SDK's publisher: the locator ends up holding what the agency holds, by difference."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.locator import (
    LocatorPublisher,
    PublishError,
    new_pseudonym_key,
    pseudonym,
    run_periodically,
)
from connectors.protocol import Identifiers
from connectors.records import FileBackend
from connectors.serving import BackgroundServer, free_port
from connectors.trust import write_public_key
from locator.app import app_from_settings
from locator.settings import Settings
from tests.factories import health_record, school_record, synthetic_nhs
from tests.locator.conftest import AGENCIES, RunningLocator

pytestmark = pytest.mark.anyio

LA = AGENCIES[0]


def _children(first: int, count: int) -> list[Identifiers]:
    return [Identifiers(nhs_number=synthetic_nhs(n)) for n in range(first, first + count)]


async def test_a_restarted_publisher_sends_only_the_difference(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        first = await locator.publisher(LA, client).sync(_children(0, 30))
    async with httpx.AsyncClient() as client:  # a new process: no state but the locator's
        unchanged = await locator.publisher(LA, client).sync(_children(0, 30))
        changed = await locator.publisher(LA, client).sync(_children(5, 30))

    assert (first.published, first.withdrawn, first.held) == (30, 0, {"2026-11": 30})
    assert (unchanged.published, unchanged.withdrawn, unchanged.batches) == (0, 0, 0)
    assert (changed.published, changed.withdrawn, changed.held) == (5, 5, {"2026-11": 30})


async def test_large_syncs_go_in_batches_each_with_its_own_id(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        report = await locator.publisher(LA, client, batch_size=7).sync(_children(0, 20))
    batches = [
        json.loads(body)
        for body in locator.recording.bodies
        if body.startswith(b"{") and "batch_id" in json.loads(body)
    ]

    assert report.batches == 3
    assert [len(b["publish"]) for b in batches] == [7, 7, 6]
    assert len({b["batch_id"] for b in batches}) == 3


async def test_a_file_connector_publishes_every_identifier_it_holds(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    backend = FileBackend([health_record(), school_record(nhs=synthetic_nhs(1), record_id="E2")])
    async with httpx.AsyncClient() as client:
        report = await locator.publisher(LA, client).sync(backend.identifiers())
        held = await locator.publisher(LA, client).listed(key.version)

    assert report.held == {"2026-11": 3}  # two NHS numbers and a UPN
    assert pseudonym(key, "upn", "H801200001001") in held


async def test_a_publisher_publishes_under_every_key(locator: RunningLocator):
    keys = [new_pseudonym_key("2027-05"), *locator.pseudonym_keys]
    async with httpx.AsyncClient() as client:
        report = await locator.publisher(LA, client, keys=keys).sync(_children(0, 4))

    assert report.held == {"2027-05": 4, "2026-11": 4}


async def test_a_refusal_is_a_clear_error(locator: RunningLocator):
    impostor = ec.generate_private_key(ec.SECP256R1())
    async with httpx.AsyncClient() as client:
        publisher = LocatorPublisher(LA, locator.url, impostor, locator.pseudonym_keys, client)
        with pytest.raises(PublishError, match="HTTP 401 UNAUTHENTICATED"):
            await publisher.sync(_children(0, 1))


async def test_a_locator_that_cannot_be_reached_is_a_clear_error(locator: RunningLocator):
    down = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient() as client:
        publisher = LocatorPublisher(
            LA, down, locator.agency_keys[LA], locator.pseudonym_keys, client, attempts=1
        )
        with pytest.raises(PublishError, match="could not be reached"):
            await publisher.sync(_children(0, 1))


async def test_periodic_syncs_go_on_after_a_failure(locator: RunningLocator):
    down = f"http://127.0.0.1:{free_port()}"
    asked = 0
    thrice = asyncio.Event()

    def held() -> list[Identifiers]:
        nonlocal asked
        asked += 1
        if asked == 3:
            thrice.set()
        return _children(0, 1)

    async with httpx.AsyncClient() as client:
        publisher = LocatorPublisher(
            LA, down, locator.agency_keys[LA], locator.pseudonym_keys, client, attempts=1
        )
        task = asyncio.create_task(run_periodically(publisher, held, interval_s=0.01))
        await asyncio.wait_for(thrice.wait(), timeout=10)
        task.cancel()

    assert asked >= 3  # a failed sync did not end the loop


async def test_a_publication_the_locator_cannot_check_is_refused_as_unavailable(tmp_path):
    """The agency's published keys cannot be fetched: 503 UNAVAILABLE (try again), not 401, which
    would send the agency looking for a fault in its own key."""
    agency_key = ec.generate_private_key(ec.SECP256R1())
    down = f"http://127.0.0.1:{free_port()}/jwks.json"
    agencies = tmp_path / "agencies.json"
    agencies.write_text(json.dumps({"agencies": [{"name": LA, "jwks_url": down}]}))
    write_public_key(
        tmp_path / "gateway.pub.pem", ec.generate_private_key(ec.SECP256R1()).public_key()
    )
    settings = Settings(
        state_dir=tmp_path / "state",
        agencies_file=agencies,
        gateway_public_key_file=tmp_path / "gateway.pub.pem",
        database_url=f"sqlite:///{tmp_path / 'locator.sqlite3'}",
    )
    with BackgroundServer(app_from_settings(settings)) as server:
        async with httpx.AsyncClient() as client:
            keys = [new_pseudonym_key("2026-11")]
            publisher = LocatorPublisher(LA, server.url, agency_key, keys, client, attempts=1)
            with pytest.raises(PublishError, match="HTTP 503 UNAVAILABLE"):
                await publisher.sync(_children(0, 1))
