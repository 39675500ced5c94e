"""Tamper evidence: each kind of tampering with the audit database is caught, and named - in
either store (see conftest), by an attacker past its append-only triggers."""

import asyncio
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import CheckpointKeys, archive_log
from gateway.audit.chain import link_hash, row_hash
from gateway.audit.postgres import HASHED_AT
from tests.audit.test_archive import LATER, PUBLIC
from tests.factories import CHECKPOINT_KEY, audit_record, break_glass_record, notifying_record


@pytest.fixture
def db(backend):
    """A log of 12 records (checkpoints after 5 and 10; the sixth, a05, a break-glass override
    with its alert), then closed for the attacker."""
    store = backend.open_store()

    async def fill():
        for i in range(12):
            await store.append(break_glass_record("a05") if i == 5 else audit_record(f"a{i:02d}"))

    asyncio.run(fill())
    store.close()
    return backend


def rehashed(db, seq, prev=None):
    """Record `seq`'s hash recomputed from its row as it now stands (on `prev`, when given), as an
    insider who knows the format would."""
    at = "at" if db.name == "sqlite" else HASHED_AT
    ((audit_id, *columns, stored_prev),) = db.query(
        f"SELECT audit_id, {at}, child_ref, subject, role, organisation, purpose, outcome,"  # noqa: S608
        f" body, prev_hash FROM audit_log WHERE seq = {seq:d}"
    )
    alerts = db.query(
        f"SELECT kind, {at}, subject, role, organisation, justification"  # noqa: S608
        f" FROM audit_alert WHERE audit_id = '{audit_id}' ORDER BY seq"
    )
    return row_hash(prev or stored_prev, [audit_id, *columns], alerts)


def rehash_from(db, seq):
    """Recompute every hash from record `seq` on, so the chain links again."""
    ((previous,),) = db.query(f"SELECT prev_hash FROM audit_log WHERE seq = {seq:d}")  # noqa: S608
    for (later,) in db.query(f"SELECT seq FROM audit_log WHERE seq >= {seq:d} ORDER BY seq"):  # noqa: S608
        new = rehashed(db, later, previous)
        db.tamper(
            ("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, new, later))
        )
        previous = new


def _verify(db):
    store = db.open_store()
    try:
        return store.verify()
    finally:
        store.close()


def test_an_untouched_log_verifies(db):
    report = _verify(db)
    assert report.ok
    assert (report.records, report.checkpoints) == (12, 2)
    assert "intact" in report.describe()


def test_an_edited_record_is_named(db):
    db.tamper("UPDATE audit_log SET body = replace(body, 'FOUND', 'NOT_FOUND') WHERE seq = 4")
    report = _verify(db)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_audit_id) == (4, "a03")
    assert "edited" in report.problem


def test_an_edit_that_recomputes_its_own_hash_still_breaks_the_next_link(db):
    ((body,),) = db.query("SELECT body FROM audit_log WHERE seq = 4")
    forged = body.replace("FOUND", "NOT_FOUND")
    db.tamper(("UPDATE audit_log SET body = ? WHERE seq = 4", (forged,)))
    db.tamper(("UPDATE audit_log SET hash = ? WHERE seq = 4", (rehashed(db, 4),)))
    report = _verify(db)
    assert report.first_bad_seq == 5
    assert "deleted, inserted or moved" in report.problem


def test_a_deleted_record_is_caught_at_its_successor(db):
    db.tamper("DELETE FROM audit_log WHERE seq = 7")
    report = _verify(db)
    assert report.first_bad_seq == 8


def test_an_inserted_record_is_caught(db):
    db.tamper(
        "INSERT INTO audit_log (seq, audit_id, at, child_ref, subject, role, organisation,"
        " purpose, outcome, body, prev_hash, hash) SELECT 100, 'fake', at, child_ref, subject,"
        " role, organisation, purpose, outcome, body, prev_hash, hash FROM audit_log WHERE seq = 3",
    )
    report = _verify(db)
    assert report.first_bad_seq == 100


def test_reordered_records_are_caught(db):
    db.tamper(
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = -2",
    )
    report = _verify(db)
    assert report.first_bad_seq == 2


