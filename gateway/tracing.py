"""Traces of lookups (OpenTelemetry): one span per stage under one span per lookup, continued by
the connectors the lookup asks.

    lookup
      admit, plan, fanout (one fanout.source per source asked), match, shield_safe, decide,
      merge, audit

Every request to a connector carries the W3C `traceparent` of its `fanout.source` span (the
request's signature covers the body, not this header), and the connector SDK continues it with a
server span, so one trace shows where a slow lookup spent its time, agency by agency.

`CHILDLOOKUP_TRACING` chooses where spans go: `off` (the default: no tracer provider is installed
and spans cost next to nothing), `console` (JSON to stderr, for development) or `otlp` (OTLP over
HTTP, configured by the standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
- default http://localhost:4318 - and the other OTEL_EXPORTER_OTLP_* variables; sampling by
OTEL_TRACES_SAMPLER). A process installs one provider, the first time the app starts.

Span attributes are ids, codes and configured names only: the request id, purpose, the way the
child was identified (not the identifier), the caller's role, policy revision and decision ids,
the lookup's outcome and sources' statuses. Never a child's details, a practitioner's name or
subject, or an organisation; no counts of records or withheld fields either, which for a hidden
or shielded child would say more than the outcome does. Exceptions are not recorded on spans (a
message can quote what was sent): a failed span's status names the error code or exception type
only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.config import Tracing
from gateway.errors import GatewayError
from gateway.types import LookupContext, SourceAnswer

SERVICE: str = "childlookup-gateway"

_tracer = trace.get_tracer("childlookup.gateway")
_installed: TracerProvider | None = None

F = TypeVar("F", bound=Callable[..., Any])
Describe = Callable[[Any], Mapping[str, AttributeValue]]


def configure(setting: Tracing) -> None:
    """Install this process's tracer provider for `setting`; once per process, and not at all
    when tracing is off (another provider, such as a test's, is then left in place)."""
    if setting is Tracing.OFF or _installed is not None:
        return
    install(tracer_provider(setting))


def install(provider: TracerProvider) -> None:
    """Make `provider` this process's tracer provider (a test's, or configure's). Spans are made
    only once one is installed here: every stage asks, and asking OpenTelemetry whether some
    provider is set costs ~1 us a time (it looks the environment up for one named there)."""
    global _installed
    _installed = provider
    trace.set_tracer_provider(provider)


def tracer_provider(setting: Tracing) -> TracerProvider:
    """A provider batching spans to the console or to an OTLP/HTTP collector."""
    exporter: SpanExporter
    if setting is Tracing.OTLP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def flush() -> None:
    """Export what is buffered (the app stopping); the provider itself shuts down at exit."""
    if _installed is not None:
        _installed.force_flush(timeout_millis=5_000)


_NO_SPAN: contextlib.AbstractContextManager[Span] = contextlib.nullcontext(trace.INVALID_SPAN)
"""A span with tracing off: nothing started, one shared by every block (it holds no state)."""


def _tracing() -> bool:
    return _installed is not None


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A span current for the block; an exception marks it failed by code or type only. With no
    tracer provider installed (tracing off) nothing is started or made current: the API's
    no-op spans still cost a context switch each, ~13 per lookup."""
    if not _tracing():
        return _NO_SPAN
    return _current_span(name, kind, attributes)


@contextlib.contextmanager
def _current_span(
    name: str, kind: SpanKind, attributes: Mapping[str, AttributeValue] | None
) -> Iterator[Span]:
    with _tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.set_status(Status(StatusCode.ERROR, _error_name(error)))
            raise


_SPANNED: ContextVar[set[tuple[int, str]] | None] = ContextVar(
    "childlookup_stages_spanned", default=None
)
"""The stages given a span so far in the lookup being traced, each under the span it ran in."""


def _spanned_already(name: str) -> bool:
    """Whether stage `name` already has a span beside the one it would have now (the same
    parent, in the same lookup): a lookup has one span per stage. A stage run again there - the
    release decided a second time for the flags of a child shield-safe search hid - runs inside
    the first's parent, so the trace of a search that reached a hidden child has the shape of one
    that found nobody."""
    spanned = _SPANNED.get()
    if spanned is None:
        return False
    key = (trace.get_current_span().get_span_context().span_id, name)
    if key in spanned:
        return True
    spanned.add(key)
    return False


def stage(name: str, describe: Describe | None = None) -> Callable[[F], F]:
    """Run a pipeline stage (sync or async) in a span named `name`, once under its parent in a
    lookup (`_spanned_already`); `describe` turns its result into attributes (ids and codes, never
    data). With tracing off the stage just runs: entering even an empty span costs ~2 us, and a
    lookup runs about ten stages."""

    def decorate(run: F) -> F:
        if inspect.iscoroutinefunction(run):

            @functools.wraps(run)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if not _tracing() or _spanned_already(name):
                    return await run(*args, **kwargs)
                with span(name) as current:
                    result = await run(*args, **kwargs)
                    if describe is not None:
                        current.set_attributes(describe(result))
                    return result

            return cast(F, run_async)

        @functools.wraps(run)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            if not _tracing() or _spanned_already(name):
                return run(*args, **kwargs)
            with span(name) as current:
                result = run(*args, **kwargs)
                if describe is not None:
                    current.set_attributes(describe(result))
                return result

        return cast(F, run_sync)

    return decorate


def lookup_span(lookup: LookupContext) -> contextlib.AbstractContextManager[Span]:
    if not _tracing():
        return _NO_SPAN
    return _lookup_span(
        {
            "childlookup.request_id": lookup.request_id,
            "childlookup.purpose": lookup.query.purpose.value,
            "childlookup.identified_by": lookup.query.identified_by.value,
            "childlookup.caller.role": lookup.caller.role,
            "childlookup.policy_revision": lookup.policy_revision,
        }
    )


@contextlib.contextmanager
def _lookup_span(attributes: Mapping[str, AttributeValue]) -> Iterator[Span]:
    spanned = _SPANNED.set(set())
    try:
        with span("lookup", attributes=attributes) as current:
            yield current
    finally:
        _SPANNED.reset(spanned)


def source_span(source: str) -> contextlib.AbstractContextManager[Span]:
    """One source asked; the connector's server span continues it (see `inject`)."""
    return span("fanout.source", kind=SpanKind.CLIENT, attributes={"childlookup.source": source})


def answered(current: Span, answer: SourceAnswer) -> None:
    attributes: dict[str, AttributeValue] = {
        "childlookup.source.status": answer.status.value,
        "childlookup.source.cached": answer.cached,
    }
    if answer.error_code is not None:
        attributes["childlookup.source.error_code"] = answer.error_code
    current.set_attributes(attributes)
    if not answer.answered:
        current.set_status(Status(StatusCode.ERROR, answer.error_code or answer.status.value))


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to an outgoing request."""
    propagate.inject(headers)


def _error_name(error: BaseException) -> str:
    if isinstance(error, GatewayError):
        return error.code.value
    return type(error).__name__
