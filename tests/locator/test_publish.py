"""Publishing to the locator: applied once, by the agency that signed it, for itself only."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import httpx
import pytest

from connectors.locator import (
    HOLDINGS_LIST_PATH,
    HOLDINGS_PATH,
    HoldingsListRequest,
    PublishReceipt,
    PublishRequest,
    pseudonym,
)
from connectors.trust import request_authorization
from locator import store as store_module
from locator.store import Store, StoreRefusal
from tests.locator.conftest import AGENCIES, JWKS_AGENCY, LOCATOR_ID, RunningLocator

pytestmark = pytest.mark.anyio

LA, GP = AGENCIES[0], AGENCIES[1]


def _pseudonyms(locator: RunningLocator, count: int, start: int = 0) -> list[str]:
    key = locator.pseudonym_keys[0]
    return [pseudonym(key, "nhs_number", f"{9000000000 + n}") for n in range(start, start + count)]


async def _post(
    locator: RunningLocator,
    client: httpx.AsyncClient,
    request: PublishRequest | HoldingsListRequest,
    *,
    signer: str | None = None,
    body: bytes | None = None,
    authorization: str | None = None,
) -> httpx.Response:
    signed = request.model_dump_json().encode()
    if authorization is None:
        key = locator.agency_keys[signer or request.agency]
        authorization = request_authorization(
            key, signed, issuer=request.agency, audience=LOCATOR_ID
        )
    path = HOLDINGS_PATH if isinstance(request, PublishRequest) else HOLDINGS_LIST_PATH
    return await client.post(
        locator.url + path,
        content=signed if body is None else body,
        headers={"authorization": authorization} if authorization else {},
    )


def _batch(
    agency: str,
    batch_id: str,
    publish: list[str],
    withdraw: list[str] = (),  # type: ignore[assignment]
) -> PublishRequest:
    return PublishRequest(
        agency=agency,
        batch_id=batch_id,
        key_version="2026-11",
        publish=publish,
        withdraw=list(withdraw),
    )


async def test_a_batch_publishes_and_withdraws(locator: RunningLocator):
    first, second = _pseudonyms(locator, 3), _pseudonyms(locator, 2, start=10)
    async with httpx.AsyncClient() as client:
        added = await _post(locator, client, _batch(LA, "b1", first + second))
        changed = await _post(locator, client, _batch(LA, "b2", [], second))

    assert PublishReceipt.model_validate_json(added.content) == PublishReceipt(
        batch_id="b1", published=5, withdrawn=0, held=5
    )
    assert PublishReceipt.model_validate_json(changed.content) == PublishReceipt(
        batch_id="b2", published=0, withdrawn=2, held=3
    )


async def test_the_same_batch_twice_changes_nothing(locator: RunningLocator):
    batch = _batch(LA, "b1", _pseudonyms(locator, 4))
    async with httpx.AsyncClient() as client:
        first = await _post(locator, client, batch)
        await _post(locator, client, _batch(LA, "b2", [], _pseudonyms(locator, 1)))
        again = await _post(locator, client, batch)  # a retry, with a fresh token

    assert first.status_code == again.status_code == 200
    receipt = PublishReceipt.model_validate_json(again.content)
    assert (receipt.published, receipt.withdrawn, receipt.held) == (4, 0, 3)


async def test_publishing_what_is_held_or_withdrawing_what_is_not_is_a_no_op(
    locator: RunningLocator,
):
    held = _pseudonyms(locator, 2)
    async with httpx.AsyncClient() as client:
        await _post(locator, client, _batch(LA, "b1", held))
        answer = await _post(locator, client, _batch(LA, "b2", held, _pseudonyms(locator, 1, 50)))

    assert PublishReceipt.model_validate_json(answer.content) == PublishReceipt(
        batch_id="b2", published=0, withdrawn=0, held=2
    )


async def test_a_batch_id_used_again_for_other_content_is_refused(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        await _post(locator, client, _batch(LA, "b1", _pseudonyms(locator, 2)))
        reused = await _post(locator, client, _batch(LA, "b1", _pseudonyms(locator, 2, 7)))

    assert reused.status_code == 400
    assert reused.json()["error"]["code"] == "BAD_REQUEST"


async def test_agencies_hold_apart(locator: RunningLocator):
    shared = _pseudonyms(locator, 2)
    async with httpx.AsyncClient() as client:
        await _post(locator, client, _batch(LA, "b1", shared))
        gp = await _post(locator, client, _batch(GP, "b1", shared[:1]))
        listed = await _post(locator, client, HoldingsListRequest(agency=GP, key_version="2026-11"))

    assert PublishReceipt.model_validate_json(gp.content).held == 1
    assert listed.json() == {"pseudonyms": shared[:1], "next": None}


async def test_an_agency_publishing_with_published_keys_is_trusted(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        answer = await _post(locator, client, _batch(JWKS_AGENCY, "b1", _pseudonyms(locator, 1)))

    assert answer.status_code == 200


async def test_listing_pages_through_every_holding(locator: RunningLocator):
    held = _pseudonyms(locator, 25)
    async with httpx.AsyncClient() as client:
        await _post(locator, client, _batch(LA, "b1", held))
        pages, after = [], None
        while True:
            page = await _post(
                locator,
                client,
                HoldingsListRequest(agency=LA, key_version="2026-11", after=after, limit=10),
            )
            pages.append(page.json()["pseudonyms"])
            after = page.json()["next"]
            if after is None:
                break

    assert [len(p) for p in pages] == [10, 10, 5]
    assert sorted(p for page in pages for p in page) == sorted(held)


async def test_an_unsigned_publication_is_refused(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        answer = await _post(
            locator, client, _batch(LA, "b1", _pseudonyms(locator, 1)), authorization=""
        )

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_an_agency_cannot_sign_as_another(locator: RunningLocator):
    """The GP signs a token claiming to be the local authority: the LA's key refuses it."""
    async with httpx.AsyncClient() as client:
        answer = await _post(locator, client, _batch(LA, "b1", _pseudonyms(locator, 1)), signer=GP)

    assert answer.status_code == 401


