"""The connector SDK as a witness of a gateway's audit log (connectors.witness): it keeps, per log,
an unbroken run of the checkpoints the gateway signed, refuses what does not follow on, records
what contradicts what it holds, and lists it all to anyone. Witnesses are real apps on loopback
over real SQLite files; the checkpoints are signed by the gateway's own checkpoint code."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.app import create_connector_app
from connectors.cli import main
from connectors.openapi import openapi_document
from connectors.protocol import ErrorCode, ErrorResponse
from connectors.serving import BackgroundServer, free_port
from connectors.trust import (
    JWKS_PATH,
    SIGNATURE_HEADER,
    AnswerSigner,
    StaticKey,
    jwks_document,
    verify_answer,
)
from connectors.witness import (
    MAX_BATCH,
    MAX_REQUEST_BYTES,
    WITNESS_PATH,
    SignedCheckpoint,
    WitnessListing,
    WitnessProblem,
    WitnessReceipt,
    WitnessRequest,
    WitnessStore,
)
from gateway.audit.checkpoints import GENESIS, Checkpoint, CheckpointKeys
from tests.processes import CLI, stop, wait_for
from tests.stack import GATEWAY_ISSUER, GATEWAY_KEY, GATEWAY_SIGNER, NoRecords, gateway_verifier

LOG = "childlookup-gateway"
SOURCE = "social_care"
CHECKPOINT_KEYS = CheckpointKeys.signing_with(Ed25519PrivateKey.generate())
SOCIAL_CARE_APP = partial(create_connector_app, NoRecords(), source=SOURCE)
"""The social care connector over no records, as a witness needs nothing more."""


def signed_checkpoints(count: int, *, after: Checkpoint | None = None) -> list[Checkpoint]:
    """`count` checkpoints as the gateway signs them, every 100 records, each naming the one
    before (the first names `after`, or genesis)."""
    checkpoints: list[Checkpoint] = []
    previous = after
    for _ in range(count):
        seq = 100 if previous is None else previous.seq + 100
        previous = CHECKPOINT_KEYS.sign(
            seq,
            seq,
            hashlib.sha256(f"head {seq}".encode()).hexdigest(),
            datetime.now(UTC),
            GENESIS if previous is None else previous.digest(),
        )
        checkpoints.append(previous)
    return checkpoints


def chain(count: int) -> list[SignedCheckpoint]:
    return [witnessed(checkpoint) for checkpoint in signed_checkpoints(count)]


def witnessed(checkpoint: Checkpoint) -> SignedCheckpoint:
    return SignedCheckpoint(**asdict(checkpoint))


def rewritten(checkpoint: SignedCheckpoint) -> SignedCheckpoint:
    """The same checkpoint number over a different chain head: the log was rewritten."""
    return checkpoint.model_copy(update={"head": hashlib.sha256(b"rewritten").hexdigest()})


class Witness:
    """A client of a witness on loopback, sending as the gateway does."""

    def __init__(self, client: httpx.Client, audience: str = SOURCE) -> None:
        self.client = client
        self.audience = audience

    def post(self, body: bytes, authorization: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization
        return self.client.post(WITNESS_PATH, content=body, headers=headers)

    def send(self, checkpoints: list[SignedCheckpoint], log: str = LOG) -> WitnessReceipt:
        body = WitnessRequest(log=log, checkpoints=checkpoints).model_dump_json().encode()
        response = self.post(body, GATEWAY_SIGNER.authorization(self.audience, body))
        assert response.status_code == 200, response.text
        return WitnessReceipt.model_validate_json(response.content)

    def listing(self, log: str = LOG, after: int | None = None) -> WitnessListing:
        params = {"log": log} | ({} if after is None else {"after": str(after)})
        response = self.client.get(WITNESS_PATH, params=params)
        assert response.status_code == 200, response.text
        return WitnessListing.model_validate_json(response.content)


@contextlib.contextmanager
def witness_connector(
    database: Path,
    signer: AnswerSigner | None = None,
    *,
    app: Callable[..., Starlette] = SOCIAL_CARE_APP,
    audience: str = SOURCE,
) -> Iterator[Witness]:
    """The connector `app(verifier=, signer=, witness=)` makes, named `audience`, witnessing
    into `database` and served on loopback."""
    store = WitnessStore(database)
    try:
        served = app(
            verifier=gateway_verifier(GATEWAY_KEY.public_key()), signer=signer, witness=store
        )
        with BackgroundServer(served) as server, httpx.Client(base_url=server.url, timeout=30) as c:
            yield Witness(c, audience)
    finally:
        store.close()


def checkpoints_kept_by(app: Callable[..., Starlette], database: Path, audience: str) -> list[int]:
    """Two checkpoints sent to the connector `app` makes (as for `witness_connector`), signed as
    the gateway signs them: the sequence numbers it then lists, once it has accepted both."""
    with witness_connector(database, app=app, audience=audience) as witness:
        receipt = witness.send(chain(2))
        listing = witness.listing()
    assert (receipt.accepted, receipt.problem) == (2, None)
    return [checkpoint.seq for checkpoint in listing.checkpoints]


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[Witness]:
    with witness_connector(tmp_path / "witness.db") as client:
        yield client


def refusal(response: httpx.Response) -> ErrorCode:
    return ErrorResponse.model_validate_json(response.content).error.code


# --- the statement -------------------------------------------------------------------------------


def test_a_checkpoints_statement_and_digest_are_the_gateways():
    [checkpoint] = signed_checkpoints(1)
    copy = witnessed(checkpoint)

    assert copy.statement() == checkpoint.statement()
    assert copy.digest() == checkpoint.digest()
    assert CHECKPOINT_KEYS.problem_with(replace(checkpoint, signature=copy.signature)) is None


# --- the witness rule ----------------------------------------------------------------------------


def test_checkpoints_that_follow_on_are_kept_and_listed(witness):
    checkpoints = chain(3)

    receipt = witness.send(checkpoints)

    assert (receipt.accepted, receipt.latest, receipt.problem) == (3, checkpoints[-1], None)
    listing = witness.listing()
    assert listing.checkpoints == checkpoints
    assert listing.first_seen_seq == 100
    assert listing.conflicts == []


def test_checkpoints_sent_again_are_accepted_and_kept_once(witness):
    checkpoints = chain(3)
    witness.send(checkpoints)

    again = witness.send(checkpoints)

    assert (again.accepted, again.latest, again.problem) == (3, checkpoints[-1], None)
    assert witness.listing().checkpoints == checkpoints


def test_a_checkpoint_that_skips_ahead_is_refused_with_the_latest_held(witness):
    checkpoints = chain(4)
    witness.send(checkpoints[:2])

    receipt = witness.send(checkpoints[3:])

    assert receipt.problem is WitnessProblem.NOT_CONSECUTIVE
    assert (receipt.accepted, receipt.latest) == (0, checkpoints[1])
    assert witness.listing().checkpoints == checkpoints[:2]


def test_a_batch_stops_at_the_first_checkpoint_that_does_not_follow_on(witness):
    checkpoints = chain(5)
    forged_link = checkpoints[3].model_copy(update={"prev": "f" * 64})

    receipt = witness.send([*checkpoints[:3], forged_link, checkpoints[4]])

    assert receipt.problem is WitnessProblem.NOT_CONSECUTIVE
    assert (receipt.accepted, receipt.latest) == (3, checkpoints[2])
    assert witness.listing().checkpoints == checkpoints[:3]


def test_a_contradicting_checkpoint_is_refused_and_kept_as_evidence(witness):
    checkpoints = chain(3)
    witness.send(checkpoints[:2])
    other = rewritten(checkpoints[1])

    receipt = witness.send([checkpoints[0], other, checkpoints[2]])
    witness.send([other])  # offered again: still one conflict

    assert receipt.problem is WitnessProblem.CONFLICT
    assert (receipt.accepted, receipt.latest) == (1, checkpoints[1])
    listing = witness.listing()
    assert listing.checkpoints == checkpoints[:2]
    [conflict] = listing.conflicts
    assert (conflict.held, conflict.offered) == (checkpoints[1], other)


def test_a_witness_that_was_down_catches_up_from_its_latest_without_gaps(witness):
    checkpoints = chain(12)
    witness.send(checkpoints[:3])
    # Down while checkpoints 3-7 were signed; the gateway sends what is new since then.
    receipt = witness.send(checkpoints[8:])
    assert receipt.problem is WitnessProblem.NOT_CONSECUTIVE
    assert receipt.latest is not None

    resume = next(i for i, c in enumerate(checkpoints) if c == receipt.latest) + 1
    for start in range(resume, len(checkpoints), 4):
        assert witness.send(checkpoints[start : start + 4]).problem is None

    held = witness.listing().checkpoints
    assert held == checkpoints
    assert all(later.prev == earlier.digest() for earlier, later in itertools.pairwise(held))


def test_a_witness_started_late_accepts_older_checkpoints_without_keeping_them(witness):
    checkpoints = chain(6)
    witness.send(checkpoints[3:5])

    receipt = witness.send(checkpoints)

    assert (receipt.accepted, receipt.latest, receipt.problem) == (6, checkpoints[5], None)
    listing = witness.listing()
    assert listing.checkpoints == checkpoints[3:]
    assert listing.first_seen_seq == checkpoints[3].seq


def test_each_log_is_witnessed_on_its_own(witness):
    witness.send(chain(2), log="gateway-a")

    assert witness.send(chain(1), log="gateway-b").problem is None
    assert len(witness.listing("gateway-a").checkpoints) == 2
    assert len(witness.listing("gateway-b").checkpoints) == 1


# --- the listing ---------------------------------------------------------------------------------


def test_an_unknown_log_lists_nothing(witness):
    listing = witness.listing("never-seen")

    assert (listing.checkpoints, listing.first_seen_seq, listing.conflicts) == ([], None, [])


def test_the_listing_pages_after_a_sequence_number(witness):
    checkpoints = chain(MAX_BATCH + 20)
    witness.send(checkpoints[:MAX_BATCH])
    witness.send(checkpoints[MAX_BATCH:])

    first = witness.listing()
    second = witness.listing(after=first.checkpoints[-1].seq)
    last = witness.listing(after=second.checkpoints[-1].seq)

    assert first.checkpoints == checkpoints[:MAX_BATCH]
    assert second.checkpoints == checkpoints[MAX_BATCH:]
    assert last.checkpoints == []
    assert second.first_seen_seq == checkpoints[0].seq


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({}, id="no-log"),
        pytest.param({"log": ""}, id="empty-log"),
        pytest.param({"log": "not a log name"}, id="bad-log"),
        pytest.param({"log": LOG, "after": "-1"}, id="negative-after"),
        pytest.param({"log": LOG, "after": "ten"}, id="non-numeric-after"),
        pytest.param({"log": LOG, "after": ""}, id="empty-after"),
    ],
)
def test_a_listing_asked_for_badly_is_refused_with_a_clear_error(witness, query):
    response = witness.client.get(WITNESS_PATH, params=query)

    assert response.status_code == 400
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.BAD_REQUEST
    assert "?log=" in error.message or "?after=" in error.message


# --- what the receiver refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(lambda body: None, id="unsigned"),
        pytest.param(
            lambda body: GATEWAY_SIGNER.authorization("health", body), id="for-another-agency"
        ),
    ],
)
def test_checkpoints_not_signed_by_the_gateway_for_this_witness_are_refused(witness, authorization):
    body = WitnessRequest(log=LOG, checkpoints=chain(1)).model_dump_json().encode()

    response = witness.post(body, authorization(body))

    assert response.status_code == 401
    assert refusal(response) is ErrorCode.UNAUTHENTICATED
    assert witness.listing().checkpoints == []


def test_a_full_batch_fits_the_body_limit_and_more_is_refused(witness):
    full = WitnessRequest(log=LOG, checkpoints=chain(MAX_BATCH)).model_dump_json().encode()
    oversize = full + b" " * (MAX_REQUEST_BYTES - len(full) + 1)

    refused = witness.post(oversize, GATEWAY_SIGNER.authorization(SOURCE, oversize))
    accepted = witness.post(full, GATEWAY_SIGNER.authorization(SOURCE, full))

    assert refused.status_code == 413
    assert refusal(refused) is ErrorCode.BAD_REQUEST
    assert accepted.status_code == 200
    assert WitnessReceipt.model_validate_json(accepted.content).accepted == MAX_BATCH


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"protocol_version": "1", "log": "x", "checkpoints": []}', id="empty"),
        pytest.param(b'{"protocol_version": "1", "log": "bad log", "checkpoints": []}', id="log"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(
            b'{"protocol_version": "1", "log": "x", "checkpoints": [{"seq": 9223372036854775808,'
            b' "records": 1, "head": "'
            + b"0"
            * 64
            + b'", "at": "2026-11-29T10:00:00.000000+00:00",'
            b' "prev": "'
            + b"0" * 64
            + b'", "key": "'
            + b"0" * 16
            + b'", "signature": "'
            + b"0" * 128
            + b'"}]}',
            id="seq past a database integer",  # was 503, "retry later": for ever
        ),
    ],
)
def test_a_malformed_witness_request_is_refused_with_a_clear_error(witness, body):
    response = witness.post(body, GATEWAY_SIGNER.authorization(SOURCE, body))

    assert response.status_code == 400
    error = ErrorResponse.model_validate_json(response.content).error
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.message.startswith("Invalid witness request")


def test_a_busy_witness_store_asks_the_gateway_to_send_again_later(tmp_path):
    database = tmp_path / "witness.db"
    with witness_connector(database) as witness:
        witness.send(chain(1))
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # a backup or a second witness on the same file
        try:
            body = WitnessRequest(log=LOG, checkpoints=chain(1)).model_dump_json().encode()
            response = witness.post(body, GATEWAY_SIGNER.authorization(SOURCE, body))
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    assert response.status_code == 503
    assert refusal(response) is ErrorCode.UNAVAILABLE


def test_a_witness_with_a_signing_key_signs_its_receipts_and_listings(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    with witness_connector(tmp_path / "witness.db", signer=AnswerSigner(key)) as witness:
        body = WitnessRequest(log=LOG, checkpoints=chain(1)).model_dump_json().encode()
        receipt = witness.post(body, GATEWAY_SIGNER.authorization(SOURCE, body))
        listing = witness.client.get(WITNESS_PATH, params={"log": LOG})

    for response in (receipt, listing):
        signature = response.headers.get(SIGNATURE_HEADER)
        asyncio.run(
            verify_answer(signature, response.content, StaticKey(key.public_key()), source=SOURCE)
        )


def test_the_published_contract_lists_every_status_the_witness_answers_with():
    # Each status the tests above provoke: 400, 401, 413, 503; the listing's 400 and 503.
    witness_path = openapi_document()["paths"][WITNESS_PATH]

    assert set(witness_path["post"]["responses"]) == {"200", "400", "401", "413", "503"}
    assert set(witness_path["get"]["responses"]) == {"200", "400", "503"}


def test_receiving_checkpoints_without_a_verifier_is_refused_at_start_up(tmp_path):
    with pytest.raises(ValueError, match="verifier"):
        create_connector_app(NoRecords(), source=SOURCE, witness=WitnessStore(tmp_path / "w.db"))


# --- durability ----------------------------------------------------------------------------------


def test_what_a_witness_holds_survives_a_restart(tmp_path):
    database = tmp_path / "witness.db"
    checkpoints = chain(4)
    with witness_connector(database) as witness:
        witness.send(checkpoints[:2])
        witness.send([rewritten(checkpoints[0])])

    with witness_connector(database) as restarted:
        listing = restarted.listing()
        skipping = restarted.send(checkpoints[3:])
        following = restarted.send(checkpoints[2:])

    assert listing.checkpoints == checkpoints[:2]
    assert len(listing.conflicts) == 1
    assert (skipping.problem, skipping.latest) == (WitnessProblem.NOT_CONSECUTIVE, checkpoints[1])
    assert following.problem is None


def test_a_file_that_is_not_a_witness_database_is_refused(tmp_path):
    path = tmp_path / "witness.db"
    path.write_text("not a database", encoding="utf-8")

    with pytest.raises(ValueError, match="cannot open the witness database"):
        WitnessStore(path)


# --- the command line ----------------------------------------------------------------------------


@contextlib.contextmanager
def published_gateway_keys() -> Iterator[str]:
    """The gateway's request-signing key published as a JWKS; yields its URL."""

    async def jwks(request: Request) -> Response:
        return JSONResponse(jwks_document([GATEWAY_KEY.public_key()]))

    with BackgroundServer(Starlette(routes=[Route(JWKS_PATH, jwks)])) as server:
        yield server.url + JWKS_PATH


