"""The gateway's structured logs: `connectors.logs`' JSON lines, with the lookup's ids on each.

A line logged while a lookup runs also carries that lookup's `request_id` (the id connectors and
the audit record know it by) and, when it is being traced, its `trace_id`: the pipeline sets
`REQUEST_ID` for the lookup's task, and `LookupFilter` copies both onto each record.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from opentelemetry import trace

from connectors import logs

REQUEST_ID: ContextVar[str | None] = ContextVar("childlookup_request_id", default=None)
"""The request id of the lookup the current task is running, if any."""


class LookupFilter(logging.Filter):
    """Adds `request_id` and `trace_id` (None outside a lookup or a trace) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        return True


def configure(level: str = "INFO") -> None:
    """Send the project's own loggers to stderr as JSON lines (uvicorn keeps its own), each line
    with the lookup's request and trace ids."""
    logs.configure(level, LookupFilter())
