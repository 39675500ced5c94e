"""Spans captured in tests, on the process's one OpenTelemetry tracer provider."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.tracing import install


def span_exporter() -> InMemorySpanExporter:
    """A new in-memory exporter receiving every span finished from now on. OpenTelemetry allows
    one SDK provider per process, and another test module may have installed it first: it is
    installed here only if none has been, and each caller gets its own exporter on it."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        install(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
