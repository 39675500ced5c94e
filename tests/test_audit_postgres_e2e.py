"""A real gateway auditing to PostgreSQL: the schema made by `childlookup db upgrade`, lookups
audited and owner notifications delivered from the database, the auditors' commands reading it
back with CHILDLOOKUP_DATABASE_URL set, and a database cut off failing lookups closed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from connectors.notifications import NotificationLog
from connectors.protocol import Identifiers
from connectors.reference import create_reference_app
from connectors.serving import BackgroundServer
from connectors.trust import ensure_key_pair, load_public_key
from gateway.audit import AuditUnavailable, OutboxState, PostgresAuditStore, PostgresOutbox
from gateway.cli import main
from gateway.demo import reference_source
from tests.factories import (
    CHECKPOINT_KEY,
    NHS,
    audit_record,
    health_record,
    school_record,
    social_care_record,
    synthetic_nhs,
)
from tests.stack import (
    eventually,
    gateway_verifier,
    reference_stack,
    running_gateway,
    write_records,
)

OTHER = synthetic_nhs(7)
ON_A_PLAN = synthetic_nhs(31)


@pytest.fixture
def database(postgres_schema, monkeypatch, capsys):
    """This test's schema, made by the CLI as an operator would, and named to every later command
    through the environment."""
    url, schema = postgres_schema
    monkeypatch.setenv("CHILDLOOKUP_DATABASE_URL", url)
    monkeypatch.setenv("CHILDLOOKUP_DATABASE_SCHEMA", schema)
    assert main(["db", "upgrade"]) == 0
    assert f"audit database schema {schema} at revision" in capsys.readouterr().out
    return url, schema


def test_lookups_audited_in_postgres_verify_and_read_back_through_the_cli(
    tmp_path, database, capsys
):
    url, schema = database
    settings = {"database_url": url, "database_schema": schema}
    records = {"health": [health_record()], "education": [school_record()]}
    with reference_stack(tmp_path, records, **settings) as gateway:
        found = gateway.lookup("health_visitor", NHS)["data"]["child"]
        gateway.lookup("gp", OTHER, "DIRECT_CARE")
        gateway.lookup("health_visitor", NHS, "DIRECT_CARE")
    assert found["outcome"] == "FOUND"
    state = str(tmp_path)

    assert main(["audit", "verify", "--state-dir", state]) == 0
    assert "intact: 3 records" in capsys.readouterr().out
    assert main(["audit", "query", "--child", NHS, "--state-dir", state]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "2 records"
    assert found["auditId"] in out
    assert NHS not in out
    # The school's record held the child's UPN: the lookup is on the child's trail by UPN too.
    upn = school_record().identifiers.upn
    assert main(["audit", "query", "--child-upn", upn, "--state-dir", state]) == 0
    out, _ = capsys.readouterr()
    assert found["auditId"] in out
    assert upn not in out
    assert main(["audit", "alerts", "--state-dir", state]) == 0
    assert capsys.readouterr().err.strip() == "0 alerts"

    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("SET session_replication_role = replica")  # the superuser, triggers off
        conn.execute("UPDATE audit_log SET body = replace(body, 'DIRECT_CARE', 'X') WHERE seq = 2")
    assert main(["audit", "verify", "--state-dir", state]) == 1
    assert "TAMPERED at record #2" in capsys.readouterr().out


def test_the_owner_is_told_from_the_postgres_outbox(tmp_path, database):
    url, schema = database
    key = ensure_key_pair(tmp_path / "gateway.pem", tmp_path / "gateway.pub.pem")
    la_records = [
        social_care_record(
            ON_A_PLAN, record_id="LA-CP-1", identifiers=Identifiers(nhs_number=ON_A_PLAN)
        )
    ]
    received = NotificationLog()
    agency = create_reference_app(
        "social_care",
        write_records(tmp_path / "social_care.jsonl", la_records),
        verifier=gateway_verifier(load_public_key(tmp_path / "gateway.pub.pem")),
        notifications=received,
    )
    with BackgroundServer(agency) as server:
        sources = [reference_source("social_care", server.url)]
        with running_gateway(
            tmp_path,
            sources,
            request_signing_key_file=key,
            database_url=url,
            database_schema=schema,
        ) as gateway:
            audit_id = gateway.lookup("ed_clinician", ON_A_PLAN, "DIRECT_CARE")["data"]["child"][
                "auditId"
            ]
            (told,) = eventually(lambda: [n for n in received.recent(10) if n.audit_id == audit_id])

    outbox = PostgresOutbox(url, schema)
    try:
        (entry,) = eventually(
            lambda: [e for e in outbox.entries(audit_id) if e.state is OutboxState.DELIVERED]
        )
    finally:
        outbox.close()
    assert entry.message_id == told.message_id
    assert entry.payload is None


class Link:
    """A TCP link from the gateway to PostgreSQL that a test can cut, as a network would."""

    def __init__(self, port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._target = port
        self._open = threading.Event()
        self._open.set()
        self._silent = threading.Event()
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while self._open.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()
        self._listener.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self._silent.is_set():
                    sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def silence(self) -> None:
        """Connections stay up but nothing gets through, as when packets are dropped."""
        self._silent.set()

    def cut(self) -> None:
        """Every connection through the link drops, and no new one gets through."""
        self._open.clear()
        self._accepting.join()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def link(database) -> Iterator[tuple[str, Link]]:
    """The database URL through a cuttable link, and the link."""
    url, _ = database
    link = Link(5432)
    yield url.replace(":5432/", f":{link.port}/"), link
    link.cut()


def test_a_database_cut_off_fails_lookups_closed_and_the_instance_unready(tmp_path, database, link):
    _, schema = database
    through_link, cable = link
    settings = {"database_url": through_link, "database_schema": schema}
    with reference_stack(tmp_path, {"health": [health_record()]}, **settings) as gateway:
        assert gateway.lookup("gp", NHS, "DIRECT_CARE")["data"]["child"]["outcome"] == "FOUND"
        assert httpx.get(f"{gateway.url}/readyz", timeout=10).status_code == 200

        cable.cut()
        refused = gateway.lookup("gp", NHS, "DIRECT_CARE")
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10)

    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
    assert "Amelia" not in str(refused)
    assert ready.status_code == 503
    assert ready.json()["checks"]["audit"] is False


def test_a_database_gone_silent_fails_appends_in_bounded_time(database, link):
    _, schema = database
    through_link, cable = link
    store = PostgresAuditStore(through_link, schema, checkpoint_key=CHECKPOINT_KEY, timeout_s=0.5)
    try:
        asyncio.run(store.append(audit_record("before")))
        cable.silence()
        started = time.monotonic()
        with pytest.raises(AuditUnavailable):
            asyncio.run(store.append(audit_record("unanswered")))
        writable = store.is_writable()
        waited = time.monotonic() - started
    finally:
        cable.cut()
        store.close()

    assert not writable
    assert waited < 5
