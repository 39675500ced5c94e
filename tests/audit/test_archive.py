"""Retention: the oldest records move into archive segments that verify on their own and join up
with the live log, which verifies from the anchor they leave - in either store (see conftest)."""

import asyncio
import gzip
import json
import time
from datetime import UTC, datetime

import pytest

from gateway.audit import (
    CheckpointKeys,
    archive_log,
    open_audit_store,
    verify_archive,
    verify_segment,
    write_next_segment,
)
from gateway.cli import main
from gateway.config import Settings
from tests.factories import CHECKPOINT_KEY, audit_record, break_glass_record, notifying_record

LATER = datetime(2999, 1, 1, tzinfo=UTC)
"""A cutoff every checkpoint was written before."""
PUBLIC = CheckpointKeys.verifying_with(CHECKPOINT_KEY.public.values())


def fill(store, first, last, notify=()):
    """Records a<first>..a<last> (numbered first..last in a fresh log); a05 broke glass,
    and the records named in `notify` queued an owner notification (m-<name>)."""

    async def write():
        for i in range(first, last + 1):
            name = f"a{i:02d}"
            if name in notify:
                record, messages = notifying_record(name, f"m-{name}")
                await store.append(record, messages)
            else:
                await store.append(break_glass_record(name) if i == 5 else audit_record(name))

    asyncio.run(write())


@pytest.fixture
def archive_dir(tmp_path):
    """Where segments go: a directory of their own, beside the SQLite log."""
    return tmp_path / "archive"


@pytest.fixture
def log(store):
    """Records 1-12 (checkpoints after 5 and 10), the fifth with a break-glass alert."""
    fill(store, 1, 12)
    return store


def test_segments_bounded_in_records_archive_in_turn_and_join_up(log, archive_dir):
    """With `max_records`, each segment (and its deleting transaction) holds at most that many
    records: the log before the cutoff goes in several, which verify as one archive."""
    # Segments end at checkpoints (every 5 records here): none ends within 4 records.
    assert archive_log(log, archive_dir, LATER, PUBLIC, max_records=4) is None
    first = archive_log(log, archive_dir, LATER, PUBLIC, max_records=7)
    second = archive_log(log, archive_dir, LATER, PUBLIC, max_records=7)
    assert archive_log(log, archive_dir, LATER, PUBLIC, max_records=7) is None
    assert first is not None
    assert second is not None
    assert [(s.first_seq, s.end.seq) for s in (first, second)] == [(1, 5), (6, 10)]
    assert log.verify().ok
    assert verify_archive(log.archived(), archive_dir, PUBLIC).ok


def test_archiving_leaves_a_live_log_that_verifies_from_its_anchor(log, archive_dir):
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    assert segment is not None
    assert (segment.first_seq, segment.end.seq, segment.end.file) == (1, 10, "audit-1-10.jsonl.gz")
    report = log.verify()
    assert (report.ok, report.records, report.checkpoints) == (True, 12, 1)
    assert "records 1..10 archived (10 records, in audit-1-10.jsonl.gz)" in report.describe()
    assert log.records(limit=100)
    assert all(r["audit_id"] in ("a11", "a12") for r in log.records())
    assert log.alerts() == []  # the break-glass alert went with its record

    fill(log, 13, 17)  # the chain goes on from the anchor, and the counts with it
    report = log.verify()
    assert (report.ok, report.records) == (True, 17)
    assert report.last_checkpoint is not None
    assert (report.last_checkpoint.seq, report.last_checkpoint.records) == (15, 15)


def test_archives_join_up_with_each_other_and_with_the_live_log(log, archive_dir):
    archive_log(log, archive_dir, LATER, PUBLIC)
    fill(log, 13, 17)
    second = archive_log(log, archive_dir, LATER, PUBLIC)
    assert second is not None
    assert (second.first_seq, second.end.seq) == (11, 15)
    archive = verify_archive(log.archived(), archive_dir, PUBLIC)
    assert archive.ok, archive.describe()
    assert [c.seq for c in archive.checkpoints] == [5, 10, 15]
    assert log.verify().ok
    assert log.archive_anchor() == second.end

    (archive_dir / "audit-1-10.jsonl.gz").unlink()
    archive = verify_archive(log.archived(), archive_dir, PUBLIC)
    assert not archive.ok
    assert "audit-1-10.jsonl.gz (records 1..10) is not in" in archive.problem


def test_a_segment_verifies_on_its_own_with_the_public_key_only(log, archive_dir):
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    report = verify_segment(archive_dir / segment.end.file, PUBLIC, None)
    assert report.ok, report.problem
    assert report.end == segment.end
    assert [c.seq for c in report.checkpoints] == [5, 10]


