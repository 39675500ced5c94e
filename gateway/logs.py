"""Structured logs: one JSON object per line, carrying an event name and non-personal context.

Modules log with `extra={"event": ..., "context": {...}}`; the context must never hold a child's
personal data (the connector SDK and gateway only ever put codes, ids and counts there).
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
        for key in ("event", "context"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Send the project's own loggers to stderr as JSON lines (uvicorn keeps its own)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("childlookup")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
