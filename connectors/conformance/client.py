"""The kit's side of the wire: lookups sent as a gateway sends them (or deliberately not), and
what came back, read strictly against protocol v1."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
from pydantic import ValidationError

from connectors.bounded_reads import AnswerTooLarge, read_answer
from connectors.conformance.identity import KitIdentity
from connectors.protocol import (
    LOOKUP_PATH,
    MAX_ANSWER_BYTES,
    Caller,
    Demographics,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.trust import SIGNATURE_HEADER

PURPOSE: Final = "SAFEGUARDING_ENQUIRY"
CALLER: Final = Caller(role="safeguarding_lead", organisation="CONFORMANCE")
DEADLINE_S: Final = 5.0


class Nonconformance(Exception):
    """The connector answered, but not as the protocol says; the message says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Exchange:
    """One lookup sent to the connector, and its answer as received."""

    status: int
    body: bytes
    signature: str | None
    elapsed_ms: float

    def describe(self) -> str:
        """`HTTP 401 UNAUTHENTICATED`, or `HTTP 200` / `HTTP 500 (not an ErrorResponse)`."""
        if self.status == 200:
            return "HTTP 200"
        error = self.error()
        code = "(not an ErrorResponse)" if error is None else error.error.code.value
        return f"HTTP {self.status} {code}"

    def error(self) -> ErrorResponse | None:
        """The body read as an ErrorResponse, or None when it is not one."""
        try:
            return ErrorResponse.model_validate_json(self.body)
        except ValidationError:
            return None

    def answer(self, request: LookupRequest, source: str) -> LookupResponse:
        """The body read as the answer to `request` from `source`; raises Nonconformance when it
        is a refusal, is not a LookupResponse, or names another request or source."""
        if self.status != 200:
            raise Nonconformance(f"expected an answer, got {self.describe()}")
        try:
            answer = LookupResponse.model_validate_json(self.body)
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise Nonconformance(
                f"the answer is not a LookupResponse ({where}: {first['msg']})"
            ) from None
        if answer.request_id != request.request_id:
            raise Nonconformance("the answer does not echo the request_id")
        if answer.source != source:
            raise Nonconformance(f"the answer names source {answer.source!r}, not {source!r}")
        return answer


def lookup_request(
    *,
    fields: Collection[FieldId],
    identifiers: Identifiers | None = None,
    demographics: Demographics | None = None,
    deadline_in_s: float = DEADLINE_S,
) -> LookupRequest:
    """A lookup as the gateway builds one, under a fresh request id."""
    return LookupRequest(
        request_id=uuid.uuid4().hex,
        deadline=datetime.now(UTC) + timedelta(seconds=deadline_in_s),
        purpose=PURPOSE,
        caller=CALLER,
        identifiers=identifiers or Identifiers(),
        demographics=demographics,
        fields=sorted(fields),
    )


def encoded(request: LookupRequest) -> bytes:
    return request.model_dump_json().encode()


class ConnectorClient:
    """Posts lookups to one connector as `identity` would, and keeps every exchange so that a
    later check can review all the errors the run provoked."""

    def __init__(
        self, http: httpx.AsyncClient, identity: KitIdentity, audience: str, *, timeout_s: float
    ) -> None:
        """Each exchange bounded whole by `timeout_s` - a connector dripping a byte now and then
        would otherwise hold the kit for ever, each read within the client's timeout - and its
        answer by what the gateway reads (MAX_ANSWER_BYTES)."""
        self._http = http
        self._timeout_s = timeout_s
        self.identity = identity
        self.audience = audience
        self.exchanges: list[Exchange] = []

    async def lookup(self, request: LookupRequest) -> Exchange:
        """Send `request` signed, as the gateway would."""
        return await self.post_signed(encoded(request))

    async def post_signed(self, body: bytes) -> Exchange:
        """Send `body`, whatever it holds, correctly signed for this connector."""
        return await self.post(body, self.identity.authorization(body, audience=self.audience))

    async def post(self, body: bytes, authorization: str | None) -> Exchange:
        """Send `body` as a lookup with exactly this Authorization header (none when None)."""
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization
        started = time.perf_counter()
        try:
            response, answer = await read_answer(
                self._http,
                "POST",
                LOOKUP_PATH,
                max_bytes=MAX_ANSWER_BYTES,
                within_s=self._timeout_s,
                content=body,
                headers=headers,
            )
        except AnswerTooLarge as error:
            raise Nonconformance(f"{error}, more than the gateway reads") from None
        exchange = Exchange(
            status=response.status_code,
            body=answer,
            signature=response.headers.get(SIGNATURE_HEADER),
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
        self.exchanges.append(exchange)
        return exchange