def test_cutting_off_the_newest_records_past_a_checkpoint_is_caught(db):
    db.tamper("DELETE FROM audit_log WHERE seq >= 9")
    report = _verify(db)
    assert not report.ok
    assert report.first_bad_seq == 10
    assert "removed" in report.problem


def test_emptying_the_log_is_caught(db):
    db.tamper("DELETE FROM audit_log")
    report = _verify(db)
    assert (report.ok, report.records, report.first_bad_seq) == (False, 0, 5)
    assert "removed" in report.problem


def test_a_forged_checkpoint_is_caught(db):
    flipped = "CASE substr(signature, 1, 1) WHEN 'f' THEN 'e' ELSE 'f' END || substr(signature, 2)"
    db.tamper(f"UPDATE audit_checkpoint SET signature = {flipped} WHERE seq = 5")  # noqa: S608
    report = _verify(db)
    assert not report.ok
    assert "signature" in report.problem


def test_the_chain_continues_across_reopening_the_store(db):
    store = db.open_store()
    asyncio.run(store.append(audit_record("after-restart")))
    assert store.verify().ok
    store.close()


# --- the whole row, and the alerts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("subject", "'dev:RR8:Someone Else'"),
        ("child_ref", "'nhs:00000000000000000000000000000000'"),
        ("outcome", "'NOT_FOUND'"),
        ("at", "at + interval '1 day'"),
    ],
)
def test_an_edited_column_that_queries_read_is_named(db, column, value):
    if column == "at" and db.name == "sqlite":
        value = "'2026-11-22T12:00:00+00:00'"
    db.tamper(f"UPDATE audit_log SET {column} = {value} WHERE seq = 4")  # noqa: S608
    report = _verify(db)
    assert (report.ok, report.first_bad_seq, report.first_bad_audit_id) == (False, 4, "a03")
    assert "edited" in report.problem


def test_a_deleted_alert_is_named_at_its_record(db):
    assert len(db.query("SELECT * FROM audit_alert")) == 1
    db.tamper("DELETE FROM audit_alert")
    report = _verify(db)
    assert (report.ok, report.first_bad_seq, report.first_bad_audit_id) == (False, 6, "a05")
    assert "alert" in report.problem


def test_an_edited_alert_is_named_at_its_record(db):
    db.tamper("UPDATE audit_alert SET justification = 'nothing to see'")
    report = _verify(db)
    assert (report.ok, report.first_bad_seq) == (False, 6)


def test_an_alert_for_no_record_is_caught(db):
    db.tamper(
        "INSERT INTO audit_alert (at, kind, audit_id, subject, role, organisation, justification)"
        " SELECT at, kind, 'invented', subject, role, organisation, justification FROM audit_alert"
    )
    report = _verify(db)
    assert (report.ok, report.first_bad_audit_id) == (False, "invented")


# --- the notification outbox, derived from the chained records ----------------------------------


@pytest.fixture
def notified(backend):
    """A log of 4 records; the third (n2) told social care twice (messages m-1, m-2), and one of
    those has since been delivered (its payload erased, as delivery does)."""
    store = backend.open_store()

    async def fill():
        for i in range(4):
            if i == 2:
                await store.append(*notifying_record("n2", "m-1", "m-2"))
            else:
                await store.append(audit_record(f"n{i}"))

    asyncio.run(fill())
    store.close()
    outbox = backend.open_outbox()
    outbox.delivered("m-1", 0.0)
    outbox.close()
    return backend


def test_delivering_a_notification_does_not_disturb_verification(notified):
    assert _verify(notified).ok


def test_a_deleted_outbox_message_is_named_at_the_record_that_queued_it(notified):
    notified.tamper("DELETE FROM notification_outbox WHERE message_id = 'm-2'")
    report = _verify(notified)
    assert (report.ok, report.first_bad_seq, report.first_bad_audit_id) == (False, 3, "n2")
    assert "outbox" in report.problem


def test_an_outbox_message_moved_to_another_agency_is_caught(notified):
    notified.tamper("UPDATE notification_outbox SET source = 'health' WHERE message_id = 'm-1'")
    assert (_verify(notified).ok, _verify(notified).first_bad_audit_id) == (False, "n2")