def _rewrite(path, change):
    """Edit a segment as an insider with the archive would: every line through `change`."""
    with gzip.open(path, "rt", encoding="utf-8") as text:
        lines = [json.loads(line) for line in text]
    with gzip.open(path, "wt", encoding="utf-8") as text:
        for line in lines:
            text.write(json.dumps(change(line)) + "\n")


def test_a_tampered_segment_is_caught_naming_the_record(log, archive_dir):
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    path = archive_dir / segment.end.file

    def edit(line):
        record = line.get("record")
        if record is not None and record["seq"] == 4:
            record["subject"] = "dev:RR8:Someone Else"
        return line

    _rewrite(path, edit)
    report = verify_segment(path, PUBLIC, None)
    assert not report.ok
    assert "TAMPERED at record #4 (audit id a04)" in report.problem
    archive = verify_archive(log.archived(), archive_dir, PUBLIC)
    assert (archive.ok, archive.problem) == (False, report.describe())


def test_a_segment_cut_short_or_damaged_is_caught(log, archive_dir):
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    path = archive_dir / segment.end.file
    _rewrite(path, lambda line: None if line.get("record", {}).get("seq") == 10 else line)
    assert not verify_segment(path, PUBLIC, None).ok
    path.write_bytes(b"not a segment")
    report = verify_segment(path, PUBLIC, None)
    assert not report.ok
    assert "cannot be read" in report.problem


@pytest.mark.parametrize("state", ["PENDING", "DEAD"])
def test_a_record_whose_owner_notification_was_not_delivered_is_never_archived(
    backend, store, archive_dir, state
):
    fill(store, 1, 12, notify=("a08",))
    outbox = backend.open_outbox()
    try:
        if state == "DEAD":
            outbox.dead("m-a08", "GAVE_UP", time.time())
        segment = archive_log(store, archive_dir, LATER, PUBLIC)
        assert segment is not None
        assert segment.end.seq == 5  # not 10: record 8 must stay
        assert [e.message_id for e in outbox.entries()] == ["m-a08"]
        assert store.verify().ok
        if state == "PENDING":
            outbox.delivered("m-a08", time.time())
    finally:
        outbox.close()
    if state == "PENDING":  # delivered now: its receipt goes into the next segment
        segment = archive_log(store, archive_dir, LATER, PUBLIC)
        assert segment is not None
        assert segment.end.seq == 10
        with gzip.open(archive_dir / segment.end.file, "rt") as text:
            receipts = [json.loads(line)["receipt"] for line in text if '"receipt"' in line]
        assert [(r["message_id"], r["state"]) for r in receipts] == [("m-a08", "DELIVERED")]
        assert store.verify().ok
    else:
        assert archive_log(store, archive_dir, LATER, PUBLIC) is None


def test_a_crash_between_writing_the_segment_and_deleting_loses_nothing(log, archive_dir):
    """The segment writer runs alone (as if the process died before the deleting transaction):
    the live log is untouched, and archiving again replaces the leftover and finishes."""
    leftover = write_next_segment(log, archive_dir, LATER)
    assert leftover is not None
    assert leftover.name == "audit-1-10.jsonl.gz"
    report = log.verify()
    assert (report.ok, report.records, report.archived) == (True, 12, None)
    assert len(log.records(limit=100)) == 12
    assert log.archived() == []

    fill(log, 13, 17)  # meanwhile the log went on: the next segment ends later
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    assert segment is not None
    assert segment.end.seq == 15
    assert sorted(p.name for p in archive_dir.iterdir()) == ["audit-1-15.jsonl.gz"]
    assert archive_log(log, archive_dir, LATER, PUBLIC) is None  # nothing more is due
    assert verify_archive(log.archived(), archive_dir, PUBLIC).ok
    assert log.verify().ok


def test_nothing_written_after_the_cutoff_or_the_newest_record_is_archived(log, archive_dir):
    assert archive_log(log, archive_dir, datetime(2000, 1, 1, tzinfo=UTC), PUBLIC) is None
    fill(log, 13, 15)  # the checkpoint after 15 covers the newest record
    segment = archive_log(log, archive_dir, LATER, PUBLIC)
    assert segment is not None
    assert segment.end.seq == 10
    assert log.verify().ok


@pytest.mark.parametrize(
    ("tampering", "seq", "problem"),
    [
        (
            "UPDATE audit_checkpoint SET records = 9 WHERE seq = 10",
            10,
            "anchor) was deleted or replaced",
        ),
        ("DELETE FROM audit_checkpoint WHERE seq = 10", 10, "anchor) was deleted or replaced"),
        ("DELETE FROM audit_archive", 11, "chain is broken"),
    ],
)
def test_the_live_log_s_anchor_deleted_or_changed_is_caught(
    backend, log, archive_dir, tampering, seq, problem
):
    archive_log(log, archive_dir, LATER, PUBLIC)
    log.close()
    backend.tamper(tampering)
    store = backend.open_store()
    try:
        report = store.verify()
    finally:
        store.close()
    assert (report.ok, report.first_bad_seq) == (False, seq)
    assert problem in report.problem


