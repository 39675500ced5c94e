"""The fan-out stage: ask every planned source at once and turn whatever happens into a status.

A slow, dead or misbehaving source must never fail the lookup or delay it past the deadline: each
source gets min(its own timeout, time left), and its failure becomes a SourceAnswer status that the
caller sees. Every request is signed for the source it goes to; an answer from a source configured
with a key is checked before it is parsed, and one that is unsigned, signed by another key or
altered is a failed source (ANSWER_NOT_TRUSTED), never data. Answers are read with a size cap and
validated strictly against the protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import ValidationError

from connectors.protocol import (
    LOOKUP_PATH,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.trust import SIGNATURE_HEADER, TrustError
from gateway.cache import AnswerCache
from gateway.config import SourceConfig
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.source_health import SourceHealth
from gateway.types import LookupContext, Plan, SourceAnswer, SourceStatus

MAX_ANSWER_BYTES = 2 * 1024 * 1024

_MATCH_FIELDS = frozenset({FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX, FieldId.ADDRESS})
"""What the linkage model compares; requested from every source in a demographic lookup."""

_ERROR_STATUS = {
    ErrorCode.FORBIDDEN: SourceStatus.WITHHELD,
    ErrorCode.DEADLINE_EXCEEDED: SourceStatus.TIMED_OUT,
}


class _Malformed(Exception):
    """The source answered, but not in protocol v1."""


class FanOut:
    """Asks sources concurrently over one shared keep-alive HTTP client."""

    def __init__(
        self,
        sources: Sequence[SourceConfig],
        client: httpx.AsyncClient,
        cache: AnswerCache,
        *,
        signer: RequestSigner | None = None,
        answer_verifiers: Mapping[str, AnswerVerifier] | None = None,
        health: SourceHealth | None = None,
    ) -> None:
        self._sources = tuple(sources)
        self._client = client
        self._cache = cache
        self._signer = signer
        self._answer_verifiers = dict(answer_verifiers or {})
        self._health = health

    async def ask(self, lookup: LookupContext, plan: Plan) -> tuple[SourceAnswer, ...]:
        """One answer per configured source, in config order, by the lookup's deadline."""
        query = lookup.query
        identifiers = Identifiers(nhs_number=query.nhs_number, upn=query.upn)
        # Scoring candidates needs their demographics whatever the caller may see; the decide
        # stage, not the request, is where unreleasable fields are dropped.
        needed = _MATCH_FIELDS if query.demographics is not None else frozenset()
        wall_deadline = _wall_clock(lookup.deadline)
        tasks = []
        for source in self._sources:
            if source.name not in plan.sources:
                tasks.append(_not_asked(source.name))
                continue
            fields = (plan.fields | plan.obligation_fields | needed) & frozenset(source.provides)
            request = LookupRequest(
                request_id=lookup.request_id,
                deadline=wall_deadline,
                purpose=query.purpose.value,
                caller=lookup.caller.protocol,
                identifiers=identifiers,
                demographics=query.demographics,
                fields=sorted(fields),
            )
            tasks.append(self._ask_one(source, request, fields, lookup.deadline))
        answers = tuple(await asyncio.gather(*tasks))
        if self._health is not None:
            self._health.record(answers)
        return answers

    async def _ask_one(
        self,
        source: SourceConfig,
        request: LookupRequest,
        fields: frozenset[FieldId],
        deadline: float,
    ) -> SourceAnswer:
        key = self._cache.key(source.name, request, fields)
        cached = await self._cache.get(key)
        if cached is not None:
            status = SourceStatus.ANSWERED if cached else SourceStatus.NO_RECORD
            return SourceAnswer(source.name, status, 0.0, cached, cached=True)

        started = time.monotonic()
        budget = min(source.timeout_ms / 1000, deadline - started)
        if budget <= 0:
            return SourceAnswer(source.name, SourceStatus.TIMED_OUT, 0.0, error_code="DEADLINE")
        try:
            async with asyncio.timeout(budget):
                answer = await self._post(source, request)
        except (TimeoutError, httpx.TimeoutException):
            return _answer(source, SourceStatus.TIMED_OUT, started, "TIMEOUT")
        except httpx.HTTPError:
            return _answer(source, SourceStatus.FAILED, started, "CONNECTION_FAILED")
        except _Malformed:
            return _answer(source, SourceStatus.FAILED, started, "MALFORMED_RESPONSE")
        except TrustError:
            return _answer(source, SourceStatus.FAILED, started, "ANSWER_NOT_TRUSTED")
        if isinstance(answer, ErrorResponse):
            status = _ERROR_STATUS.get(answer.error.code, SourceStatus.FAILED)
            return _answer(source, status, started, answer.error.code.value)
        if answer.request_id != request.request_id or answer.source != source.name:
            return _answer(source, SourceStatus.FAILED, started, "MALFORMED_RESPONSE")
        records = tuple(answer.records)
        await self._cache.put(key, records)
        status = SourceStatus.ANSWERED if records else SourceStatus.NO_RECORD
        return SourceAnswer(source.name, status, _elapsed_ms(started), records)

    async def _post(
        self, source: SourceConfig, request: LookupRequest
    ) -> LookupResponse | ErrorResponse:
        url = str(source.url).rstrip("/") + LOOKUP_PATH
        body = request.model_dump_json().encode()
        headers = {"content-type": "application/json"}
        if self._signer is not None:
            headers["authorization"] = self._signer.authorization(source.name, body)
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _Malformed("answer too large")
                chunks.append(chunk)
            status_code = response.status_code
            signature = response.headers.get(SIGNATURE_HEADER)
        payload = b"".join(chunks)
        verifier = self._answer_verifiers.get(source.name)
        if verifier is not None:
            await verifier.verify(signature, payload, source=source.name)
        try:
            if status_code == 200:
                return LookupResponse.model_validate_json(payload)
            return ErrorResponse.model_validate_json(payload)
        except ValidationError as exc:
            raise _Malformed(str(status_code)) from exc


async def _not_asked(source: str) -> SourceAnswer:
    return SourceAnswer(source, SourceStatus.NOT_ASKED)


def _answer(source: SourceConfig, status: SourceStatus, started: float, code: str) -> SourceAnswer:
    return SourceAnswer(source.name, status, _elapsed_ms(started), error_code=code)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _wall_clock(deadline: float) -> datetime:
    """Translate a monotonic deadline into the wall-clock time connectors understand."""
    return datetime.now(UTC) + timedelta(seconds=max(0.0, deadline - time.monotonic()))