@pytest.mark.parametrize(
    ("command", "audience"),
    [
        pytest.param(
            ["witness", "--name", "auditor-witness", "--db"], "auditor-witness", id="alone"
        ),
        pytest.param(
            ["serve", "--agency", SOURCE, "--records", os.devnull, "--witness-db"],
            SOURCE,
            id="in-a-connector",
        ),
        pytest.param(
            ["serve", "--agency", "education", "--ctf", "{tmp_path}", "--witness-db"],
            "education",
            id="in-a-ctf-connector",
        ),
    ],
)
def test_the_command_line_serves_a_witness(tmp_path, command, audience):
    port = free_port()
    with published_gateway_keys() as jwks_url:
        process = subprocess.Popen(
            [
                *CLI,
                "connector",
                *(part.format(tmp_path=tmp_path) for part in command),
                str(tmp_path / "witness.db"),
                "--port",
                str(port),
                "--gateway-jwks",
                jwks_url,
                "--gateway-issuer",
                GATEWAY_ISSUER,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            assert wait_for(url + "/healthz", process).json()["source"] == audience
            with httpx.Client(base_url=url, timeout=10) as client:
                receipt = Witness(client, audience).send(chain(2))
        finally:
            stop(process)

    assert (receipt.accepted, receipt.problem) == (2, None)


def test_a_witness_db_without_the_gateways_keys_is_one_clear_line(tmp_path, capsys):
    unsigned = ["serve", "--agency", SOURCE, "--ctf", str(tmp_path), "--port", "0"]

    code = main([*unsigned, "--witness-db", str(tmp_path / "witness.db")])

    assert code == 2
    assert "needs --gateway-jwks" in capsys.readouterr().err