def test_the_archive_rows_are_append_only(backend, log, archive_dir):
    archive_log(log, archive_dir, LATER, PUBLIC)
    with pytest.raises(backend.error):
        backend.execute("DELETE FROM audit_archive")
    with pytest.raises(backend.error):
        backend.execute("DELETE FROM audit_log")


# --- the commands -------------------------------------------------------------------------------


def test_the_commands_archive_the_logs_and_verify_the_archive(tmp_path, capsys):
    state, archive = tmp_path / "state", tmp_path / "archive"
    store = open_audit_store(Settings(state_dir=state))  # dev keys, a checkpoint every 100
    fill(store, 1, 205)
    store.close()
    rotated = state / "decision-log.20260101T000000Z.4242.jsonl"
    rotated.write_text('{"decision_id": "d-1"}\n')
    (state / "decision-log.jsonl").write_text('{"decision_id": "d-2"}\n')

    args = ["--state-dir", str(state)]
    assert main(["audit", "archive", "--to", str(archive), "--before", "2999-01-01", *args]) == 0
    out = capsys.readouterr().out
    assert "archived records 1..200 into" in out
    assert "1 rotated decision logs archived" in out
    assert not rotated.exists()
    with gzip.open(archive / f"{rotated.name}.gz", "rt") as text:
        assert text.read() == '{"decision_id": "d-1"}\n'

    assert main(["audit", "verify", "--archive", str(archive), *args]) == 0
    out = capsys.readouterr().out
    assert "intact: 205 records" in out
    assert "records 1..200 archived (200 records, in audit-1-200.jsonl.gz)" in out
    assert "archive intact: 1 segments" in out
    assert "not checked" not in out
    # Without the segments, the log's note of an archive (not signed) is all there is to go on.
    assert main(["audit", "verify", *args]) == 0
    out = capsys.readouterr().out
    assert "records 1..200 not checked: they are archived, and only `--archive DIR`" in out

    _rewrite(
        archive / "audit-1-200.jsonl.gz",
        lambda line: (
            {"record": line["record"] | {"outcome": "NOT_FOUND"}}
            if line.get("record", {}).get("seq") == 150
            else line
        ),
    )
    assert main(["audit", "verify", "--archive", str(archive), *args]) == 1
    assert "TAMPERED at record #150 (audit id a150)" in capsys.readouterr().out
    assert main(["audit", "archive", "--to", str(archive), "--older-than-days", "-1", *args]) == 2
    assert "must not be negative" in capsys.readouterr().err


def test_the_archive_command_writes_segments_of_at_most_max_records(tmp_path, capsys):
    state, archive = tmp_path / "state", tmp_path / "archive"
    store = open_audit_store(Settings(state_dir=state))  # dev keys, a checkpoint every 100
    fill(store, 1, 205)
    store.close()
    args = ["--state-dir", str(state)]

    command = ["audit", "archive", "--to", str(archive), "--before", "2999-01-01", *args]
    assert main([*command, "--max-records", "100"]) == 0
    out = capsys.readouterr().out
    assert "archived records 1..100 into" in out
    assert "archived records 101..200 into" in out

    assert main(["audit", "verify", "--archive", str(archive), *args]) == 0
    assert "archive intact: 2 segments" in capsys.readouterr().out
    assert main([*command, "--max-records", "0"]) == 2
    assert "--max-records must be from 1 to" in capsys.readouterr().err


def test_a_childs_records_found_through_their_links_are_archived_with_them(
    backend, store, archive_dir
):
    """Lookups that reached a child they were not looked up by (`linked_refs`) are found by it
    until archived; archiving takes their links with them, through the append-only guards."""
    reached = "nhs:reached-by-a-search"

    async def write() -> None:
        for i in range(1, 13):
            name = f"a{i:02d}"
            linked = [reached] if name in ("a02", "a11") else []
            await store.append(audit_record(name, linked_refs=linked))

    asyncio.run(write())
    assert [r["audit_id"] for r in store.records(child_refs=[reached])] == ["a02", "a11"]
    assert archive_log(store, archive_dir, LATER, PUBLIC) is not None
    assert [r["audit_id"] for r in store.records(child_refs=[reached])] == ["a11"]
    assert backend.query("SELECT audit_id FROM audit_log_link") == [("a11",)]
    assert store.verify().ok
    with pytest.raises(backend.error):  # outside archiving, the links are append-only
        backend.execute("DELETE FROM audit_log_link")
