"""The fan-out stage: ask every planned source at once and turn whatever happens into a status.

A slow, dead or misbehaving source must never fail the lookup or delay it past the deadline: each
source gets min(its own timeout, time left), and its failure becomes a SourceAnswer status that the
caller sees. Every request is signed for the source it goes to; an answer from a source configured
with a key is checked before it is parsed, and one that is unsigned, signed by another key or
altered is a failed source (ANSWER_NOT_TRUSTED), never data. Answers are read with a size cap and
validated strictly against the protocol.

A source whose circuit is open (gateway.breakers) is not asked: it is FAILED with CIRCUIT_OPEN at
once. A request whose connection was refused - nothing was sent - is tried once more after a short
pause, if the time left allows; nothing else is retried, since a request that reached the
connector may have been acted on.

Each source asked has a `fanout.source` span, whose `traceparent` the connector continues - unless
the caller asks outside the trace (`in_trace`): a demographic search's second round, which
shield-safe search may yet hide, must leave in the trace nothing a search for nobody lacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
from opentelemetry import trace

from connectors.protocol import (
    LOOKUP_PATH,
    MAX_ANSWER_BYTES,
    MAX_RECORDS,
    ErrorCode,
    ErrorResponse,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.trust import TrustError
from gateway import metrics, tracing
from gateway.breakers import CIRCUIT_OPEN, Admission, Breakers
from gateway.cache import AnswerCache
from gateway.config import Asked, SourceConfig
from gateway.exchange import Malformed, parsed, post_capped
from gateway.signing import AnswerVerifier, RequestSigner
from gateway.source_health import SourceHealth
from gateway.transport import ConnectorTransport
from gateway.types import (
    DEADLINE,
    AskedBecause,
    LookupContext,
    Plan,
    SourceAnswer,
    SourceStatus,
)

_MATCH_FIELDS = frozenset({FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX, FieldId.ADDRESS})
"""What the linkage model compares; requested from every source in a demographic lookup."""
_CARER_FIELDS = frozenset({FieldId.CARERS})
"""Compared too when the practitioner named a parent or carer (gateway.types.Corroboration)."""

_ERROR_STATUS = {
    ErrorCode.FORBIDDEN: SourceStatus.WITHHELD,
    ErrorCode.DEADLINE_EXCEEDED: SourceStatus.TIMED_OUT,
}

_BREAKING = frozenset(
    {"TIMEOUT", "CONNECTION_FAILED", ErrorCode.DEADLINE_EXCEEDED.value, ErrorCode.UNAVAILABLE.value}
)
"""The error codes that count towards opening a source's circuit: it did not answer in time, could
not be reached, or said it is unavailable. Any other answer, even a refusal, shows it is there."""

_CONFIGURED = (AskedBecause.CONFIGURED,)

RETRY_PAUSE_S = 0.05
"""Wait before trying a refused connection again."""
RETRY_MIN_S = 0.2
"""Time that must be left, after the pause, for the second try to be worth making."""


class FanOut:
    """Asks sources concurrently over one shared keep-alive HTTP transport."""

    def __init__(
        self,
        sources: Sequence[SourceConfig],
        transport: ConnectorTransport,
        cache: AnswerCache,
        *,
        signer: RequestSigner | None = None,
        answer_verifiers: Mapping[str, AnswerVerifier] | None = None,
        health: SourceHealth | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        """Without `breakers`, every planned source is always asked."""
        self._sources = tuple(sources)
        self._always = tuple(s for s in self._sources if s.asked is Asked.ALWAYS)
        self._by_name = {s.name: s for s in self._sources}
        self._transport = transport
        self._lookup_urls = {
            s.name: httpx.URL(str(s.url).rstrip("/") + LOOKUP_PATH) for s in self._sources
        }
        self._cache = cache
        self._signer = signer
        self._answer_verifiers = dict(answer_verifiers or {})
        self._health = health
        self._breakers = breakers or Breakers((s.name for s in self._sources), 0, 1.0)

    @tracing.stage("fanout")
    async def ask(
        self, lookup: LookupContext, plan: Plan, *, in_trace: bool = True
    ) -> tuple[SourceAnswer, ...]:
        """By the lookup's deadline, one answer per source asked on every lookup, in config order
        (NOT_ASKED where the plan left it out). Without `in_trace`, no source asked has a span,
        nor is sent a `traceparent` to continue."""
        return await self._ask(lookup, plan, self._always, in_trace)

    @tracing.stage("fanout")
    async def ask_routed(
        self, plan: Plan, asks: Sequence[tuple[LookupContext, Sequence[str]]]
    ) -> tuple[tuple[SourceAnswer, ...], ...]:
        """Per (lookup, agencies) in `asks`, one answer per agency named, in that order: the
        routing stage's choice, each agency planned by kind and asked with the identifier its
        lookup carries. All are asked at once in one `fanout` span, a `fanout.source` each, as
        the lookup's sources are: asked as several `ask`s, every one but the first would run
        outside any `fanout` span (a stage has one span under its parent, gateway.tracing)."""
        chosen = [(lookup, tuple(self._by_name[name] for name in names)) for lookup, names in asks]
        return tuple(
            await asyncio.gather(
                *(self._ask(lookup, plan, sources, True) for lookup, sources in chosen)
            )
        )

    async def _ask(
        self,
        lookup: LookupContext,
        plan: Plan,
        chosen: Sequence[SourceConfig],
        in_trace: bool,
    ) -> tuple[SourceAnswer, ...]:
        query = lookup.query
        identifiers = Identifiers(nhs_number=query.nhs_number, upn=query.upn)
        # Scoring candidates needs their demographics whatever the caller may see; the decide
        # stage, not the request, is where unreleasable fields are dropped.
        needed: frozenset[FieldId] = frozenset()
        if query.demographics is not None:
            needed = _MATCH_FIELDS
            if query.corroboration.carer_names:
                needed |= _CARER_FIELDS
        wall_deadline = _wall_clock(lookup.deadline)
        tasks = []
        for source in chosen:
            if plan.planned_as(source.name) not in plan.sources:
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
            key = self._cache.key(source.name, request, fields, subject=lookup.caller.subject)
            keep = key if lookup.keeps_answers else None
            tasks.append(self._ask_one(source, request, key, keep, lookup.deadline, in_trace))
        asked_with = (query.identified_by,)
        answers = tuple(
            replace(a, asked_with=asked_with, asked_because=_CONFIGURED) if a.sent else a
            for a in await asyncio.gather(*tasks)
        )
        if self._health is not None:
            self._health.record(answers)
        metrics.sources_answered(answers)
        return answers

    async def _ask_one(
        self,
        source: SourceConfig,
        request: LookupRequest,
        key: str | None,
        keep: str | None,
        deadline: float,
        in_trace: bool,
    ) -> SourceAnswer:
        if not in_trace:
            # Asked under no span at all: what _post would inject or note goes nowhere.
            with trace.use_span(trace.INVALID_SPAN):
                return await self._answer(source, request, key, keep, deadline)
        with tracing.source_span(source.name) as span:
            answer = await self._answer(source, request, key, keep, deadline)
            tracing.answered(span, answer)
        return answer

    async def _answer(
        self,
        source: SourceConfig,
        request: LookupRequest,
        key: str | None,
        keep: str | None,
        deadline: float,
    ) -> SourceAnswer:
        """`key` finds an answer kept for the same question; a fresh answer is kept under `keep`
        (None: not kept)."""
        cached = await self._cache.get(key)
        if cached is not None:
            status = SourceStatus.ANSWERED if cached else SourceStatus.NO_RECORD
            return SourceAnswer(source.name, status, 0.0, cached, cached=True)

        started = time.monotonic()
        budget = min(source.timeout_ms / 1000, deadline - started)
        if budget <= 0:
            return SourceAnswer(source.name, SourceStatus.TIMED_OUT, 0.0, error_code=DEADLINE)
        breaker = self._breakers[source.name]
        admission = breaker.admit()
        if admission is Admission.SKIP:
            return SourceAnswer(source.name, SourceStatus.FAILED, 0.0, error_code=CIRCUIT_OPEN)
        answer = None
        try:
            answer = await self._fetch(source, request, keep, started, budget)
        finally:
            breaker.settle(admission, None if answer is None else answer.error_code in _BREAKING)
        return answer

    async def _fetch(
        self,
        source: SourceConfig,
        request: LookupRequest,
        keep: str | None,
        started: float,
        budget: float,
    ) -> SourceAnswer:
        try:
            async with asyncio.timeout(budget):
                answer = await self._post_retrying(source, request, started + budget)
        except (TimeoutError, httpx.TimeoutException):
            return _answer(source, SourceStatus.TIMED_OUT, started, "TIMEOUT")
        except httpx.HTTPError:
            return _answer(source, SourceStatus.FAILED, started, "CONNECTION_FAILED")
        except Malformed:
            return _answer(source, SourceStatus.FAILED, started, "MALFORMED_RESPONSE")
        except TrustError:
            return _answer(source, SourceStatus.FAILED, started, "ANSWER_NOT_TRUSTED")
        if isinstance(answer, ErrorResponse):
            status = _ERROR_STATUS.get(answer.error.code, SourceStatus.FAILED)
            return _answer(source, status, started, answer.error.code.value)
        if (
            answer.request_id != request.request_id
            or answer.source != source.name
            or len(answer.records) > MAX_RECORDS
        ):
            return _answer(source, SourceStatus.FAILED, started, "MALFORMED_RESPONSE")
        records = tuple(answer.records)
        await self._cache.put(keep, records)
        status = SourceStatus.ANSWERED if records else SourceStatus.NO_RECORD
        return SourceAnswer(source.name, status, _elapsed_ms(started), records)

    async def _post_retrying(
        self, source: SourceConfig, request: LookupRequest, until: float
    ) -> LookupResponse | ErrorResponse:
        """Post; once more if the connection was refused and there is time left for it."""
        try:
            return await self._post(source, request)
        except httpx.ConnectError as error:
            if not _refused(error) or until - time.monotonic() < RETRY_PAUSE_S + RETRY_MIN_S:
                raise
        metrics.SOURCE_RETRIES.labels(source.name).inc()
        trace.get_current_span().add_event("connection refused: retrying")
        await asyncio.sleep(RETRY_PAUSE_S)
        return await self._post(source, request)

    async def _post(
        self, source: SourceConfig, request: LookupRequest
    ) -> LookupResponse | ErrorResponse:
        body = request.model_dump_json().encode()
        headers = {"content-type": "application/json"}
        if self._signer is not None:
            headers["authorization"] = self._signer.authorization(source.name, body)
        tracing.inject(headers)
        url = self._lookup_urls[source.name]
        reply = await post_capped(self._transport, url, body, headers, MAX_ANSWER_BYTES)
        trace.get_current_span().set_attribute("http.response.status_code", reply.status_code)
        verifier = self._answer_verifiers.get(source.name)
        if verifier is not None:
            await verifier.verify(reply.signature, reply.payload, source=source.name)
        return parsed(reply, LookupResponse)


def _refused(error: BaseException) -> bool:
    """True when the connection was refused (nothing listening), as opposed to a name that did not
    resolve or a TLS handshake that failed: only then may the connector come back at once."""
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def _not_asked(source: str) -> SourceAnswer:
    return SourceAnswer(source, SourceStatus.NOT_ASKED)


def _answer(source: SourceConfig, status: SourceStatus, started: float, code: str) -> SourceAnswer:
    return SourceAnswer(source.name, status, _elapsed_ms(started), error_code=code)


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _wall_clock(deadline: float) -> datetime:
    """Translate a monotonic deadline into the wall-clock time connectors understand."""
    return datetime.now(UTC) + timedelta(seconds=max(0.0, deadline - time.monotonic()))
