"""When decision lines reach the log: together at the end of the event loop's round that logged
them, in order, before any later step of the lookups; at once where no loop runs."""

import asyncio
import json

import pytest
from pydantic import BaseModel, ConfigDict

from gateway.policy import DecisionLog


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True)
    n: int


class _Sink:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)


@pytest.mark.anyio
async def test_one_rounds_decisions_are_written_in_one_write_in_order_before_the_next_round():
    sink = _Sink()
    log = DecisionLog(sink, instance="t")
    ids = [log.record("childlookup/plan", "rev-1", _Line(n=n), _Line(n=n)) for n in range(3)]
    await asyncio.sleep(0)  # the next round: whatever a lookup does after deciding runs here

    assert len(sink.writes) == 1
    lines = [json.loads(line) for line in sink.writes[0].splitlines()]
    assert [line["decision_id"] for line in lines] == ids
    assert [line["input"]["n"] for line in lines] == [0, 1, 2]


@pytest.mark.anyio
async def test_closing_the_log_writes_what_is_still_due(tmp_path):
    log_file = tmp_path / "decisions.jsonl"
    log = DecisionLog.open(str(log_file), instance="t")
    decision_id = log.record("childlookup/plan", "rev-1", _Line(n=1), _Line(n=1))
    log.close()
    assert json.loads(log_file.read_text())["decision_id"] == decision_id


def test_without_an_event_loop_each_decision_is_written_at_once():
    sink = _Sink()
    log = DecisionLog(sink, instance="t")
    first = log.record("childlookup/plan", "rev-1", _Line(n=1), _Line(n=1))
    assert json.loads(sink.writes[-1])["decision_id"] == first
    log.record("childlookup/plan", "rev-1", _Line(n=2), _Line(n=2))
    assert len(sink.writes) == 2
