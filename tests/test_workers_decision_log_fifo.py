"""`childlookup serve --workers N` start-up, as an operator runs it: what the parent builds only
to check that the workers can (gateway.workers) must leave nothing that the workers, or what
reads the gateway's output, then trip over."""

from __future__ import annotations

import json
import os

from tests.processes import dev_token, graphql, wait_for
from tests.stack import eventually
from tests.test_decision_log_sinks import _FifoReader
from tests.test_workers import LOOKUP, _start, _stop_all


def test_workers_log_decisions_to_a_fifo_whose_reader_was_there_first(tmp_path, redis_prefix):
    """A decision log on a FIFO (a log shipper's pipe) read by one reader: the parent opening
    the FIFO to check it and closing it again was the FIFO's last writer going, so the reader
    got end-of-file and left, and every worker then waited for ever to open the FIFO with no
    reader - a gateway that never became ready, saying nothing."""
    fifo = tmp_path / "decisions.fifo"
    os.mkfifo(fifo)
    reader = _FifoReader(fifo)
    connector, gateway, port = _start(
        tmp_path, redis_prefix, workers=2, CHILDLOOKUP_DECISION_LOG=str(fifo)
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz", gateway).status_code == 200
        answer = graphql(port, LOOKUP, dev_token(tmp_path))
        assert answer["data"]["child"]["outcome"] == "FOUND", answer
        logged = eventually(lambda: _decisions(reader.out), timeout_s=10)
    finally:
        _stop_all(gateway, connector)
        reader.stop()
    assert logged


def _decisions(out: bytearray) -> list[str] | None:
    """The decision ids read from the FIFO so far, once there is one."""
    ids = [json.loads(line)["decision_id"] for line in bytes(out).splitlines() if line]
    return ids or None
