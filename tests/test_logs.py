"""JSON log lines, and the request id of the lookup being run on every line logged during it."""

import io
import json
import logging

from connectors.logs import JsonFormatter
from connectors.serving import free_port
from gateway import logs
from gateway.demo import reference_source
from tests.factories import NHS, health_record
from tests.stack import reference_connectors, running_gateway


def _line(logger: logging.Logger, stream: io.StringIO) -> dict[str, object]:
    logger.warning("something", extra={"event": "thing", "context": {"count": 1}})
    line: dict[str, object] = json.loads(stream.getvalue().splitlines()[-1])
    return line


def test_a_line_logged_during_a_lookup_carries_its_request_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(logs.LookupFilter())
    logger = logging.getLogger("test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        outside = _line(logger, stream)
        token = logs.REQUEST_ID.set("req-42")
        try:
            inside = _line(logger, stream)
        finally:
            logs.REQUEST_ID.reset(token)
    finally:
        logger.removeHandler(handler)
    assert "request_id" not in outside
    assert inside["request_id"] == "req-42"
    assert inside["event"] == "thing"
    assert inside["context"] == {"count": 1}


def test_the_gateways_own_lines_during_a_lookup_carry_its_request_id(tmp_path, capsys):
    logs.configure()
    dead = reference_source("education", f"http://127.0.0.1:{free_port()}")
    with (
        reference_connectors(tmp_path, {"health": [health_record()]}) as sources,
        running_gateway(tmp_path, [*sources, dead], circuit_failures=1) as gateway,
    ):
        answer = gateway.lookup("social_worker", NHS)["data"]["child"]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    (opened,) = [line for line in lines if line.get("event") == "circuit_open"]
    assert opened["request_id"] == answer["requestId"]
    assert opened["context"] == {"source": "education", "failures": 1}
