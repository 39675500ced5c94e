"""The audit log's edges found by a review: witnesses left behind by an archive or by a log cut back
while quiet, and records PostgreSQL cannot hold or read back (a NUL from a token's claims).

Real components throughout: the SQLite and PostgreSQL stores, witnesses served over HTTP on
loopback, the gateway's witness dispatcher talking to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from connectors.app import create_witness_app
from connectors.serving import BackgroundServer
from connectors.witness import WitnessStore
from gateway.audit import (
    AuditUnavailable,
    Witness,
    WitnessDispatcher,
    archive_log,
    compare_with_witnesses,
)
from gateway.audit.witnessing import witness_url
from tests.audit.conftest import Backend, PostgresBackend, SqliteBackend
from tests.factories import CHECKPOINT_KEY, access, audit_record, notifying_record
from tests.stack import GATEWAY_ISSUER, GATEWAY_KEY, GATEWAY_SIGNER, gateway_verifier

# --- witnessing -----------------------------------------------------------------------------------


@contextlib.contextmanager
def witness_server(db: Path, name: str) -> Iterator[str]:
    """A standalone witness (`connector witness --name NAME`) on loopback: its base URL."""
    store = WitnessStore(db)
    app = create_witness_app(store, name=name, verifier=gateway_verifier(GATEWAY_KEY.public_key()))
    try:
        with BackgroundServer(app) as server:
            yield server.url
    finally:
        store.close()


def witness_state(name: str, state: str) -> float | None:
    return REGISTRY.get_sample_value(
        "childlookup_audit_witness_state", {"witness": name, "state": state}
    )


def diverged_alerts(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if getattr(r, "event", None) == "audit_witness_diverged"
        and getattr(r, "context", {}).get("witness") == name
    ]


async def append(store, *audit_ids: str) -> None:
    for audit_id in audit_ids:
        await store.append(audit_record(audit_id))


@pytest.mark.anyio
async def test_an_archive_past_a_witness_that_was_behind_is_not_reported_as_a_rewritten_log(
    tmp_path, caplog
):
    """A witness that was down while the log was archived past its latest checkpoint holds a
    checkpoint the live log no longer has only because it was archived, as `audit verify
    --witness` agrees (it skips archived checkpoints). The running gateway must not raise the
    `audit_witness_diverged` alarm ("cut back or rewritten") for it, nor stop witnessing for good:
    the archived checkpoints are not a contradiction."""
    name = f"behind-{uuid.uuid4().hex[:8]}"
    store = SqliteBackend(tmp_path / "audit.sqlite3").open_store(checkpoint_every=1000)
    caplog.set_level(logging.INFO)
    try:
        with witness_server(tmp_path / "witness.sqlite3", name) as url:
            witness = Witness(name, witness_url(url), 5.0, None)
            async with httpx.AsyncClient() as client:
                dispatcher = WitnessDispatcher(
                    store,
                    client,
                    GATEWAY_SIGNER,
                    [witness],
                    log=GATEWAY_ISSUER,
                    seal_s=60,
                    poll_s=60,
                )
                await append(store, "a-1")
                store.seal()
                await dispatcher.send()
                assert witness_state(name, "ok") == 1

                # The witness is not reached for a while (down, or the network): the log goes on,
                # sealed as it goes, and its oldest part is archived, past the witness's latest.
                for n in (2, 3, 4):
                    await append(store, f"a-{n}")
                    store.seal()
                await append(store, "a-5")  # the newest record always stays live
                archived = archive_log(
                    store, tmp_path / "archive", datetime(2999, 1, 1, tzinfo=UTC), CHECKPOINT_KEY
                )
                assert archived is not None
                assert archived.end.seq == 4
                store.seal()

                # The auditor's check agrees with the witness: nothing it holds is contradicted.
                (verdict,) = await compare_with_witnesses(
                    store, [url], GATEWAY_ISSUER, CHECKPOINT_KEY, covers_from=archived.end.seq
                )
                assert verdict.ok, verdict.message

                await dispatcher.send()
                await dispatcher.send()
    finally:
        store.close()

    assert diverged_alerts(caplog, name) == []
    assert witness_state(name, "diverged") != 1
    assert witness_state(name, "failing") == 1  # left behind: someone must still look


@pytest.mark.anyio
async def test_a_running_gateway_notices_a_witnessed_checkpoint_cut_from_the_log(tmp_path, caplog):
    """README: "a running gateway raises `audit_witness_diverged` when a witness's latest
    checkpoint is not in its log". A log cut back past checkpoints a witness already holds, while
    no lookup comes in (at night), is not noticed: each round finds nothing new to send and
    reports the witness as ok, however long the log stays cut."""
    name = f"cut-{uuid.uuid4().hex[:8]}"
    backend = SqliteBackend(tmp_path / "audit.sqlite3")
    store = backend.open_store(checkpoint_every=1000)
    caplog.set_level(logging.INFO)
    try:
        with witness_server(tmp_path / "witness.sqlite3", name) as url:
            witness = Witness(name, witness_url(url), 5.0, None)
            async with httpx.AsyncClient() as client:
                dispatcher = WitnessDispatcher(
                    store,
                    client,
                    GATEWAY_SIGNER,
                    [witness],
                    log=GATEWAY_ISSUER,
                    seal_s=60,
                    poll_s=60,
                )
                for n in range(1, 7):
                    await append(store, f"a-{n}")
                    store.seal()
                    await dispatcher.send()
                assert witness_state(name, "ok") == 1

                backend.tamper(
                    "DELETE FROM audit_log WHERE seq > 3",
                    "DELETE FROM audit_checkpoint WHERE seq > 3",
                )
                assert store.verify().ok  # the chain alone cannot tell

                for _ in range(3):  # rounds of a running gateway, no lookup meanwhile
                    await dispatcher.send()
    finally:
        store.close()

    assert witness_state(name, "diverged") == 1
    assert [r.context["seq"] for r in diverged_alerts(caplog, name)] == [6]  # type: ignore[attr-defined]


# --- PostgreSQL: what the shared log must store and read back as SQLite does ----------------------


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "audit.sqlite3")
    url, schema = request.getfixturevalue("postgres_schema")
    return PostgresBackend(url, schema)


NUL_NAME = "Mallory\x00Smith"
"""A display name (the token's `name` claim, written into the record's body) holding a NUL, as an
identity provider letting users edit their name may issue it."""


@pytest.mark.anyio
async def test_an_owners_access_history_survives_a_practitioner_name_holding_a_nul(log):
    """The owner's access history (and the user's daily cap) read the records' bodies. One record
    of the child by a practitioner whose name holds a NUL made PostgreSQL's reading of every
    record of that child fail (`\\u0000` cannot be cast to jsonb): the owner could no longer see
    who looked at the child at all - while SQLite reads it."""
    store = log.open_store()
    try:
        told, messages = notifying_record("a-told", "m-1")
        await store.append(told, messages)
        odd = audit_record("a-odd", access=access(name=NUL_NAME, subject="dev:RR8:mallory"))
        await store.append(odd)

        child = told.access.child_ref
        assert child is not None
        history = store.notified_records([child], ["social_care"], 25)
        assert [r["audit_id"] for r in history] == ["a-told"]
        seen = store.children_seen("dev:RR8:mallory", datetime(2026, 1, 1, tzinfo=UTC))
        assert seen == {child: set()}
        assert store.verify().ok
    finally:
        store.close()


@pytest.mark.anyio
async def test_one_record_postgresql_cannot_store_fails_alone_not_the_lookups_committed_with_it(
    log,
):
    """A token subject holding a NUL cannot be stored in a PostgreSQL text column. That lookup
    must fail closed - but the other lookups group-committed in the same transaction failed with
    it (AUDIT_UNAVAILABLE to other practitioners), where SQLite commits them."""
    store = log.open_store()
    try:
        bad = audit_record("a-bad", access=access(subject="dev:RR8:\x00mallory"))
        good = [audit_record(f"a-good-{n}") for n in range(3)]
        # Appended together, as concurrent lookups are: they share one group commit.
        results = await asyncio.gather(
            *(store.append(r) for r in (good[0], bad, *good[1:])), return_exceptions=True
        )
        committed = {r["audit_id"] for r in store.records()}
    finally:
        store.close()

    assert [type(r).__name__ for i, r in enumerate(results) if i != 1] == ["NoneType"] * 3
    assert {"a-good-0", "a-good-1", "a-good-2"} <= committed
    if log.name == "postgres":
        assert isinstance(results[1], AuditUnavailable)  # that one fails closed
