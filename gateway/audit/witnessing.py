"""Sealing the audit log and sending its signed checkpoints to witnesses.

Signatures show that a checkpoint is the gateway's, but not that the log still reaches it: whoever
runs the database could cut the log back, with every checkpoint after the cut, and what is left
verifies (gateway.audit.chain). So every checkpoint also goes to witnesses the gateway's operator
does not run - the connectors configured with `witness = true`, and the `[[witnesses]]` of the
sources file - which keep them (connectors.witness); `childlookup audit verify --witness URL`
compares the log with what each holds (gateway.audit.witness_check).

The `WitnessDispatcher`, a background task of the gateway, does two things:
- it seals the log at most every CHILDLOOKUP_AUDIT_SEAL_S when records were written since the
  latest checkpoint (and once more when the gateway stops), so the unsigned tail of the log, the
  part a witness cannot speak for, is seconds old at most;
- every CHILDLOOKUP_AUDIT_WITNESS_POLL_S, and straight after sealing, it sends each witness the
  checkpoints it does not hold yet, oldest first, from the latest it acknowledged. It learns that
  latest in one exchange, offering the log's newest checkpoint; a witness that was down is sent
  what it missed when it is back, without gaps (the witness accepts only a checkpoint that follows
  on from its latest, and answers with that latest when one does not).

Of the gateway processes on one host (`--workers N`), one does this at a time: the one holding an
exclusive lock on `audit-witnessing.lock` in the state directory; when it stops or dies the lock
is released and another takes over at its next round. Processes on other hosts (PostgreSQL) each
lead their own host: the witnesses absorb the duplicates.

A witness holding a checkpoint the log does not hold, or holds differently, has seen a log that
this one contradicts: that is logged as an ERROR (`audit_witness_diverged`, naming the witness and
the checkpoint's sequence number, nothing else) and nothing more is sent to it until the gateway
restarts. Each witness's state is published as metrics (gateway.metrics.WitnessState).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import itertools
import logging
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import TypeAdapter, ValidationError

from connectors.bounded_reads import AnswerTooLarge, read_answer
from connectors.trust import SIGNATURE_HEADER, TrustError
from connectors.witness import (
    MAX_BATCH,
    WITNESS_PATH,
    LogName,
    SignedCheckpoint,
    WitnessListing,
    WitnessProblem,
    WitnessReceipt,
    WitnessRequest,
)
from gateway import metrics
from gateway.audit.checkpoints import Checkpoint
from gateway.audit.store import AuditStore
from gateway.audit.types import AuditUnavailable
from gateway.config import SourceConfig, WitnessConfig
from gateway.metrics import WitnessState
from gateway.signing import AnswerVerifier, RequestSigner

WITNESSING_LOCK_FILE: Final = "audit-witnessing.lock"
"""In the state directory: held by the one process of a host that seals and sends."""
SHUTDOWN_SEND_S: Final = 2.0
"""How long a stopping gateway may spend sending its last seal to the witnesses."""

MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
"""The most of a witness's answer that is read. A listing page holds at most MAX_BATCH checkpoints
(what one witness request may carry: 256 KiB) and the conflicts the witness recorded, a receipt
one checkpoint; an answer far past that is not one, and a broken or hostile witness must not make
the gateway, or an auditor's `verify --witness`, buffer without bound."""

_log = logging.getLogger("childlookup.witness")
_alerts = logging.getLogger("childlookup.alerts")


class WitnessError(Exception):
    """A witness could not be asked, or its answer could not be trusted; the message says why,
    for a person, and holds no personal data."""


@dataclass(frozen=True)
class Witness:
    """One witness, as the gateway reaches it."""

    name: str
    """The audience of the gateway's requests to it; the `witness` label of its metrics."""
    url: str
    """Where its checkpoints are (`WITNESS_PATH`)."""
    timeout_s: float
    verifier: AnswerVerifier | None
    """Checks its receipts' signatures, when it is configured with an answer key."""


def witness_url(base: str) -> str:
    """A witness's checkpoints endpoint, from its base URL (or the endpoint itself)."""
    base = base.rstrip("/")
    return base if base.endswith(WITNESS_PATH) else base + WITNESS_PATH


