"""The decision log rotated by size while several gateway processes append to it: no line lost,
none split, and the rotated files found for the archive by the time they were rotated."""

import json
import subprocess
import sys
from datetime import UTC, datetime

from gateway.policy import rotated_decision_logs

WRITER = """
import sys, time
from pydantic import BaseModel, ConfigDict
from gateway.policy import DecisionLog

class Line(BaseModel):
    model_config = ConfigDict(frozen=True)
    writer: str
    n: int
    padding: str = "x" * 300

path, writer, max_bytes, lines = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = DecisionLog.open(path, instance=writer, max_bytes=max_bytes)
for n in range(lines):
    line = Line(writer=writer, n=n)
    print(log.record("childlookup/plan", "rev-1", line, line))
    time.sleep(0.003)
log.close()
"""


def test_two_writers_rotating_one_decision_log_lose_no_line(tmp_path):
    target = tmp_path / "decision-log.jsonl"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), name, "20000", "800"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    logged = set()
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0
        logged |= set(out.split())
    assert len(logged) == 1600

    rotated = rotated_decision_logs(str(target), datetime(2999, 1, 1, tzinfo=UTC))
    assert len(rotated) >= 10  # ~0.8 MB of lines in 20 KB files, rotated by both writers
    assert sorted(rotated) == sorted(p for p in tmp_path.glob("*.jsonl") if p != target)
    written = [
        json.loads(line)["decision_id"]
        for path in [*rotated, target]
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(written) == sorted(logged)  # every line whole, once
    assert {p.name.split(".")[2].split("-")[0] for p in rotated} == {str(w.pid) for w in writers}


def test_only_files_rotated_before_the_cutoff_are_archived(tmp_path):
    target = tmp_path / "decision-log.jsonl"
    for name in (
        "decision-log.jsonl",
        "decision-log.20260101T000000Z.17.jsonl",
        "decision-log.20260101T000000Z.17-1.jsonl",
        "decision-log.20260301T000000Z.18.jsonl",
        "decision-log.notes.jsonl",
        "other.20260101T000000Z.17.jsonl",
    ):
        (tmp_path / name).write_text("{}\n")
    found = rotated_decision_logs(str(target), datetime(2026, 2, 1, tzinfo=UTC))
    assert [p.name for p in found] == [
        "decision-log.20260101T000000Z.17-1.jsonl",
        "decision-log.20260101T000000Z.17.jsonl",
    ]
    assert rotated_decision_logs("stdout", datetime(2999, 1, 1, tzinfo=UTC)) == []
