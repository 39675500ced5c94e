"""The gateway's side of the locator: which agencies hold a record about this child.

The gateway turns the child's NHS number and UPN into keyed pseudonyms (connectors.locator) under
every key version it holds, so the locator learns neither, and asks with a request signed like a
connector request. The answer is signed by the locator and checked before it is read: a forged
"nobody else holds this child" would silently narrow the answer. Whatever goes wrong becomes the
locator's source status - never an error that stops the lookup, never a silent empty answer: a
locator that did not answer makes the lookup incomplete (gateway.routing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import httpx

from connectors.locator import (
    LOCATE_PATH,
    MAX_LOCATE,
    LocateRequest,
    LocateResponse,
    PseudonymKey,
    PseudonymRef,
    pseudonym,
)
from connectors.protocol import ErrorResponse
from connectors.trust import TrustError
from gateway import tracing
from gateway.exchange import Malformed, parsed, post_capped
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.transport import ConnectorTransport
from gateway.types import (
    DEADLINE,
    IDENTIFIER_FIELDS,
    LOCATOR_SOURCE,
    AskedBecause,
    IdentifiedBy,
    LookupContext,
    SourceAnswer,
    SourceStatus,
)

_logger = logging.getLogger("childlookup.routing")

MAX_ANSWER_BYTES = 256 * 1024
"""A locator answer names a handful of agencies; far more than that is not an answer."""


@dataclass(frozen=True)
class Located:
    """What the locator said: per agency, the identifiers it holds a record under; and the
    locator's status for the lookup's sources."""

    agencies: Mapping[str, frozenset[IdentifiedBy]]
    answer: SourceAnswer
    asked: frozenset[IdentifiedBy] = field(default_factory=frozenset)

    def joined(self, other: Located) -> Located:
        """Two questions to the locator as one: every agency named, and the worse status."""
        agencies = {name: set(kinds) for name, kinds in self.agencies.items()}
        for name, kinds in other.agencies.items():
            agencies.setdefault(name, set()).update(kinds)
        failed = next((a for a in (other.answer, self.answer) if not a.answered), None)
        if failed is None:
            status, code = (SourceStatus.ANSWERED if agencies else SourceStatus.NO_RECORD), None
        else:
            status, code = failed.status, failed.error_code
        return Located(
            agencies={name: frozenset(kinds) for name, kinds in agencies.items()},
            answer=SourceAnswer(
                source=LOCATOR_SOURCE,
                status=status,
                latency_ms=_sum(self.answer.latency_ms, other.answer.latency_ms),
                error_code=code,
                asked_with=self.answer.asked_with + other.answer.asked_with,
                asked_because=_CONFIGURED,
            ),
            asked=self.asked | other.asked,
        )


class LocatorClient:
    """Asks the locator, over the gateway's shared keep-alive transport."""

    def __init__(
        self,
        url: str,
        transport: ConnectorTransport,
        signer: RequestSigner,
        verifier: AnswerVerifier,
        keys: Sequence[PseudonymKey],
        *,
        locator_id: str,
        timeout_ms: int,
    ) -> None:
        if not keys:
            raise ValueError("the locator needs at least one pseudonym key")
        if len(keys) > MAX_LOCATE:
            raise ValueError(
                f"the locator is asked under at most {MAX_LOCATE} pseudonym key versions at once;"
                f" the key file lists {len(keys)}: remove the retired ones"
            )
        self._url = httpx.URL(url.rstrip("/") + LOCATE_PATH)
        self._transport = transport
        self._signer = signer
        self._verifier = verifier
        self._keys = tuple(keys)
        self._locator_id = locator_id
        self._timeout_s = timeout_ms / 1000

    @tracing.stage("locate")
    async def locate(
        self, lookup: LookupContext, identifiers: Mapping[IdentifiedBy, str]
    ) -> Located:
        """The agencies the locator names for any of `identifiers`, by the lookup's deadline."""
        started = time.monotonic()
        asked = frozenset(identifiers)
        budget = min(self._timeout_s, lookup.deadline - started)
        if budget <= 0:
            return _failed(SourceStatus.TIMED_OUT, DEADLINE, started, asked)
        # One question per identifier, under every key version: a question carries at most
        # MAX_LOCATE pseudonyms (the constructor bounds the keys), and each then names the
        # current version, so the locator answers it rather than refusing a question under none
        # it searches.
        questions = [
            (
                LocateRequest(
                    request_id=lookup.request_id,
                    pseudonyms=[PseudonymRef(key_version=v, value=p) for p, (v, _) in refs.items()],
                ),
                refs,
            )
            for refs in (
                {
                    pseudonym(key, IDENTIFIER_FIELDS[kind], value): (key.version, kind)
                    for key in self._keys
                }
                for kind, value in identifiers.items()
            )
        ]
        try:
            async with asyncio.timeout(budget):
                replies = await asyncio.gather(
                    *(self._post(request) for request, _ in questions), return_exceptions=True
                )
        except TimeoutError:
            return _failed(SourceStatus.TIMED_OUT, "TIMEOUT", started, asked)
        agencies: dict[str, set[IdentifiedBy]] = {}
        for (request, refs), answer in zip(questions, replies, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                return _failed(*_failure(answer), started, asked)
            if isinstance(answer, ErrorResponse):
                # Its message is for the operators: a gateway whose pseudonym keys the locator no
                # longer searches (a rotation missed) is refused on every lookup until fixed.
                _logger.warning(
                    "the locator refused the question",
                    extra={
                        "event": "locator_refused",
                        "context": {
                            "code": answer.error.code.value,
                            "message": answer.error.message,
                        },
                    },
                )
                return _failed(SourceStatus.FAILED, answer.error.code.value, started, asked)
            if answer.request_id != request.request_id:
                return _failed(SourceStatus.FAILED, "MALFORMED_RESPONSE", started, asked)
            for holder in answer.holders:
                ref = refs.get(holder.value)
                if ref is None or ref[0] != holder.key_version:
                    # Not something this question asked about: a locator answering other
                    # questions than ours may not have answered ours ("nobody holds" would be a
                    # guess).
                    return _failed(SourceStatus.FAILED, "MALFORMED_RESPONSE", started, asked)
                for agency in holder.agencies:
                    agencies.setdefault(agency, set()).add(ref[1])
        status = SourceStatus.ANSWERED if agencies else SourceStatus.NO_RECORD
        return Located(
            agencies={name: frozenset(kinds) for name, kinds in agencies.items()},
            answer=SourceAnswer(
                LOCATOR_SOURCE,
                status,
                _elapsed_ms(started),
                asked_with=_asked_with(asked),
                asked_because=_CONFIGURED,
            ),
            asked=asked,
        )

    async def _post(self, request: LocateRequest) -> LocateResponse | ErrorResponse:
        body = request.model_dump_json().encode()
        headers = {
            "content-type": "application/json",
            "authorization": self._signer.authorization(self._locator_id, body),
        }
        tracing.inject(headers)
        reply = await post_capped(self._transport, self._url, body, headers, MAX_ANSWER_BYTES)
        await self._verifier.verify(reply.signature, reply.payload, source=self._locator_id)
        return parsed(reply, LocateResponse)


_CONFIGURED = (AskedBecause.CONFIGURED,)


def _failure(error: Exception) -> tuple[SourceStatus, str]:
    """The locator's status and failure code for what went wrong asking it; raises what no
    answer explains (a fault in the gateway itself)."""
    if isinstance(error, (TimeoutError, httpx.TimeoutException)):
        return SourceStatus.TIMED_OUT, "TIMEOUT"
    if isinstance(error, httpx.HTTPError):
        return SourceStatus.FAILED, "CONNECTION_FAILED"
    if isinstance(error, Malformed):
        return SourceStatus.FAILED, "MALFORMED_RESPONSE"
    if isinstance(error, TrustError):
        return SourceStatus.FAILED, "ANSWER_NOT_TRUSTED"
    raise error


def _asked_with(asked: frozenset[IdentifiedBy]) -> tuple[IdentifiedBy, ...]:
    return tuple(kind for kind in IDENTIFIER_FIELDS if kind in asked)


def _failed(
    status: SourceStatus, code: str, started: float, asked: frozenset[IdentifiedBy]
) -> Located:
    answer = SourceAnswer(LOCATOR_SOURCE, status, _elapsed_ms(started), error_code=code)
    if answer.sent:  # not for want of time: then no identifier went to the locator
        answer = replace(answer, asked_with=_asked_with(asked), asked_because=_CONFIGURED)
    return Located(agencies={}, answer=answer, asked=asked)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _sum(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return first if second is None else second
    return round(first + second, 2)