def test_an_outbox_message_invented_for_another_record_is_caught(notified):
    notified.tamper(
        "INSERT INTO notification_outbox (message_id, audit_id, source, created_at, payload,"
        " next_attempt_at) SELECT 'm-9', 'n1', source, created_at, payload, next_attempt_at"
        " FROM notification_outbox WHERE message_id = 'm-2'"
    )
    report = _verify(notified)
    assert (report.ok, report.first_bad_audit_id) == (False, "n1")


def test_an_outbox_message_for_no_record_is_caught(notified):
    notified.tamper(
        "INSERT INTO notification_outbox (message_id, audit_id, source, created_at,"
        " next_attempt_at) VALUES ('m-9', 'nobody', 'social_care', 0, 0)"
    )
    report = _verify(notified)
    assert (report.ok, report.first_bad_audit_id) == (False, "nobody")
    assert "not in the log" in report.problem


# --- checkpoints that cannot be dropped or forged ------------------------------------------------


def test_a_rehashed_edit_is_caught_by_the_signed_checkpoint_over_it(db):
    db.tamper("UPDATE audit_log SET outcome = 'NOT_FOUND' WHERE seq = 7")
    rehash_from(db, 7)
    report = _verify(db)
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "signed checkpoint" in report.problem


def test_a_rehashed_edit_with_the_later_checkpoints_deleted_is_caught_while_records_remain(db):
    """Edit record 7, re-hash the chain and delete the checkpoint after 10: records 10-12 still
    stand where a checkpoint was due, so the deletion shows."""
    db.tamper("UPDATE audit_log SET outcome = 'NOT_FOUND' WHERE seq = 7")
    rehash_from(db, 7)
    db.tamper("DELETE FROM audit_checkpoint WHERE seq > 5")
    report = _verify(db)
    assert (report.ok, report.first_bad_seq) == (False, 12)
    assert "checkpoints after record #5 were deleted" in report.problem


def test_a_checkpoint_deleted_from_the_middle_breaks_the_next_one_s_link(backend):
    store = backend.open_store()

    async def fill():
        for i in range(16):
            await store.append(audit_record(f"b{i:02d}"))

    asyncio.run(fill())
    store.close()
    backend.tamper("DELETE FROM audit_checkpoint WHERE seq = 10")
    report = _verify(backend)
    assert (report.ok, report.first_bad_seq) == (False, 15)
    assert "link is broken" in report.problem


def test_a_checkpoint_forged_without_the_private_key_is_caught(db):
    """The insider re-hashes an edit and re-signs the checkpoints over it, with a key of their own
    and, failing that, under the gateway's key id."""
    db.tamper("UPDATE audit_log SET subject = 'dev:RR8:Someone Else' WHERE seq = 7")
    rehash_from(db, 7)
    forger = CheckpointKeys.signing_with(Ed25519PrivateKey.generate())
    ((seq, records, at, prev),) = db.query(
        "SELECT seq, records, at, prev FROM audit_checkpoint WHERE seq = 10"
    )
    ((head,),) = db.query("SELECT hash FROM audit_log WHERE seq = 10")
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at)
    forged = forger.sign(seq, records, head, when, prev)
    db.tamper(
        (
            "UPDATE audit_checkpoint SET hash = ?, at = ?, key_id = ?, signature = ?"
            " WHERE seq = 10",
            (head, forged.at, forged.key, forged.signature),
        )
    )
    report = _verify(db)
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "not among the public keys" in report.problem
    ((key,),) = db.query("SELECT key_id FROM audit_checkpoint WHERE seq = 5")
    db.tamper(("UPDATE audit_checkpoint SET key_id = ? WHERE seq = 10", (key,)))
    report = _verify(db)
    assert (report.ok, report.first_bad_seq) == (False, 10)
    assert "signature is wrong" in report.problem


def test_verifying_needs_only_the_public_key(db):
    store = db.open_store()
    asyncio.run(store.append(audit_record("signed")))
    store.close()
    public = CheckpointKeys.verifying_with(CHECKPOINT_KEY.public.values())
    reader = db.open_store(keys=public)
    try:
        report = reader.verify()
        assert (report.ok, report.checkpoints) == (True, 2)
        assert report.last_checkpoint is not None
        assert report.last_checkpoint.seq == 10
    finally:
        reader.close()


