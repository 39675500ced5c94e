"""What tamper evidence costs: `audit verify` time and storage per lookup, body-only hashes with
MAC'd checkpoints (before) against whole-row hashes with signed checkpoints (after).

    python -m bench.audit_verify --records 200000

Writes `--records` realistic lookup records (a found lookup from three sources, with matches,
released and withheld fields and an owner notification; one in 200 a break-glass override with its
alert) into a fresh SQLite log through the store, each with its notification delivered (the outbox
is checked against the records too), times `verify()` on it, and times the old rule's walk (one
SHA-256 of prev + body per record) over the same rows. For storage it copies the log's rows into
the old layout (no `format` column; checkpoints with a MAC only), vacuums both and divides each
file's size by the records. Then it archives the log up to its newest checkpoint (`audit
archive`) and reports the segment's size per lookup and the time to verify it alone.
Verification is one pass, so its time grows linearly: the 1,000,000-record figure is measured
when `--records` is 1,000,000, else extrapolated (and labelled so). Prints a table and writes
bench/results/audit_verify.json.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.report import write_report
from gateway.audit import (
    Access,
    AuditField,
    AuditMatch,
    AuditNotice,
    AuditRecord,
    AuditSource,
    CheckpointKeys,
    OutboxMessage,
    SqliteAuditStore,
    archive_log,
    utc_now,
    verify_segment,
)

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = CheckpointKeys.signing_with(Ed25519PrivateKey.from_private_bytes(b"v" * 32))
MILLION = 1_000_000
_LEGACY = """
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, audit_id TEXT NOT NULL UNIQUE, at TEXT NOT NULL,
    child_ref TEXT, subject TEXT NOT NULL, role TEXT NOT NULL, organisation TEXT NOT NULL,
    purpose TEXT NOT NULL, outcome TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL);
CREATE TABLE audit_alert (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL,
    audit_id TEXT NOT NULL, subject TEXT NOT NULL, role TEXT NOT NULL,
    organisation TEXT NOT NULL, justification TEXT);
CREATE TABLE audit_checkpoint (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, at TEXT NOT NULL, mac TEXT NOT NULL);
CREATE INDEX audit_log_child ON audit_log (child_ref, at);
CREATE INDEX audit_log_subject ON audit_log (subject, at);
CREATE TABLE notification_outbox (
    message_id TEXT PRIMARY KEY, audit_id TEXT NOT NULL, source TEXT NOT NULL,
    created_at REAL NOT NULL, state TEXT NOT NULL, payload BLOB, attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL, last_error TEXT, finished_at REAL);
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_at);
"""


def _record(i: int) -> AuditRecord:
    override = i % 200 == 0
    access = Access(
        at=utc_now(),
        subject=f"idp:RR8:user-{i % 500}",
        name="Bench User",
        role="social_worker" if override else "health_visitor",
        organisation="RR8",
        purpose="EMERGENCY_OVERRIDE" if override else "SAFEGUARDING_ENQUIRY",
        justification="child found alone at the station, carer unknown" if override else None,
        child_ref=f"nhs:{i:032x}",
    )
    sources = [
        AuditSource(s, "ANSWERED", None, 1, False, ["NHS_NUMBER"])
        for s in ("health", "education", "social_care")
    ]
    return AuditRecord(
        access=access,
        audit_id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        outcome="FOUND",
        denial=None,
        error_code=None,
        policy_revision="rev-" + "0" * 12,
        decision_ids=[uuid.uuid4().hex, uuid.uuid4().hex],
        flagged_for_investigation=override,
        child_flags={"shielded": False, "restricted": False, "sensitive": False},
        sources=sources,
        matches=[
            AuditMatch(
                s.source,
                f"record:{uuid.uuid4().hex}",
                "NHS_NUMBER",
                1.0,
                None,
                ["nhs_number:exact"],
            )
            for s in sources
        ],
        released=[AuditField("health", f) for f in ("name", "date_of_birth", "gp_practice")]
        + [AuditField("social_care", "child_protection_plan")],
        withheld=[AuditField("health", "address", "SHIELDED")],
        notified=[AuditNotice("social_care", ["CHILD_PROTECTION_PLAN"], uuid.uuid4().hex)],
    )


def _fill(path: Path, records: int) -> None:
    """Write the records with the notification each queued, then deliver them all: the outbox as
    it stands in steady state (receipts, payloads erased), which verification checks too."""
    store = SqliteAuditStore(path, checkpoint_key=KEYS, synchronous="NORMAL")
    batch = 1_000
    try:
        for start in range(0, records, batch):
            written = [_record(i) for i in range(start, min(records, start + batch))]
            store._write(written, [_queued(r) for r in written])
    finally:
        store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE notification_outbox SET state = 'DELIVERED', payload = NULL")
    conn.close()


def _queued(record: AuditRecord) -> OutboxMessage:
    (notice,) = record.notified
    payload = b'{"records":[{"record_id":"LA-000001"}]}'
    return OutboxMessage(notice.message_id, notice.source, record.audit_id, payload, time.time())


def _legacy_copy(path: Path, out: Path) -> None:
    """The same rows in the layout gateways wrote before whole-row hashes."""
    conn = sqlite3.connect(out, isolation_level=None)
    conn.executescript(_LEGACY)
    conn.execute("ATTACH DATABASE ? AS new", (str(path),))
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO audit_log SELECT seq, audit_id, at, child_ref, subject, role, organisation,"
        " purpose, outcome, body, prev_hash, hash FROM new.audit_log"
    )
    conn.execute("INSERT INTO audit_alert SELECT * FROM new.audit_alert")
    conn.execute("INSERT INTO notification_outbox SELECT * FROM new.notification_outbox")
    conn.execute(
        "INSERT INTO audit_checkpoint SELECT seq, hash, at, substr(signature, 1, 64)"
        " FROM new.audit_checkpoint"
    )
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE new")
    conn.execute("VACUUM")
    conn.close()


def _body_only_walk(path: Path) -> float:
    """Seconds for the old rule's walk over the same rows: SHA-256 of prev + body each."""
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    previous = "0" * 64
    for (body,) in conn.execute("SELECT body FROM audit_log ORDER BY seq"):
        previous = hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


