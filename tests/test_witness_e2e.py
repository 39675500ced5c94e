"""Witnesses of the audit log, end to end: a real gateway seals its log and sends the checkpoints
to real witnesses on loopback (a reference connector with `witness = true`, and a standalone
witness), which keep them across a restart; `childlookup audit verify --witness` then catches what
the chain alone cannot - a log cut back, wiped, or rewritten at its tail - naming the checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.app import create_witness_app
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer, free_port
from connectors.trust import RequestVerifier, ensure_key_pair, load_private_key, load_public_key
from connectors.witness import WITNESS_PATH, WitnessListing, WitnessStore
from gateway.audit import WITNESSING_LOCK_FILE, Checkpoint, Witness, WitnessDispatcher
from gateway.audit.witnessing import witness_url
from gateway.cli import main
from gateway.config import SourceConfig, WitnessConfig
from gateway.demo import reference_source
from gateway.signing import RequestSigner
from tests.audit.conftest import SqliteBackend
from tests.audit.test_chain import rehash_from
from tests.factories import NHS, audit_record, health_record
from tests.stack import (
    GATEWAY_ISSUER,
    Stack,
    eventually,
    gateway_verifier,
    running_gateway,
    write_records,
)

FAST = {"audit_seal_s": 0.05, "audit_witness_poll_s": 0.05}
"""Seal and send often enough for a test to watch each checkpoint arrive."""


@pytest.fixture(scope="module")
def gateway_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateway's request-signing key, its public half given to the witnesses out of band."""
    tmp = tmp_path_factory.mktemp("gateway-key")
    return ensure_key_pair(tmp / "gateway.pem", tmp / "gateway.pub.pem")


def gateway_signed(gateway_key: Path) -> RequestVerifier:
    return gateway_verifier(load_public_key(gateway_key.with_suffix(".pub.pem")))


@contextlib.contextmanager
def standalone_witness(db: Path, gateway_key: Path, name: str, port: int = 0) -> Iterator[str]:
    """`connector witness --name NAME --db DB` on loopback; yields its base URL."""
    store = WitnessStore(db)
    app = create_witness_app(store, name=name, verifier=gateway_signed(gateway_key))
    try:
        with BackgroundServer(app, port=port) as server:
            yield server.url
    finally:
        store.close()


@contextlib.contextmanager
def witnessing_connector(tmp: Path, gateway_key: Path) -> Iterator[SourceConfig]:
    """The reference health connector keeping checkpoints too (`connector serve --witness-db`);
    yields its source entry, with `witness = true`."""
    store = WitnessStore(tmp / "witness-health.sqlite3")
    app = create_reference_app(
        "health",
        write_records(tmp / "health.jsonl", [health_record()]),
        verifier=gateway_signed(gateway_key),
        witness=store,
    )
    try:
        with BackgroundServer(app) as server:
            yield reference_source("health", server.url).model_copy(update={"witness": True})
    finally:
        store.close()


def held(url: str) -> WitnessListing:
    """What the witness at `url` holds of the gateway's log, as anyone may read it."""
    response = httpx.get(
        url.rstrip("/") + WITNESS_PATH, params={"log": GATEWAY_ISSUER, "after": 0}, timeout=5
    )
    assert response.status_code == 200, response.text
    return WitnessListing.model_validate_json(response.content)


def held_up_to(url: str, seq: int) -> WitnessListing:
    """Wait until the witness at `url` holds a checkpoint at `seq` or later."""

    def reached() -> WitnessListing | None:
        listing = held(url)
        return listing if listing.checkpoints and listing.checkpoints[-1].seq >= seq else None

    return eventually(reached)


def as_checkpoints(listing: WitnessListing) -> list[Checkpoint]:
    return [Checkpoint(**c.model_dump()) for c in listing.checkpoints]


def look_up(gateway: Stack) -> None:
    """One lookup: one more record in the audit log."""
    gateway.lookup("gp", NHS, "DIRECT_CARE")


def in_state(gateway: Stack, witness: str, state: str) -> bool:
    """Whether the gateway's /metrics show it in `state` with `witness`."""
    page = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    return any(
        sample.labels == {"witness": witness, "state": state} and sample.value == 1
        for family in text_string_to_metric_families(page)
        if family.name == "childlookup_audit_witness_state"
        for sample in family.samples
    )


