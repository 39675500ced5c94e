"""The connector SDK's notification receiver (POST /v1/notifications on every connector app): it
keeps what the gateway signed for this agency, once, refuses anything else with a clear error, and
lists recent accesses to the agency's own host only. Receivers are real connector apps on loopback.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.app import MAX_BODY_BYTES, create_connector_app
from connectors.notifications import (
    NOTIFICATIONS_PATH,
    RECENT_NOTIFICATIONS_PATH,
    Notification,
    NotificationLog,
    NotificationReceipt,
)
from connectors.openapi import openapi_document
from connectors.protocol import ErrorCode, ErrorResponse
from gateway.signing import RequestSigner
from tests.factories import notification
from tests.stack import (
    GATEWAY_ISSUER,
    GATEWAY_KEY,
    GATEWAY_SIGNER,
    NoRecords,
    gateway_verifier,
    notification_receiver,
)


def send(client: httpx.Client, body: bytes, authorization: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return client.post(NOTIFICATIONS_PATH, content=body, headers=headers)


def signed(body: bytes, audience: str = "social_care") -> str:
    return GATEWAY_SIGNER.authorization(audience, body)


def test_a_signed_notification_is_kept_and_acknowledged():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with notification_receiver(sink) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 200
    assert NotificationReceipt.model_validate_json(response.content).duplicate is False
    assert sink.recent(10) == [notification()]


def test_a_redelivery_is_acknowledged_but_kept_once():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with notification_receiver(sink) as client:
        first = send(client, body, signed(body))
        again = send(client, body, signed(body))  # a fresh signature, as each attempt has

    assert NotificationReceipt.model_validate_json(first.content).duplicate is False
    assert NotificationReceipt.model_validate_json(again.content).duplicate is True
    assert len(sink.recent(10)) == 1


def _forged(body: bytes) -> str:
    return signed(notification(audit_id="a-forged").model_dump_json().encode())


def _wrong_key(body: bytes) -> str:
    return RequestSigner(
        ec.generate_private_key(ec.SECP256R1()), issuer=GATEWAY_ISSUER
    ).authorization("social_care", body)


def _expired(body: bytes) -> str:
    claims = jwt.decode(signed(body).removeprefix("Bearer "), options={"verify_signature": False})
    stale = claims | {"iat": claims["iat"] - 120, "exp": claims["exp"] - 120}
    return "Bearer " + jwt.encode(stale, GATEWAY_KEY, algorithm="ES256")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda body: None, id="unsigned"),
        pytest.param(_forged, id="signature-over-another-body"),
        pytest.param(
            lambda body: signed(body, audience="health"), id="addressed-to-another-agency"
        ),
        pytest.param(_wrong_key, id="signed-by-another-key"),
        pytest.param(_expired, id="expired"),
    ],
)
def test_a_notification_not_signed_by_the_gateway_for_this_agency_is_refused(authorization):
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with notification_receiver(sink) as client:
        response = send(client, body, authorization(body))

    assert response.status_code == 401
    assert (
        ErrorResponse.model_validate_json(response.content).error.code is ErrorCode.UNAUTHENTICATED
    )
    assert sink.recent(10) == []


def test_a_replayed_notification_token_is_refused():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    token = signed(body)
    with notification_receiver(sink) as client:
        assert send(client, body, token).status_code == 200
        replay = send(client, body, token)

    assert replay.status_code == 401
    assert "replay" in ErrorResponse.model_validate_json(replay.content).error.message


def test_a_malformed_notification_is_refused_with_a_clear_error():
    body = json.dumps({"message_id": "m-1", "nhs_number": "9434765919"}).encode()
    with notification_receiver(NotificationLog()) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 400
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.message.startswith("Invalid notification:")
    assert "9434765919" not in response.text


class FailingOnce(NotificationLog):
    """An agency store that is down for the first notification."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def keep(self, notification: Notification) -> bool:
        if not self.failed:
            self.failed = True
            raise OSError("case system unavailable")
        return await super().keep(notification)