def test_a_log_cut_back_with_its_later_checkpoints_needs_a_witness_to_be_caught(db):
    """The limit of the chain alone: a log cut back to a checkpoint, with every record and
    checkpoint after it deleted, is a consistent shorter log, and verifies on its own. A witness
    holds a later checkpoint the gateway's operator cannot delete, and `audit verify --witness`
    names it (tests/test_witness_e2e.py); this pins only that the chain cannot."""
    db.tamper("DELETE FROM audit_log WHERE seq > 5", "DELETE FROM audit_checkpoint WHERE seq > 5")
    db.tamper("DELETE FROM audit_alert")
    assert _verify(db).ok


# --- the index of the children lookups reached, derived from the chained records ------------------


@pytest.fixture
def linked(backend):
    """A log of 4 records; the third (l2) reached a child it was not looked up by."""
    store = backend.open_store()

    async def fill():
        for i in range(4):
            reached = ["nhs:reached"] if i == 2 else []
            await store.append(audit_record(f"l{i}", linked_refs=reached))

    asyncio.run(fill())
    store.close()
    return backend


def test_the_links_a_record_says_it_made_verify(linked):
    assert linked.query("SELECT audit_id, child_ref FROM audit_log_link") == [("l2", "nhs:reached")]
    assert _verify(linked).ok


def test_a_deleted_link_is_named_at_the_record_it_hid_from_the_childs_trail(linked):
    linked.tamper("DELETE FROM audit_log_link WHERE audit_id = 'l2'")
    report = _verify(linked)
    assert (report.ok, report.first_bad_seq, report.first_bad_audit_id) == (False, 3, "l2")
    assert "links" in report.problem


def test_an_invented_link_is_caught(linked):
    linked.tamper("INSERT INTO audit_log_link (audit_id, child_ref) VALUES ('l1', 'nhs:other')")
    assert (_verify(linked).ok, _verify(linked).first_bad_audit_id) == (False, "l1")
    linked.tamper("DELETE FROM audit_log_link WHERE audit_id = 'l1'")
    linked.tamper("INSERT INTO audit_log_link (audit_id, child_ref) VALUES ('gone', 'nhs:x')")
    report = _verify(linked)
    assert (report.ok, report.first_bad_audit_id) == (False, "gone")
    assert "names a record that is not in the log" in report.problem


def relinked_as_format_1(db):
    """Every record set to the old, unkeyed format (its body alone hashed) and the chain linked
    again from where the live log starts, as an insider who knows the old format would."""
    ((previous,),) = db.query("SELECT prev_hash FROM audit_log ORDER BY seq LIMIT 1")
    db.tamper("UPDATE audit_log SET format = 1")
    for seq, body in db.query("SELECT seq, body FROM audit_log ORDER BY seq"):
        new = link_hash(previous, body)
        db.tamper(
            ("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, new, seq))
        )
        previous = new


def test_a_log_rewritten_in_the_old_format_its_checkpoints_deleted_fails(db):
    """Format-1 records are hashed over the body alone: downgraded, any can be edited and the
    chain linked again. Old gateways wrote a MAC'd checkpoint at each multiple of the interval,
    so format-1 records running past one with none are no log a gateway wrote."""
    db.tamper(
        "UPDATE audit_log SET body = replace(body, 'EMERGENCY_OVERRIDE', 'DIRECT_CARE')"
        " WHERE audit_id = 'a05'",
        "UPDATE audit_log SET purpose = 'DIRECT_CARE' WHERE audit_id = 'a05'",
        "DELETE FROM audit_alert",
        "DELETE FROM audit_checkpoint",
    )
    relinked_as_format_1(db)

    report = _verify(db)

    assert (report.ok, report.records) == (False, 12)
    assert "checkpoints after record #0 were deleted" in report.describe()


def test_records_in_the_old_format_after_an_archives_anchor_fail(db, tmp_path):
    """An archive's anchor is a signed checkpoint, which only a log of format-2 records has."""
    store = db.open_store()
    try:
        assert archive_log(store, tmp_path / "archive", LATER, PUBLIC) is not None
    finally:
        store.close()
    relinked_as_format_1(db)

    report = _verify(db)

    assert not report.ok
    assert "a record in format 1 where only format 2 may be" in report.describe()