def configured_witnesses(
    log: str,
    sources: Sequence[SourceConfig],
    witnesses: Sequence[WitnessConfig],
    answer_verifiers: Mapping[str, AnswerVerifier],
    tls: ssl.SSLContext | None = None,
) -> tuple[Witness, ...]:
    """The sources with `witness = true` (their answer keys check receipts too) and the
    configured witnesses, whose published keys are fetched over `tls` (as they are reached).
    Raises ValueError when there are witnesses but `log` (the audit log's name, by default the
    gateway's id) cannot name a log to them."""
    found = [
        Witness(s.name, witness_url(str(s.url)), s.timeout_ms / 1000, answer_verifiers.get(s.name))
        for s in sources
        if s.witness
    ]
    found += [
        Witness(
            w.name, witness_url(str(w.url)), w.timeout_ms / 1000, AnswerVerifier.for_party(w, tls)
        )
        for w in witnesses
    ]
    if found:
        try:
            TypeAdapter(LogName).validate_python(log)
        except ValidationError:
            raise ValueError(
                f"CHILDLOOKUP_GATEWAY_ID {log!r} cannot name the audit log to witnesses: set"
                " CHILDLOOKUP_AUDIT_LOG_NAME (letters, digits and . _ : - only, at most 128)"
            ) from None
    return tuple(found)


async def witnessed(
    client: httpx.AsyncClient,
    url: str,
    log: str,
    *,
    timeout_s: float,
    read_to: int | None = None,
) -> WitnessListing:
    """What the witness at `url` holds for `log`, page by page, with its conflicts: every page,
    or, given `read_to`, up to the first page reaching past that sequence number - a witness that
    lists pages without end (broken, or hostile) is then read only as far as shows it holds
    checkpoints the log never made. Raises WitnessError when it cannot be read."""
    pages: list[WitnessListing] = []
    after = 0
    while True:
        page = await _listing_page(client, url, log, after, timeout_s)
        seqs = [after, *(c.seq for c in page.checkpoints)]
        if (
            page.log != log
            or len(page.checkpoints) > MAX_BATCH
            or any(a >= b for a, b in itertools.pairwise(seqs))
        ):
            # Each page must move on by a whole page: one moving on by one checkpoint at a time
            # would be read until `read_to`, a request and a page held for each.
            raise WitnessError(
                "its listing is not the one asked for (another log, disordered, or longer than a"
                " page)"
            )
        pages.append(page)
        if len(page.checkpoints) < MAX_BATCH:
            break
        after = page.checkpoints[-1].seq
        if read_to is not None and after > read_to:
            break
    return WitnessListing(
        log=log,
        checkpoints=[c for page in pages for c in page.checkpoints],
        first_seen_seq=pages[0].first_seen_seq,
        conflicts=pages[-1].conflicts,
    )


async def _listing_page(
    client: httpx.AsyncClient, url: str, log: str, after: int, timeout_s: float
) -> WitnessListing:
    response, body = await _exchange(
        client, "GET", url, params={"log": log, "after": after}, timeout_s=timeout_s
    )
    if response.status_code != 200:
        raise WitnessError(f"it answered HTTP {response.status_code}")
    try:
        return WitnessListing.model_validate_json(body)
    except ValidationError:
        raise WitnessError("its answer is not a witness listing") from None


async def _exchange(
    client: httpx.AsyncClient, method: str, url: str, *, timeout_s: float, **options: Any
) -> tuple[httpx.Response, bytes]:
    """The answer to one request and its body, read to at most MAX_ANSWER_BYTES and whole within
    `timeout_s` (connectors.bounded_reads), else WitnessError, as when the witness cannot be
    reached or read."""
    try:
        return await read_answer(
            client,
            method,
            url,
            max_bytes=MAX_ANSWER_BYTES,
            within_s=timeout_s,
            **options,
        )
    except AnswerTooLarge:
        raise WitnessError(f"its answer is larger than {MAX_ANSWER_BYTES} bytes") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise WitnessError(_failure(error)) from error


def _failure(error: httpx.HTTPError | httpx.InvalidURL) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"not a URL it can be reached at ({error})"
    return f"it could not be reached ({type(error).__name__})"


def as_checkpoint(signed: SignedCheckpoint) -> Checkpoint:
    return Checkpoint(**signed.model_dump())


@dataclass
class _Progress:
    """What the gateway knows of one witness."""

    known: bool = False
    """Whether `latest` has been learnt (from a receipt, or, while the log has no checkpoint, the
    first page of its listing)."""
    latest: Checkpoint | None = None
    """The newest checkpoint it holds."""
    diverged: bool = False