def verify(tmp: Path, *witnesses: str, archive: Path | None = None) -> int:
    args = ["audit", "verify", "--state-dir", str(tmp)]
    for url in witnesses:
        args += ["--witness", url]
    if archive is not None:
        args += ["--archive", str(archive)]
    return main(args)


def test_every_checkpoint_reaches_each_witness(tmp_path, gateway_key, capsys):
    with (
        witnessing_connector(tmp_path, gateway_key) as source,
        standalone_witness(tmp_path / "witness.sqlite3", gateway_key, "first") as url,
    ):
        connector = str(source.url).rstrip("/")
        witness = WitnessConfig(name="first", url=url)
        settings: dict[str, Any] = {"request_signing_key_file": gateway_key, **FAST}
        with running_gateway(tmp_path, [source], witnesses=[witness], **settings) as gw:
            for seq in (1, 2, 3):
                look_up(gw)
                by_connector = held_up_to(connector, seq)
                by_witness = held_up_to(url, seq)
            log = gw.components.audit.checkpoints(0, 100)
            assert eventually(lambda: in_state(gw, "health", "ok"))
            assert eventually(lambda: in_state(gw, "first", "ok"))

        assert [c.seq for c in log] == [1, 2, 3]  # each record sealed, the interval being 100
        assert as_checkpoints(by_connector) == log
        assert as_checkpoints(by_witness) == log
        assert by_witness.first_seen_seq == 1
        assert verify(tmp_path, connector, url) == 0
    out = capsys.readouterr().out
    assert f"agrees with witness {connector}: 3 checkpoints, latest #3" in out
    assert f"agrees with witness {url}: 3 checkpoints, latest #3" in out


def test_a_witness_down_for_a_while_catches_up_without_gaps(tmp_path, gateway_key):
    port = free_port()
    db = tmp_path / "witness.sqlite3"
    witness = WitnessConfig(name="restarted", url=f"http://127.0.0.1:{port}")
    with (
        witnessing_connector(tmp_path, gateway_key) as source,
        running_gateway(
            tmp_path,
            [source.model_copy(update={"witness": False})],
            request_signing_key_file=gateway_key,
            witnesses=[witness],
            **FAST,
        ) as gw,
    ):
        with standalone_witness(db, gateway_key, "restarted", port) as url:
            for seq in (1, 2):
                look_up(gw)
                assert eventually(lambda seq=seq: _sealed(gw) == seq)
            held_up_to(url, 2)
        for seq in (3, 4, 5):  # each sealed alone while the witness is down
            look_up(gw)
            assert eventually(lambda seq=seq: _sealed(gw) == seq)
        assert eventually(lambda: in_state(gw, "restarted", "failing"))
        missed = gw.components.audit.checkpoints(0, 100)
        assert missed[-1].seq == 5

        with standalone_witness(db, gateway_key, "restarted", port) as url:
            listing = held_up_to(url, 5)
            assert eventually(lambda: in_state(gw, "restarted", "ok"))
        log = gw.components.audit.checkpoints(0, 100)

    kept = as_checkpoints(listing)
    assert kept == log
    assert [c.prev for c in kept[1:]] == [c.digest() for c in kept[:-1]]


# --- what the chain alone cannot catch, and the witness does --------------------------------------


@dataclass
class Witnessed:
    """A gateway's log of six records, each sealed and held by a witness still serving at `url`;
    `gateway()` starts the gateway on that log again."""

    tmp: Path
    url: str
    source: SourceConfig
    gateway_key: Path

    def gateway(self) -> contextlib.AbstractContextManager[Stack]:
        return running_gateway(
            self.tmp,
            [self.source],
            request_signing_key_file=self.gateway_key,
            witnesses=[WitnessConfig(name="auditor", url=self.url)],
            **FAST,
        )

    def tamper(self, *statements: str) -> SqliteBackend:
        """An insider with the database file: triggers dropped, rows edited."""
        log = SqliteBackend(self.tmp / "audit.sqlite3")
        log.tamper(*statements)
        return log


