"""Checks that the connector reads only requests the gateway signed - for it, just now, over these
exact bytes, and only once - and refuses every other with 401 UNAUTHENTICATED.

Each sends a lookup of the plain child that a lenient connector would answer, so a connector that
does not check gets caught answering it.
"""

from __future__ import annotations

import time
from typing import Final

from connectors.conformance.client import encoded
from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session, expect_refusal
from connectors.protocol import ErrorCode
from connectors.trust import TOKEN_TTL_S

_REFUSED: Final = ErrorCode.UNAUTHENTICATED


def _plain_body(session: Session) -> bytes:
    return encoded(session.by_identifier(session.dataset.plain))


async def refuses_unsigned(session: Session) -> Verdict:
    exchange = await session.client.post(_plain_body(session), None)
    return expect_refusal(exchange, _REFUSED, "a request with no Authorization header")


async def refuses_replayed(session: Session) -> Verdict:
    body = _plain_body(session)
    authorization = session.client.identity.authorization(body, audience=session.source)
    first = await session.client.post(body, authorization)
    if first.status != 200:
        return Verdict.failed(
            f"refused a correctly signed request ({first.describe()}), so a replay of it "
            "cannot be told apart"
        )
    replay = await session.client.post(body, authorization)
    return expect_refusal(replay, _REFUSED, "the same signed request (same jti) a second time")


async def refuses_expired(session: Session) -> Verdict:
    body = _plain_body(session)
    issued = int(time.time()) - 2 * TOKEN_TTL_S  # expired TOKEN_TTL_S ago, far past any leeway
    authorization = session.client.identity.authorization(
        body, audience=session.source, issued_at=issued
    )
    exchange = await session.client.post(body, authorization)
    return expect_refusal(exchange, _REFUSED, f"a token that expired {TOKEN_TTL_S} s ago")


async def refuses_wrong_audience(session: Session) -> Verdict:
    body = _plain_body(session)
    audience = f"not-{session.source}"
    authorization = session.client.identity.authorization(body, audience=audience)
    exchange = await session.client.post(body, authorization)
    return expect_refusal(exchange, _REFUSED, f"a request signed for audience {audience!r}")


async def refuses_wrong_issuer(session: Session) -> Verdict:
    body = _plain_body(session)
    issuer = f"not-{session.client.identity.issuer}"
    impostor = session.client.identity.impostor(issuer=issuer)
    exchange = await session.client.post(
        body, impostor.authorization(body, audience=session.source)
    )
    return expect_refusal(exchange, _REFUSED, f"a request from issuer {issuer!r}")


async def refuses_unknown_key(session: Session) -> Verdict:
    body = _plain_body(session)
    impostor = session.client.identity.impostor()
    exchange = await session.client.post(
        body, impostor.authorization(body, audience=session.source)
    )
    return expect_refusal(
        exchange, _REFUSED, "a request signed with a key the gateway does not publish"
    )


async def refuses_tampered_body(session: Session) -> Verdict:
    signed = _plain_body(session)
    sent = encoded(session.by_identifier(session.dataset.restricted))
    authorization = session.client.identity.authorization(signed, audience=session.source)
    exchange = await session.client.post(sent, authorization)
    return expect_refusal(exchange, _REFUSED, "a body other than the one signed (digest mismatch)")


CHECKS: Final = (
    Check("refuses_unsigned", refuses_unsigned),
    Check("refuses_replayed", refuses_replayed),
    Check("refuses_expired", refuses_expired),
    Check("refuses_wrong_audience", refuses_wrong_audience),
    Check("refuses_wrong_issuer", refuses_wrong_issuer),
    Check("refuses_unknown_key", refuses_unknown_key),
    Check("refuses_tampered_body", refuses_tampered_body),
)
