"""Structured logs: one JSON object per line, carrying an event name and non-personal context.

Modules log with `extra={"event": ..., "context": {...}}`; the context must never hold a child's
personal data (the connector SDK and gateway only ever put codes, ids and counts there). The
formatter lives in the SDK so a connector installed without the gateway logs the same lines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


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


def configure(level: str = "INFO", *filters: logging.Filter) -> None:
    """Send the project's own loggers to stderr as JSON lines (uvicorn keeps its own); each of
    `filters` may add fields to every record first."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for log_filter in filters:
        handler.addFilter(log_filter)
    # The lines carry no source location, thread or process, so they are not gathered for each
    # record (the logging HOWTO's "Optimization"): finding the caller's frame alone was a third
    # of a record's cost, and a connector writes one record per request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger("childlookup")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def log_event(logger: logging.Logger, level: int, event: str, **context: object) -> None:
    """Log `event` with `context` on the record for the JSON formatter, and repeated as key=value
    in the message for a plain one. Callers pass nothing about a child: no identifiers, names or
    field values, only request ids, file names, counts, codes and timings."""
    logger.log(
        level,
        "%s %s",
        event,
        " ".join(f"{key}={value}" for key, value in context.items()),
        extra={"event": event, "context": context},
    )