def test_an_agency_store_failure_asks_the_gateway_to_try_again():
    sink = FailingOnce()
    body = notification().model_dump_json().encode()
    with notification_receiver(sink) as client:
        refused = send(client, body, signed(body))
        retried = send(client, body, signed(body))

    assert refused.status_code == 503
    assert ErrorResponse.model_validate_json(refused.content).error.code is ErrorCode.UNAVAILABLE
    assert retried.status_code == 200
    assert len(sink.recent(10)) == 1


class Overlapping(NotificationLog):
    """An agency store that notices being called while it is still busy."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = 0
        self.most_busy = 0

    async def keep(self, notification: Notification) -> bool:
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        await asyncio.sleep(0.1)
        self.busy -= 1
        return await super().keep(notification)


@pytest.mark.anyio
async def test_the_agency_store_is_never_called_concurrently():
    # So a store need not guard its own duplicate check against a redelivery racing the original.
    sink = Overlapping()
    bodies = [notification(f"m-{i}").model_dump_json().encode() for i in range(3)]
    with notification_receiver(sink) as sync_client:
        async with httpx.AsyncClient(base_url=sync_client.base_url) as client:
            responses = await asyncio.gather(
                *(
                    client.post(NOTIFICATIONS_PATH, content=b, headers={"authorization": signed(b)})
                    for b in bodies
                )
            )

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sink.most_busy == 1


def test_an_oversized_notification_is_refused_before_it_is_read():
    sink = NotificationLog()
    body = notification(justification="x" * MAX_BODY_BYTES).model_dump_json().encode()
    with notification_receiver(sink) as client:
        response = send(client, body, signed(body))

    assert response.status_code == 413
    assert sink.recent(10) == []


def test_the_published_contract_lists_every_status_the_receiver_answers_with():
    # 200 and each status the tests above provoke: 400, 401, 413, 503.
    responses = openapi_document()["paths"][NOTIFICATIONS_PATH]["post"]["responses"]

    assert set(responses) == {"200", "400", "401", "413", "503"}


def test_a_receiver_without_a_verifier_is_refused_at_start_up():
    with pytest.raises(ValueError, match="verifier"):
        create_connector_app(NoRecords(), source="social_care", notifications=NotificationLog())


def test_recent_accesses_are_listed_to_the_agencys_own_host():
    sink = NotificationLog()
    body = notification().model_dump_json().encode()
    with notification_receiver(sink) as client:
        send(client, body, signed(body))
        local = client.get(RECENT_NOTIFICATIONS_PATH)

    assert local.status_code == 200
    assert [n["message_id"] for n in local.json()["notifications"]] == ["m-1"]
    assert local.json()["notifications"][0]["accessor"]["name"] == "Eddie Clinician"


@pytest.mark.anyio
async def test_recent_accesses_are_refused_to_any_other_host():
    sink = NotificationLog()
    await sink.keep(notification())
    app = create_connector_app(
        NoRecords(),
        source="social_care",
        verifier=gateway_verifier(GATEWAY_KEY.public_key()),
        notifications=sink,
    )
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://connector") as remote:
        response = await remote.get(RECENT_NOTIFICATIONS_PATH)

    assert response.status_code == 403
    assert ErrorResponse.model_validate_json(response.content).error.code is ErrorCode.FORBIDDEN
    assert "Eddie" not in response.text


@pytest.mark.anyio
async def test_a_notification_log_file_remembers_what_it_kept_across_a_restart(tmp_path):
    path = tmp_path / "notifications.jsonl"
    assert await NotificationLog(path).keep(notification("m-1")) is True

    restarted = NotificationLog(path)

    assert await restarted.keep(notification("m-1")) is False
    assert await restarted.keep(notification("m-2")) is True
    assert [n.message_id for n in NotificationLog(path).recent(10)] == ["m-2", "m-1"]
