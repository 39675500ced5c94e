"""Tamper evidence of the audit log against an attacker who can write the database but
holds no checkpoint key (gateway.audit.chain), in both stores."""

import asyncio

import pytest

from gateway.audit.chain import row_hash
from gateway.audit.postgres import HASHED_AT
from tests.audit.conftest import backend  # noqa: F401  (the SQLite and PostgreSQL stores)
from tests.factories import audit_record


@pytest.fixture
def db(backend):  # noqa: F811
    """7 records (checkpoints after 5), then closed for the attacker."""
    store = backend.open_store()

    async def fill():
        for i in range(7):
            await store.append(audit_record(f"a{i:02d}"))

    asyncio.run(fill())
    store.close()
    return backend


def _verify(db):
    store = db.open_store()
    try:
        return store.verify()
    finally:
        store.close()


@pytest.mark.parametrize(
    "body",
    [
        '{"notified":[{ not json',
        '[{"notified":[{"message_id":"m","source":"s"}]}]',
        '{"notified":[{"x": 1}]}',
        '{"linked_refs":["a", ["b"]]}',
        '{"linked_refs":["a"',
    ],
)
def test_a_forged_record_whose_body_is_not_a_record_is_named_not_a_crash(db, body):
    """An attacker appends a record with a body no gateway writes, chained with a recomputed hash
    after the last checkpoint: verify must name it (exit 1), not raise (a traceback, or exit 2
    "cannot read" with no record named)."""
    at = "at" if db.name == "sqlite" else HASHED_AT
    ((at_text, prev),) = db.query(
        f"SELECT {at}, hash FROM audit_log ORDER BY seq DESC LIMIT 1"  # noqa: S608
    )
    columns = ["forged", at_text, None, "dev:RR8:Hana", "health_visitor", "RR8", "DIRECT_CARE"]
    columns += ["FOUND", body]
    h = row_hash(prev, columns)
    db.tamper(
        (
            "INSERT INTO audit_log (seq, format, audit_id, at, child_ref, subject, role,"
            " organisation, purpose, outcome, body, prev_hash, hash)"
            " SELECT 8, 2, 'forged', at, NULL, 'dev:RR8:Hana', 'health_visitor', 'RR8',"
            " 'DIRECT_CARE', 'FOUND', ?, ?, ? FROM audit_log WHERE seq = 7",
            (body, prev, h),
        )
    )
    report = _verify(db)
    assert (report.ok, report.first_bad_seq, report.first_bad_audit_id) == (False, 8, "forged")
    assert "body" in report.problem


# --- `childlookup audit verify` against the log a real gateway wrote ----------------------------


@pytest.fixture(scope="module")
def gateway_log(tmp_path_factory):
    """Six real lookups (two children), each sealed by a checkpoint before the next is made."""
    import sqlite3

    from tests.factories import NHS, health_record, synthetic_nhs
    from tests.stack import eventually, reference_stack

    tmp = tmp_path_factory.mktemp("tamper")
    with reference_stack(tmp, {"health": [health_record()]}, audit_seal_s=0.05) as gw:
        for i in range(6):
            gw.lookup("health_visitor", NHS if i % 2 else synthetic_nhs(7), "DIRECT_CARE")

            def sealed(n=i + 1):
                conn = sqlite3.connect(tmp / "audit.sqlite3")
                try:
                    return conn.execute("SELECT max(seq) FROM audit_checkpoint").fetchone()[0] == n
                finally:
                    conn.close()

            eventually(sealed)
    return tmp


def _tampered_copy(gateway_log, tmp_path, *statements):
    import shutil

    from tests.audit.conftest import SqliteBackend

    state = shutil.copytree(gateway_log, tmp_path / "copy")
    SqliteBackend(state / "audit.sqlite3").tamper(*statements)
    return state


def _cli_verify(state, capsys):
    from gateway.cli import main

    code = main(["audit", "verify", "--state-dir", str(state)])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_gateway_s_log_verifies(gateway_log, capsys):
    code, out = _cli_verify(gateway_log, capsys)
    assert (code, out.strip()) == (0, "audit log intact: 6 records, 6 checkpoints verified")