@pytest.fixture
def witnessed(tmp_path, gateway_key) -> Iterator[Witnessed]:
    with (
        witnessing_connector(tmp_path, gateway_key) as source,
        standalone_witness(tmp_path / "witness.sqlite3", gateway_key, "auditor") as url,
    ):
        log = Witnessed(tmp_path, url, source.model_copy(update={"witness": False}), gateway_key)
        with log.gateway() as gw:
            for seq in range(1, 7):
                look_up(gw)
                held_up_to(url, seq)
        yield log


def rehash_tail(log: SqliteBackend, seq: int) -> None:
    """Edit record `seq`, re-hash the chain from it and delete the checkpoints over it: the
    chain alone then verifies."""
    log.tamper(f"UPDATE audit_log SET outcome = 'NOT_FOUND' WHERE seq = {seq:d}")  # noqa: S608
    rehash_from(log, seq)
    log.tamper(f"DELETE FROM audit_checkpoint WHERE seq >= {seq:d}")  # noqa: S608


CUT_BACK = ("DELETE FROM audit_log WHERE seq > 3", "DELETE FROM audit_checkpoint WHERE seq > 3")
WIPED = ("DELETE FROM audit_log", "DELETE FROM audit_checkpoint", "DELETE FROM audit_alert")


@pytest.mark.parametrize(
    ("tampering", "first_missing"),
    [(CUT_BACK, 4), (WIPED, 1), ("rehashed tail", 5)],
    ids=["cut back", "wiped", "rehashed tail"],
)
def test_a_log_the_chain_alone_passes_diverges_from_its_witness(
    witnessed, capsys, tampering, first_missing
):
    if tampering == "rehashed tail":
        rehash_tail(witnessed.tamper(), 5)
    else:
        witnessed.tamper(*tampering)
    capsys.readouterr()

    assert verify(witnessed.tmp) == 0
    assert "audit log intact" in capsys.readouterr().out
    assert verify(witnessed.tmp, witnessed.url) == 1
    chain, comparison = capsys.readouterr().out.splitlines()
    assert chain.startswith("audit log intact")
    assert comparison.startswith(
        f"audit log DIVERGES from witness {witnessed.url} at checkpoint #{first_missing}"
        f" ({first_missing} records, "
    )
    assert comparison.endswith("): the log has no such checkpoint")


def test_a_rewritten_tail_sealed_again_is_caught_by_the_gateway_and_by_verify(witnessed, capsys):
    """The insider re-hashes an edit of the last record, deletes the checkpoint over it and lets
    the gateway seal the log again: the new checkpoint is the gateway's own, but not the one the
    witness holds. The restarted gateway offers it (its newest) to the witness, which refuses it
    and keeps both as evidence; the gateway stops sending to it; verify names it."""
    rehash_tail(witnessed.tamper(), 6)
    with witnessed.gateway() as gw:
        assert eventually(lambda: in_state(gw, "auditor", "diverged"))
        resealed = gw.components.audit.checkpoints(5, 10)
    assert [c.seq for c in resealed] == [6]
    listing = held(witnessed.url)
    assert listing.checkpoints[-1].seq == 6
    (conflict,) = listing.conflicts
    assert (conflict.held.seq, conflict.offered.seq) == (6, 6)
    assert as_checkpoints(listing)[-1] != resealed[0]
    assert Checkpoint(**conflict.offered.model_dump()) == resealed[0]
    capsys.readouterr()

    assert verify(witnessed.tmp, witnessed.url) == 1
    out = capsys.readouterr().out
    assert f"DIVERGES from witness {witnessed.url} at checkpoint #6 (6 records, " in out
    assert "the log's checkpoint differs" in out


def test_verify_fails_closed_when_a_witness_cannot_be_read(witnessed, capsys):
    nobody = f"http://127.0.0.1:{free_port()}"
    capsys.readouterr()

    assert verify(witnessed.tmp, witnessed.url, nobody) == 1
    out = capsys.readouterr().out
    assert f"agrees with witness {witnessed.url}: 6 checkpoints, latest #6" in out
    assert f"cannot compare with witness {nobody}: it could not be reached" in out