async def test_an_agency_cannot_publish_or_list_for_another(locator: RunningLocator):
    """A token honestly from the GP, over a body naming the local authority."""
    batch = _batch(LA, "b1", _pseudonyms(locator, 1))
    body = batch.model_dump_json().encode()
    as_gp = request_authorization(locator.agency_keys[GP], body, issuer=GP, audience=LOCATOR_ID)
    question = HoldingsListRequest(agency=LA, key_version="2026-11")
    question_body = question.model_dump_json().encode()
    asks_as_gp = request_authorization(
        locator.agency_keys[GP], question_body, issuer=GP, audience=LOCATOR_ID
    )
    async with httpx.AsyncClient() as client:
        published = await _post(locator, client, batch, authorization=as_gp)
        listed = await _post(locator, client, question, authorization=asks_as_gp)

    assert (published.status_code, listed.status_code) == (403, 403)
    assert published.json()["error"]["code"] == "FORBIDDEN"


async def test_an_unregistered_agency_is_refused(locator: RunningLocator):
    batch = _batch("la_e0899999", "b1", _pseudonyms(locator, 1))
    body = batch.model_dump_json().encode()
    authorization = request_authorization(
        locator.agency_keys[LA], body, issuer="la_e0899999", audience=LOCATOR_ID
    )
    async with httpx.AsyncClient() as client:
        answer = await _post(locator, client, batch, authorization=authorization)

    assert answer.status_code == 401


async def test_a_replayed_publication_is_refused(locator: RunningLocator):
    batch = _batch(LA, "b1", _pseudonyms(locator, 1))
    body = batch.model_dump_json().encode()
    authorization = request_authorization(
        locator.agency_keys[LA], body, issuer=LA, audience=LOCATOR_ID
    )
    async with httpx.AsyncClient() as client:
        first = await _post(locator, client, batch, authorization=authorization)
        replayed = await _post(locator, client, batch, authorization=authorization)

    assert (first.status_code, replayed.status_code) == (200, 401)