def _rows(state, sql):
    import sqlite3

    conn = sqlite3.connect(state / "audit.sqlite3")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("statements", "where"),
    [
        (["UPDATE audit_log SET purpose = 'EMERGENCY_OVERRIDE' WHERE seq = 3"], "record #3"),
        (["UPDATE audit_log SET subject = 'dev:ORG1:Nobody' WHERE seq = 3"], "record #3"),
        (["UPDATE audit_log SET child_ref = 'nhs:x' WHERE seq = 3"], "record #3"),
        (
            [
                "UPDATE audit_log SET body = replace(body, '\"released\":[', '\"released\":[ ')"
                " WHERE seq = 3"
            ],
            "record #3",
        ),
        (["DELETE FROM audit_log WHERE seq = 3"], "record #4"),
        (
            [
                "UPDATE audit_log SET seq = -3 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -3",
            ],
            "record #3",
        ),
        (["DELETE FROM audit_log WHERE seq >= 5"], "removed"),
        (["DELETE FROM audit_log WHERE seq = 6"], "removed"),
        (["DELETE FROM audit_checkpoint WHERE seq = 3"], "checkpoint before this one"),
        (["DELETE FROM audit_log_link"], None),
    ],
)
def test_verify_names_each_tampering_without_printing_children(
    gateway_log, tmp_path, capsys, statements, where
):
    from tests.factories import NHS, synthetic_nhs

    state = _tampered_copy(gateway_log, tmp_path, *statements)
    refs = [ref for (ref,) in _rows(gateway_log, "SELECT DISTINCT child_ref FROM audit_log")]
    code, out = _cli_verify(state, capsys)
    if where is None:  # these lookups linked no other child: nothing to delete
        assert code == 0
        return
    assert code == 1, out
    assert "TAMPERED" in out, out
    assert where in out, out
    for secret in (NHS, synthetic_nhs(7), *refs):
        assert secret not in out


@pytest.mark.parametrize(
    ("kind", "column", "value"),
    [
        ("record", "body", 5),
        ("record", "subject", True),
        ("record", "purpose", 1.5),
    ],
)
def test_a_segment_edited_to_hold_a_value_of_the_wrong_type_is_named_not_a_crash(
    db, tmp_path, kind, column, value
):
    """(h) Whoever can rewrite the archive's storage edits one value of a segment's JSON lines to
    another JSON type: `audit verify --archive` must fail naming the segment, not raise."""
    from gateway.audit import archive_log, verify_archive, verify_segment
    from tests.audit.test_archive import LATER, PUBLIC, _rewrite
    from tests.factories import break_glass_record

    store = db.open_store()
    try:
        asyncio.run(store.append(break_glass_record("bg")))
        archive = tmp_path / "archive"
        segment = archive_log(store, archive, LATER, PUBLIC)
        path = archive / segment.end.file
        edited = []

        def edit(line):
            row = line.get(kind)
            if row is not None and not edited:
                row[column] = value
                edited.append(row)
            return line

        _rewrite(path, edit)
        assert edited
        assert not verify_segment(path, PUBLIC, None).ok
        assert not verify_archive(store.archived(), archive, PUBLIC).ok
    finally:
        store.close()


def test_sqlite_child_index_tampered_to_hide_an_access_is_caught(tmp_path):
    """The child's trail finds records through the index `audit_log_child`, which is not the
    table the chain is verified from (a scan in `seq` order). An attacker with the file drops the
    index entry of one record - its row, hash and chain untouched - and the child's trail no longer
    shows that access. `audit verify` must not then call the log intact."""
    import shutil
    import sqlite3

    from tests.audit.conftest import SqliteBackend

    db = SqliteBackend(tmp_path / "audit.sqlite3")
    store = db.open_store()

    async def fill():
        for i in range(7):
            await store.append(audit_record(f"a{i:02d}", child_ref=f"nhs:{'c' if i == 3 else 'd'}"))

    asyncio.run(fill())
    assert [r["audit_id"] for r in store.records(child_refs=["nhs:c"])] == ["a03"]
    store.close()

    conn = sqlite3.connect(db.path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    ((root,),) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'audit_log_child'"
    ).fetchall()
    ((size,),) = conn.execute("PRAGMA page_size").fetchall()
    conn.close()
    # The same file with record a03 deleted: its index page lacks the entry. Copy that page back.
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(db.path, copy)
    SqliteBackend(copy).tamper("DELETE FROM audit_log WHERE audit_id = 'a03'")
    page = copy.read_bytes()[(root - 1) * size : root * size]
    with db.path.open("r+b") as f:
        f.seek((root - 1) * size)
        f.write(page)

    store = db.open_store()
    try:
        hidden = store.records(child_refs=["nhs:c"]) == []
        assert hidden, "the tampering did not hide the access (test setup)"
        assert len(store.records(subject=None)) == 7  # the row itself is still in the table
        report = store.verify()
    finally:
        store.close()
    assert not report.ok
