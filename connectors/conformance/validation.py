"""Checks that the connector reads only protocol v1 lookups, and not after their deadline: a
malformed request is BAD_REQUEST, another version UNSUPPORTED_VERSION, and a lookup whose deadline
has passed DEADLINE_EXCEEDED, never records.

Every request here is correctly signed, so a connector that checks signatures first still gets
as far as reading it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from connectors.conformance.results import Outcome, Verdict
from connectors.conformance.session import Check, Session, expect_refusal
from connectors.protocol import ErrorCode


def _plain_document(session: Session) -> dict[str, Any]:
    return session.by_identifier(session.dataset.plain).model_dump(mode="json")


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


async def _first_failure(
    session: Session, code: ErrorCode, cases: list[tuple[str, bytes]]
) -> Verdict:
    for what, body in cases:
        verdict = expect_refusal(await session.client.post_signed(body), code, what)
        if verdict.outcome is not Outcome.PASS:
            return verdict
    return Verdict.passed()


async def refuses_malformed(session: Session) -> Verdict:
    plain = _plain_document(session)
    naive = plain | {"deadline": plain["deadline"].replace("Z", "").split("+")[0]}
    return await _first_failure(
        session,
        ErrorCode.BAD_REQUEST,
        [
            ("a body that is not JSON", b'{"protocol_version": "1", "request_id": '),
            ("a request with an unknown member", _json(plain | {"colour": "blue"})),
            ("a request without fields", _json({k: v for k, v in plain.items() if k != "fields"})),
            ("a deadline without a UTC offset", _json(naive)),
        ],
    )


async def refuses_unsupported_version(session: Session) -> Verdict:
    plain = _plain_document(session)
    version_2 = plain | {"protocol_version": "2"}
    return await _first_failure(
        session,
        ErrorCode.UNSUPPORTED_VERSION,
        [
            ("a protocol version 2 request", _json(version_2)),
            ("a version 2 request with a member v1 lacks", _json(version_2 | {"colour": "blue"})),
        ],
    )


async def refuses_passed_deadline(session: Session) -> Verdict:
    request = session.by_identifier(session.dataset.plain)
    late = request.model_copy(update={"deadline": datetime.now(UTC) - timedelta(seconds=1)})
    exchange = await session.client.lookup(late)
    return expect_refusal(
        exchange, ErrorCode.DEADLINE_EXCEEDED, "a lookup whose deadline had passed"
    )


CHECKS: Final = (
    Check("refuses_malformed", refuses_malformed),
    Check("refuses_unsupported_version", refuses_unsupported_version),
    Check("refuses_passed_deadline", refuses_passed_deadline),
)
