"""Structured logs: one JSON object per line, carrying an event name and non-personal context.

Modules log with `extra={"event": ..., "context": {...}}`; the context must never hold a child's
personal data (the connector SDK and gateway only ever put codes, ids and counts there).

A line logged while a lookup runs also carries that lookup's `request_id` (the id connectors and
the audit record know it by) and, when it is being traced, its `trace_id`: the pipeline sets
`REQUEST_ID` for the lookup's task, and `LookupFilter` copies both onto each record.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

REQUEST_ID: ContextVar[str | None] = ContextVar("childlookup_request_id", default=None)
"""The request id of the lookup the current task is running, if any."""


class LookupFilter(logging.Filter):
    """Adds `request_id` and `trace_id` (None outside a lookup or a trace) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "event", "context"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Send the project's own loggers to stderr as JSON lines (uvicorn keeps its own)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LookupFilter())
    logger = logging.getLogger("childlookup")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
