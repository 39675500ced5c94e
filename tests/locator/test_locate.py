"""Locating: only the gateway asks, and the answer is signed by the locator."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors.locator import LocateResponse, PublishError, new_pseudonym_key, pseudonym
from connectors.protocol import Identifiers
from connectors.serving import BackgroundServer
from connectors.trust import JWKS_PATH, SIGNATURE_HEADER, PublishedKeys, TrustError, verify_answer
from locator.app import app_from_settings
from tests.locator.conftest import AGENCIES, LOCATOR_ID, RunningLocator

pytestmark = pytest.mark.anyio

LA, GP, SCHOOL = AGENCIES
CHILD = Identifiers(nhs_number="9434765919", upn="H801200001001")


async def test_the_gateway_finds_every_agency_holding_the_child(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    async with httpx.AsyncClient() as client:
        await locator.publisher(LA, client).sync([CHILD])
        await locator.publisher(SCHOOL, client).sync([Identifiers(upn=CHILD.upn)])
        await locator.publisher(GP, client).sync([Identifiers(nhs_number="9000000009")])
        answer = await locator.locate(
            client,
            [
                (key.version, pseudonym(key, "nhs_number", "943 476 5919")),
                (key.version, pseudonym(key, "upn", CHILD.upn or "")),
            ],
        )

    located = LocateResponse.model_validate_json(answer.content)
    assert located.request_id == "req-1"
    assert {(h.value, tuple(h.agencies)) for h in located.holders} == {
        (pseudonym(key, "nhs_number", "9434765919"), (LA,)),
        (pseudonym(key, "upn", "H801200001001"), (LA, SCHOOL)),
    }


async def test_the_answer_is_signed_with_the_published_key(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    async with httpx.AsyncClient() as client:
        await locator.publisher(LA, client).sync([CHILD])
        answer = await locator.locate(client, [(key.version, pseudonym(key, "upn", "X"))])
    keys = PublishedKeys(locator.url + JWKS_PATH)

    await verify_answer(answer.headers[SIGNATURE_HEADER], answer.content, keys, source=LOCATOR_ID)
    with pytest.raises(TrustError):
        await verify_answer(
            answer.headers[SIGNATURE_HEADER], answer.content + b" ", keys, source=LOCATOR_ID
        )
    assert LocateResponse.model_validate_json(answer.content).holders == []


async def test_an_agency_cannot_locate(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    async with httpx.AsyncClient() as client:
        answer = await locator.locate(
            client,
            [(key.version, pseudonym(key, "upn", "X"))],
            key=locator.agency_keys[LA],
            issuer=LA,
        )
        as_gateway = await locator.locate(
            client, [(key.version, pseudonym(key, "upn", "X"))], key=locator.agency_keys[LA]
        )

    assert (answer.status_code, as_gateway.status_code) == (401, 401)
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
    assert SIGNATURE_HEADER in answer.headers  # refusals are signed too


async def test_an_unsigned_locate_is_refused(locator: RunningLocator):
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            locator.url + "/v1/locate",
            json={"protocol_version": "1", "request_id": "r", "pseudonyms": []},
        )

    assert answer.status_code == 401


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversize_question_is_refused_before_it_is_read_whole(
    locator: RunningLocator, declared: bool
):
    too_much = b"x" * (16 * 1024 + 1)

    async def chunks():
        for start in range(0, len(too_much), 4096):
            yield too_much[start : start + 4096]

    async with httpx.AsyncClient() as client:
        answer = await client.post(
            locator.url + "/v1/locate", content=too_much if declared else chunks()
        )

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "BAD_REQUEST"
    assert "larger than 16384 bytes" in answer.json()["error"]["message"]


async def test_each_locate_is_audited_by_counts_only(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    async with httpx.AsyncClient() as client:
        await locator.publisher(LA, client).sync([CHILD])
        await locator.locate(
            client,
            [(key.version, pseudonym(key, "nhs_number", CHILD.nhs_number or ""))],
            request_id="req-42",
        )
    store = locator.store()
    try:
        audit = await store.queries_since(0)
    finally:
        await store.close()

    assert [(q.request_id, q.issuer, q.pseudonyms, q.agencies) for q in audit] == [
        ("req-42", "childlookup-gateway", 1, 1)
    ]


async def test_a_closed_record_stops_being_located(locator: RunningLocator):
    key = locator.pseudonym_keys[0]
    asked = [(key.version, pseudonym(key, "nhs_number", CHILD.nhs_number or ""))]
    async with httpx.AsyncClient() as client:
        publisher = locator.publisher(LA, client)
        await publisher.sync([CHILD])
        before = await locator.locate(client, asked)
        report = await publisher.sync([])  # the case closed
        after = await locator.locate(client, asked, request_id="req-2")

    assert len(LocateResponse.model_validate_json(before.content).holders) == 1
    assert (report.withdrawn, report.held) == (2, {"2026-11": 0})
    assert LocateResponse.model_validate_json(after.content).holders == []


async def test_a_question_under_no_key_version_searched_here_is_refused_not_answered_empty(
    locator: RunningLocator,
):
    """An empty answer would say nobody holds the child when nobody was looked for: a gateway
    holding a key no publisher uses would call every lookup complete."""
    key = locator.pseudonym_keys[0]
    async with httpx.AsyncClient() as client:
        await locator.publisher(LA, client).sync([CHILD])
        unknown = await locator.locate(
            client, [("2099-01", pseudonym(key, "nhs_number", CHILD.nhs_number or ""))]
        )
        both = await locator.locate(
            client,
            [
                ("2099-01", pseudonym(key, "nhs_number", CHILD.nhs_number or "")),
                (key.version, pseudonym(key, "nhs_number", CHILD.nhs_number or "")),
            ],
            request_id="req-2",
        )

    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "BAD_REQUEST"
    assert "key version" in unknown.json()["error"]["message"]
    assert SIGNATURE_HEADER in unknown.headers
    located = LocateResponse.model_validate_json(both.content)
    assert [(h.key_version, h.agencies) for h in located.holders] == [(key.version, [LA])]


async def test_an_agency_taken_out_of_the_agencies_file_is_no_longer_named(
    locator: RunningLocator,
):
    """Its key compromised, say: it can no longer withdraw what it published, and what it
    published must not go on sending lookups to it."""
    key = locator.pseudonym_keys[0]
    asked = [(key.version, pseudonym(key, "nhs_number", CHILD.nhs_number or ""))]
    async with httpx.AsyncClient() as client:
        await locator.publisher(LA, client).sync([CHILD])
        await locator.publisher(GP, client).sync([CHILD])
        agencies_file = locator.settings.agencies_file
        assert agencies_file is not None
        listed = json.loads(agencies_file.read_text())
        listed["agencies"] = [a for a in listed["agencies"] if a["name"] != GP]
        agencies_file.write_text(json.dumps(listed))
        with BackgroundServer(app_from_settings(locator.settings)) as restarted:
            answer = await _locate_at(restarted.url, locator, client, asked)

    located = LocateResponse.model_validate_json(answer.content)
    assert [h.agencies for h in located.holders] == [[LA]]


async def _locate_at(
    url: str, locator: RunningLocator, client: httpx.AsyncClient, refs: list[tuple[str, str]]
) -> httpx.Response:
    """`locator.locate`, sent to another server over the same store."""
    served = RunningLocator(
        url, locator.settings, locator.agency_keys, locator.gateway_key, locator.recording
    )
    return await served.locate(client, refs)


async def test_only_the_federations_key_versions_are_published_under_and_searched(
    locator: RunningLocator,
):
    """Unlisted, any agency could make a version up - one empty batch - and a gateway whose key
    file named it (stale, or a mistake) was answered "nobody holds" rather than refused."""
    key = locator.pseudonym_keys[0]
    made_up = new_pseudonym_key("2099-01")
    listed = locator.settings.model_copy(update={"key_versions": [key.version]})
    async with httpx.AsyncClient() as client:
        with BackgroundServer(app_from_settings(listed)) as served:
            at = RunningLocator(
                served.url,
                listed,
                locator.agency_keys,
                locator.gateway_key,
                locator.recording,
                locator.pseudonym_keys,
            )
            await at.publisher(LA, client).sync([CHILD])
            with pytest.raises(PublishError, match="not one of this federation's"):
                await at.publisher(GP, client, keys=[made_up]).sync([CHILD])
            asked = pseudonym(made_up, "nhs_number", CHILD.nhs_number or "")
            refused = await at.locate(client, [(made_up.version, asked)])

    assert refused.status_code == 400
    assert "key version" in refused.json()["error"]["message"]