def test_an_archived_log_still_agrees_with_its_witness_and_a_lost_segment_is_caught(
    witnessed, capsys
):
    archive = witnessed.tmp / "archive"
    tomorrow = "2999-01-01"
    assert (
        main(
            [
                "audit",
                "archive",
                "--state-dir",
                str(witnessed.tmp),
                "--to",
                str(archive),
                "--before",
                tomorrow,
            ]
        )
        == 0
    )
    assert "archived records 1..5" in capsys.readouterr().out

    # Without the segments, the checkpoints they hold are not compared; with them, all are.
    assert verify(witnessed.tmp, witnessed.url) == 0
    assert f"agrees with witness {witnessed.url}" in capsys.readouterr().out
    assert verify(witnessed.tmp, witnessed.url, archive=archive) == 0
    out = capsys.readouterr().out
    assert f"agrees with witness {witnessed.url}: 6 checkpoints, latest #6" in out

    (segment,) = archive.glob("audit-*.jsonl.gz")
    segment.unlink()
    assert verify(witnessed.tmp, witnessed.url, archive=archive) == 1
    assert f"segment {segment.name} (records 1..5) is not in {archive}" in capsys.readouterr().out


def test_a_witness_added_later_starts_from_the_newest_checkpoint(tmp_path, gateway_key):
    """A new witness is not sent the log's history: it could not vouch for checkpoints it did not
    see when they were made. It starts from the newest, and is kept up from there."""
    with witnessing_connector(tmp_path, gateway_key) as source:
        unwitnessed = source.model_copy(update={"witness": False})
        settings: dict[str, Any] = {"request_signing_key_file": gateway_key, **FAST}
        with running_gateway(tmp_path, [unwitnessed], **settings) as gw:
            for seq in (1, 2, 3):
                look_up(gw)
                assert eventually(lambda seq=seq: _sealed(gw) == seq)
        with (
            standalone_witness(tmp_path / "late.sqlite3", gateway_key, "late") as url,
            running_gateway(
                tmp_path, [unwitnessed], witnesses=[WitnessConfig(name="late", url=url)], **settings
            ) as gw,
        ):
            first = held_up_to(url, 3)
            look_up(gw)
            later = held_up_to(url, 4)
    assert first.first_seen_seq == 3  # of the log's checkpoints #1, #2 and #3
    assert [c.seq for c in later.checkpoints] == [3, 4]
    assert later.checkpoints[1].prev == later.checkpoints[0].digest()


def _sealed(gateway: Stack) -> int:
    """The number of the gateway's newest checkpoint: a lookup sealed alone moves it by one."""
    latest = gateway.components.audit.latest_checkpoint()
    return 0 if latest is None else latest.seq


@pytest.mark.anyio
async def test_one_process_of_a_host_witnesses_and_another_takes_over_when_it_stops(
    tmp_path, gateway_key
):
    """Two gateway processes on one host (as `--workers 2`) share the state directory: one seals
    and sends, the other waits; when the first stops, the second takes over."""
    store = SqliteBackend(tmp_path / "audit.sqlite3").open_store()
    signer = RequestSigner(load_private_key(gateway_key), issuer=GATEWAY_ISSUER)
    lock = tmp_path / WITNESSING_LOCK_FILE
    with standalone_witness(tmp_path / "witness.sqlite3", gateway_key, "host") as url:
        witness = Witness("host", witness_url(url), 2.0, None)
        async with httpx.AsyncClient() as client:
            first, second = (
                WitnessDispatcher(
                    store,
                    client,
                    signer,
                    [witness],
                    log=GATEWAY_ISSUER,
                    seal_s=0.05,
                    poll_s=0.05,
                    lock=lock,
                )
                for _ in range(2)
            )
            try:
                await store.append(audit_record("a-1"))
                assert first.leading
                first.start()
                second.start()
                assert not second.leading
                await _until(lambda: _latest_held(url) == 1)
                await first.aclose()  # stops, seals what is left, releases the lock

                await store.append(audit_record("a-2"))
                await _until(lambda: _latest_held(url) == 2)
                assert second.leading
            finally:
                await second.aclose()
    store.close()


def _latest_held(url: str) -> int:
    checkpoints = held(url).checkpoints
    return checkpoints[-1].seq if checkpoints else 0


async def _until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """`eventually`, without blocking the event loop the gateway's tasks run on."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
