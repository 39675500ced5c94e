"""Load shedding: a process runs only so many lookups at once; the rest wait their turn, and one
that cannot start in time is refused before anything is asked, counted or recorded."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.capacity import Capacity
from gateway.errors import ErrorCode, GatewayError
from tests.factories import NHS, health_record, synthetic_nhs
from tests.stack import reference_stack


@pytest.mark.anyio
async def test_places_are_taken_in_turn_and_a_wait_too_long_is_overloaded():
    capacity = Capacity(max_in_flight=2, max_wait_ms=50)
    await capacity.acquire()
    await capacity.acquire()

    with pytest.raises(GatewayError) as refused:
        await capacity.acquire()
    waiting = asyncio.create_task(capacity.acquire())
    await asyncio.sleep(0.01)
    capacity.release()
    await asyncio.wait_for(waiting, 1)

    assert refused.value.code is ErrorCode.OVERLOADED


@pytest.mark.anyio
async def test_a_caller_that_gives_up_while_waiting_takes_no_place():
    capacity = Capacity(max_in_flight=1, max_wait_ms=5_000)
    await capacity.acquire()
    waiting = asyncio.create_task(capacity.acquire())
    await asyncio.sleep(0.01)
    waiting.cancel()
    capacity.release()

    await asyncio.wait_for(capacity.acquire(), 1)  # the place went to no one else


def test_lookups_past_capacity_are_refused_unasked_unaudited_and_uncounted(tmp_path):
    """One place, a connector taking 600 ms, three lookups at once: one is answered; the others
    wait 100 ms and are refused. The user's per-minute limit of 2 is not spent on them."""
    children = [NHS, synthetic_nhs(40), synthetic_nhs(41)]
    query = "query($nhs: String!) { child(nhsNumber: $nhs, purpose: DIRECT_CARE) { outcome } }"
    with reference_stack(
        tmp_path,
        # Every child has a record: whichever lookup gets the place, its answer is FOUND.
        {"health": [health_record(nhs=n, record_id=f"H{i}") for i, n in enumerate(children)]},
        latency_ms={"health": 600},
        max_lookups_in_flight=1,
        max_queue_wait_ms=100,
        lookups_per_user_per_minute=2,
    ) as gateway:
        token = gateway.token("gp")

        async def burst():
            async with httpx.AsyncClient(timeout=10) as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            f"{gateway.url}/graphql",
                            json={"query": query, "variables": {"nhs": nhs}},
                            headers={"authorization": f"Bearer {token}"},
                        )
                        for nhs in children
                    )
                )

        answers = [r.json() for r in asyncio.run(burst())]
        after = gateway.lookup("gp", NHS, "DIRECT_CARE")
        audit = gateway.components.audit.records()

    codes = sorted(a["errors"][0]["extensions"]["code"] for a in answers if a.get("errors"))
    assert codes == ["OVERLOADED", "OVERLOADED"]
    assert [a["data"]["child"]["outcome"] for a in answers if not a.get("errors")] == ["FOUND"]
    assert after["data"]["child"]["outcome"] == "FOUND"  # the limit of 2 was not spent on them
    assert [r["outcome"] for r in audit] == ["FOUND", "FOUND"]