class _Leadership:
    """An exclusive, non-blocking lock on a file: held by one process of a host at a time, and
    released by the kernel when its holder dies. None: always held (one process, as in tests)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fd: int | None = None

    def held(self) -> bool:
        if self._path is None or self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        _log.info("this process seals the audit log and keeps its witnesses up to date")
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WitnessDispatcher:
    """Seals the log and keeps the witnesses up to date, in the background: `start` it with the
    gateway, `aclose` at the end."""

    def __init__(
        self,
        store: AuditStore,
        client: httpx.AsyncClient,
        signer: RequestSigner,
        witnesses: Sequence[Witness],
        *,
        log: str,
        seal_s: float,
        poll_s: float,
        lock: Path | None = None,
    ) -> None:
        """`lock`: the file whose lock makes this process the one of its host that seals and
        sends (see the module notes); None, always this one."""
        self._store = store
        self._client = client
        self._signer = signer
        self._witnesses = tuple(witnesses)
        self._log = log
        self._seal_s = seal_s
        self._poll_s = poll_s
        self._progress = {w.name: _Progress() for w in self._witnesses}
        self._ours = 0
        """The newest checkpoint's sequence number this process has seen in the log."""
        self._next_seal = 0.0
        self._task: asyncio.Task[None] | None = None
        self._leadership = _Leadership(lock)

    @property
    def leading(self) -> bool:
        """Whether this process seals the log and sends to the witnesses (see `lock`)."""
        return self._leadership.held()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        """Stop, seal what was written since the latest checkpoint, and offer it to the
        witnesses for at most SHUTDOWN_SEND_S (those not reached get it from the next gateway)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._leadership.held():
            await self._round(seal=True, send_within=SHUTDOWN_SEND_S)
        self._leadership.release()

    async def _run(self) -> None:
        while True:
            if not self._leadership.held():
                await asyncio.sleep(self._poll_s)
                continue
            due = time.monotonic() >= self._next_seal
            if due:
                self._next_seal = time.monotonic() + self._seal_s
            await self._round(seal=due)
            await asyncio.sleep(min(self._poll_s, max(0.0, self._next_seal - time.monotonic())))

    async def _round(self, *, seal: bool, send_within: float | None = None) -> None:
        try:
            if seal:
                await self._seal()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(send_within):
                    await self.send()
        except Exception as error:
            # The loop must outlive any one failure (a locked database, a bug), or the log would
            # go unsealed and unwitnessed until a restart.
            _log.error(
                "audit witnessing failed",
                extra={"event": "audit_witness_error", "context": {"error": type(error).__name__}},
            )

    async def _seal(self) -> None:
        try:
            sealed = await asyncio.to_thread(self._store.seal)
        except AuditUnavailable as error:
            _log.warning(
                "audit log not sealed; will retry",
                extra={"event": "audit_seal_failed", "context": {"error": str(error)}},
            )
            return
        if sealed is not None:
            self._ours = max(self._ours, sealed.seq)

    async def send(self) -> None:
        """Send each witness (not diverged) the checkpoints it does not hold yet."""
        await asyncio.gather(
            *(self._keep_up(w) for w in self._witnesses if not self._progress[w.name].diverged)
        )

    async def _keep_up(self, witness: Witness) -> None:
        progress = self._progress[witness.name]
        try:
            await self._catch_up(witness, progress)
        except WitnessError as error:
            _log.warning(
                "audit witness not reached; will retry",
                extra={
                    "event": "audit_witness_retry",
                    "context": {"witness": witness.name, "error": str(error)},
                },
            )
            self._observe(witness, WitnessState.FAILING, progress)
            return
        if not progress.diverged:
            self._observe(witness, WitnessState.OK, progress)

    async def _catch_up(self, witness: Witness, progress: _Progress) -> None:
        if not progress.known and not await self._introduce(witness, progress):
            return
        sent = False
        while batch := await asyncio.to_thread(
            self._store.checkpoints, _seq(progress.latest), MAX_BATCH
        ):
            sent = True
            if not await self._offer(witness, progress, batch):
                return
        if not sent and not await self._holds(progress.latest):
            # Nothing new to send, but the log no longer holds what the witness last took: cut
            # back past it (and no lookup sealed since, to be offered and refused). Noticed now,
            # not at the next lookup, which may be hours away.
            self._diverged(witness, progress, progress.latest, "the log does not hold its latest")

    async def _introduce(self, witness: Witness, progress: _Progress) -> bool:
        """Learn where a witness stands, in one exchange however long the log: offer it the log's
        newest checkpoint. It holds it already, or answers with the latest it holds (to resume
        from), or, holding nothing yet, starts from it: a witness vouches for what it saw when it
        saw it, so checkpoints older than its first would prove nothing. A log with no checkpoint
        yet asks for the first page of the witness's listing instead, which must be empty.
        False when the witness diverged."""
        newest = await asyncio.to_thread(self._store.latest_checkpoint)
        if newest is not None:
            known = await self._offer(witness, progress, [newest])
        else:
            page = await _listing_page(self._client, witness.url, self._log, 0, witness.timeout_s)
            held = as_checkpoint(page.checkpoints[0]) if page.checkpoints else None
            known = held is None
            if not known:
                self._diverged(witness, progress, held, "the log does not hold its latest")
        progress.known = known
        return known

    async def _offer(
        self, witness: Witness, progress: _Progress, batch: Sequence[Checkpoint]
    ) -> bool:
        """Send `batch` and follow the witness's receipt; False when the witness diverged."""
        self._ours = max(self._ours, batch[-1].seq)
        receipt = await self._post(witness, batch)
        theirs = None if receipt.latest is None else as_checkpoint(receipt.latest)
        if receipt.problem is WitnessProblem.CONFLICT:
            offered = batch[min(receipt.accepted, len(batch) - 1)]
            self._diverged(witness, progress, offered, "it holds another checkpoint there")
            return False
        if not await self._holds(theirs):
            self._diverged(witness, progress, theirs, "the log does not hold its latest")
            return False
        if (
            receipt.problem is WitnessProblem.NOT_CONSECUTIVE
            and progress.known
            and theirs == progress.latest
        ):
            problem = "the log's next checkpoint does not follow on from its latest"
            self._diverged(witness, progress, theirs, problem)
            return False
        if receipt.problem is None and _seq(theirs) < batch[-1].seq:
            raise WitnessError("its receipt does not acknowledge the checkpoints sent")
        progress.latest = theirs
        return True

    async def _holds(self, checkpoint: Checkpoint | None) -> bool:
        """Whether the log holds `checkpoint`, exactly (None, a witness holding nothing: yes).
        WitnessError when it was archived: the live log can say neither."""
        if checkpoint is None:
            return True
        found = await asyncio.to_thread(self._store.checkpoints, checkpoint.seq - 1, 1)
        if found and found[0].digest() == checkpoint.digest():
            return True
        anchor = await asyncio.to_thread(self._store.archive_anchor)
        if anchor is not None and checkpoint.seq < anchor.seq:
            # Archived since the witness last took one (it was down, or behind): the live log
            # cannot contradict it (`audit verify --witness --archive` compares it with the
            # segments), and the checkpoints it lacks are gone from the live log, so it cannot be
            # caught up. A witness left behind, not a log rewritten.
            raise WitnessError(
                f"its latest checkpoint #{checkpoint.seq} was archived since (the live log starts"
                f" at #{anchor.seq}): it cannot be sent the checkpoints between; check it with"
                " `audit verify --witness --archive`"
            )
        return False

    async def _post(self, witness: Witness, batch: Sequence[Checkpoint]) -> WitnessReceipt:
        body = (
            WitnessRequest(
                log=self._log,
                checkpoints=[SignedCheckpoint(**dataclasses.asdict(c)) for c in batch],
            )
            .model_dump_json()
            .encode()
        )
        headers = {
            "authorization": self._signer.authorization(witness.name, body),
            "content-type": "application/json",
        }
        response, answer = await _exchange(
            self._client,
            "POST",
            witness.url,
            content=body,
            headers=headers,
            timeout_s=witness.timeout_s,
        )
        if response.status_code != 200:
            raise WitnessError(f"it answered HTTP {response.status_code}")
        if witness.verifier is not None:
            try:
                signature = response.headers.get(SIGNATURE_HEADER)
                await witness.verifier.verify(signature, answer, source=witness.name)
            except TrustError as error:
                raise WitnessError(f"its receipt is not trusted: {error.message}") from None
        try:
            receipt = WitnessReceipt.model_validate_json(answer)
        except ValidationError:
            raise WitnessError("its answer is not a witness receipt") from None
        if receipt.log != self._log:
            raise WitnessError("its receipt is for another log")
        return receipt

    def _diverged(
        self, witness: Witness, progress: _Progress, checkpoint: Checkpoint | None, why: str
    ) -> None:
        progress.diverged = True
        _alerts.error(
            "audit log DIVERGES from a witness: it was cut back or rewritten, or the witness is"
            " wrong; run `childlookup audit verify --witness` and investigate",
            extra={
                "event": "audit_witness_diverged",
                "context": {"witness": witness.name, "seq": _seq(checkpoint), "problem": why},
            },
        )
        self._observe(witness, WitnessState.DIVERGED, progress)

    def _observe(self, witness: Witness, state: WitnessState, progress: _Progress) -> None:
        behind = max(0, self._ours - _seq(progress.latest)) if progress.known else None
        metrics.witness_observed(witness.name, state, behind)


def _seq(checkpoint: Checkpoint | None) -> int:
    return 0 if checkpoint is None else checkpoint.seq