@dataclass(frozen=True)
class Archived:
    records: int
    archive_s: float
    segment_bytes: int
    verify_s: float


def _archive(path: Path, directory: Path) -> Archived:
    """Archive everything up to the newest checkpoint (`audit archive` with a cutoff of now): its
    time, the segment's size, and the time to verify the segment on its own."""
    store = SqliteAuditStore(path, checkpoint_key=KEYS)
    try:
        started = time.perf_counter()
        segment = archive_log(store, directory, utc_now(), KEYS)
        archive_s = time.perf_counter() - started
    finally:
        store.close()
    assert segment is not None, "nothing was archived"
    file = directory / segment.end.file
    started = time.perf_counter()
    report = verify_segment(file, KEYS, None)
    verify_s = time.perf_counter() - started
    assert report.ok, report.describe()
    return Archived(segment.end.records, archive_s, file.stat().st_size, verify_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        after, before = Path(tmp) / "after.sqlite3", Path(tmp) / "before.sqlite3"
        started = time.perf_counter()
        _fill(after, args.records)
        filled = time.perf_counter() - started
        store = SqliteAuditStore(after, checkpoint_key=replace(KEYS, signing=None))
        started = time.perf_counter()
        report = store.verify()
        verify_s = time.perf_counter() - started
        store.close()
        assert report.ok, report.describe()
        old_walk_s = _body_only_walk(after)
        _legacy_copy(after, before)
        conn = sqlite3.connect(after, isolation_level=None)
        conn.execute("VACUUM")
        conn.close()
        per_before = before.stat().st_size / args.records
        per_after = after.stat().st_size / args.records
        archived = _archive(after, Path(tmp) / "archive")
    scale = MILLION / args.records
    label = "measured" if args.records == MILLION else f"extrapolated from {args.records:,}"
    rows = [
        ("records written", f"{args.records:,} in {filled:.1f} s"),
        ("verify, whole rows + signed checkpoints", f"{verify_s:.2f} s"),
        ("old rule's walk (body hash only)", f"{old_walk_s:.2f} s"),
        (f"verify 1,000,000 records ({label})", f"{verify_s * scale:.1f} s"),
        ("storage per lookup, before", f"{per_before:,.0f} bytes"),
        ("storage per lookup, after", f"{per_after:,.0f} bytes"),
        (
            f"archive {archived.records:,} records into a segment",
            f"{archived.archive_s:.1f} s, {archived.segment_bytes / archived.records:,.0f}"
            " bytes per lookup (gzip)",
        ),
        ("verify that segment alone", f"{archived.verify_s:.2f} s"),
    ]
    for name, value in rows:
        print(f"{name:<48} {value}")
    write_report(
        "audit_verify",
        RESULTS / "audit_verify.json",
        records=args.records,
        verify_seconds=round(verify_s, 3),
        body_only_walk_seconds=round(old_walk_s, 3),
        verify_million_seconds=round(verify_s * scale, 1),
        million=label,
        bytes_per_lookup_before=round(per_before),
        bytes_per_lookup_after=round(per_after),
        archived_records=archived.records,
        archive_seconds=round(archived.archive_s, 2),
        segment_bytes_per_lookup=round(archived.segment_bytes / archived.records),
        segment_verify_seconds=round(archived.verify_s, 3),
    )


if __name__ == "__main__":
    main()