async def test_a_tampered_publication_is_refused(locator: RunningLocator):
    signed = _batch(LA, "b1", _pseudonyms(locator, 1))
    tampered = _batch(LA, "b1", _pseudonyms(locator, 1, start=99)).model_dump_json().encode()
    async with httpx.AsyncClient() as client:
        answer = await _post(locator, client, signed, body=tampered)
        listed = await _post(locator, client, HoldingsListRequest(agency=LA, key_version="2026-11"))

    assert answer.status_code == 401
    assert listed.json()["pseudonyms"] == []


async def test_a_malformed_pseudonym_is_refused(locator: RunningLocator):
    """Only the shape `pseudonym` makes: a name or a number is not accepted as one."""
    body = (
        b'{"protocol_version":"1","agency":"la_e0800001","batch_id":"b1",'
        b'"key_version":"2026-11","publish":["9434765919"],"withdraw":[]}'
    )
    authorization = request_authorization(
        locator.agency_keys[LA], body, issuer=LA, audience=LOCATOR_ID
    )
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            locator.url + HOLDINGS_PATH, content=body, headers={"authorization": authorization}
        )

    assert answer.status_code == 400
    assert "9434765919" not in answer.text


def test_a_publication_racing_a_retirement_on_sqlite_is_not_kept_under_the_retired_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`retire-key` run from another process between a publication's check that its key version
    is live and its first insert: the batch had been taken (200) under a version already retired,
    its holdings outliving the retirement. The interleaving is forced where it could fall."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'locator.sqlite3'}"
    version = "2026-11"

    def retire_elsewhere() -> None:
        async def retire() -> None:
            store = Store.open(url)
            try:
                await store.retire(version)
            finally:
                await store.close()

        asyncio.run(retire())

    retiring = threading.Thread(target=retire_elsewhere)
    real_chunks = store_module._chunks

    def chunks_after_a_retirement(values):  # type: ignore[no-untyped-def]
        if not retiring.is_alive() and retiring.ident is None:
            retiring.start()
            retiring.join(1.0)  # done by now, unless the publication's lock holds it back
        return real_chunks(values)

    async def publish_then_list() -> list[str]:
        store = Store.open(url)
        try:
            await store.create()
            await store.publish(_store_batch("first", ["A" * 43]))
            monkeypatch.setattr(store_module, "_chunks", chunks_after_a_retirement)
            with contextlib.suppress(StoreRefusal):
                await store.publish(_store_batch("late", ["Q" * 43, "g" * 43]))
            monkeypatch.setattr(store_module, "_chunks", real_chunks)
            await asyncio.to_thread(retiring.join, 30)
            return (await store.listed(LA, version, None, 100)).pseudonyms
        finally:
            await store.close()

    assert asyncio.run(publish_then_list()) == []


def _store_batch(batch_id: str, publish: list[str]) -> PublishRequest:
    return PublishRequest(
        agency=LA, batch_id=batch_id, key_version="2026-11", publish=publish, withdraw=[]
    )


def test_a_publication_is_forgotten_a_day_after_it_was_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Within the day, a batch id sent again with other content is refused; a day on, the
    agency's next publication has cleared the log of it, so the id is taken as a new batch - the
    log kept no longer when each batch was applied, nor its digest, which names a small batch's
    pseudonyms to anyone hashing those they know."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'locator.sqlite3'}"
    clock = [1_800_000_000.0]
    monkeypatch.setattr(store_module.time, "time", lambda: clock[0])

    async def publish_twice() -> list[str]:
        store = Store.open(url)
        try:
            await store.create()
            await store.publish(_store_batch("first", ["A" * 43]))
            with pytest.raises(StoreRefusal):
                await store.publish(_store_batch("first", ["Q" * 43]))
            clock[0] += store_module.PUBLICATIONS_KEPT_S + 1
            await store.publish(_store_batch("next", ["g" * 43]))
            receipt = await store.publish(_store_batch("first", ["Q" * 43]))
            assert receipt.published == 1
            return (await store.listed(LA, "2026-11", None, 100)).pseudonyms
        finally:
            await store.close()

    assert len(asyncio.run(publish_twice())) == 3
