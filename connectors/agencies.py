"""Many agencies' connectors served by one process, each under its own path: `/<agency>/v1/lookup`.

A national simulation has thousands of agencies (153 local authorities, thousands of GP practices
and schools); a process each would need thousands of interpreters. Here each hosted agency is still
a connector of its own - its own records, answer-signing key and JWKS, its own audience for the
gateway's signed requests, its own notification log - built by the SDK's `create_connector_app`,
and one small ASGI router hands each request to the agency its first path segment names: one dict
read, where a list of Starlette `Mount`s would try every agency in turn.

`childlookup connector serve-agencies --national DIR --shard I/N` serves the agencies of a national
synthetic population (`childlookup synth --national`) that fall in shard I of N, and publishes each
one's holdings to the locator on start and periodically, a few agencies at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import re
import resource
import ssl
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.app import create_connector_app
from connectors.backend import summarise_validation_error
from connectors.locator import (
    DEFAULT_LOCATOR_ID,
    LocatorPublisher,
    PseudonymKey,
    load_pseudonym_keys,
)
from connectors.logs import log_event
from connectors.minimisation import minimise
from connectors.national import IDENTITY_SOURCES, NATIONAL_KINDS, NationalAgency
from connectors.notifications import received_notifications
from connectors.protocol import ConnectorRecord, ErrorCode, ErrorDetail, ErrorResponse, FieldId
from connectors.records import FileBackend, out_of_collector_reach
from connectors.trust import AnswerSigner, RequestVerifier, ensure_key_pair, load_private_key

STATUS_PATH: Final = "/_status"
"""Where a server of many agencies says how many it hosts and how many have published to the
locator. Agency names start with a letter, so no agency can be served at this path."""

_logger = logging.getLogger("childlookup.connector")


# --- Routing -------------------------------------------------------------------------------------


class AgencyRouter:
    """An ASGI app sending `/<name>/rest` to the app registered under `name`, as `/rest`.

    The hosted app sees the path it would see served alone (as behind a proxy that strips the
    prefix), so its routes, and the SDK's fast path for lookups, work unchanged. An unknown name is
    a 404 in the protocol's `ErrorResponse` shape, as any connector refuses what it cannot serve.

    `lifespan`, when given, runs around serving (the hosted apps' own lifespans are not run: the
    agencies served here have no background work of their own).
    """

    def __init__(
        self,
        apps: Mapping[str, ASGIApp],
        *,
        lifespan: Callable[[], contextlib.AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._apps = dict(apps)
        self._lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        name, _, rest = scope["path"][1:].partition("/")
        app = self._apps.get(name)
        if app is None or scope["type"] != "http":
            await _not_found(scope, send)
            return
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None:
            raw_path = raw_path[len(name) + 1 :] or b"/"
        await app({**scope, "path": "/" + rest, "raw_path": raw_path}, receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                if self._lifespan is not None:
                    await stack.enter_async_context(self._lifespan())
            except Exception as error:
                await send({"type": "lifespan.startup.failed", "message": type(error).__name__})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


_NOT_FOUND_BODY: Final = (
    ErrorResponse(
        error=ErrorDetail(code=ErrorCode.BAD_REQUEST, message="No agency is served at this path.")
    )
    .model_dump_json()
    .encode()
)


async def _not_found(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-length", str(len(_NOT_FOUND_BODY)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_FOUND_BODY})


# --- One hosted agency ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgencyHoldings:
    """One agency of a population: its name, kind, records, and the fields its kind provides."""

    name: str
    kind: str
    records: tuple[ConnectorRecord, ...]
    provides: tuple[FieldId, ...]


@dataclass(frozen=True)
class HostedAgency:
    """An agency as a shared process serves it: its records, indexed, and its P-256 key, which
    signs its answers and its publications to the locator."""

    name: str
    records: FileBackend
    key: ec.EllipticCurvePrivateKey

    def app(self, verifier: RequestVerifier | None) -> Starlette:
        """The agency's connector app: answers signed with its key and - when the gateway's
        requests are verified - a notification log of its own."""
        return create_connector_app(
            self.records,
            source=self.name,
            verifier=verifier,
            signer=AnswerSigner(self.key),
            notifications=received_notifications(None, verified=verifier is not None),
        )


def hosted_agencies(
    agencies: Iterable[AgencyHoldings], key_directory: Path | None = None
) -> list[HostedAgency]:
    """Index each agency's records, keeping no more than it provides from the start, and give it
    its key: `key_directory/<name>.pem` (made once when missing, so a restarted agency keeps its
    key), or, without a directory, a fresh key for this run - enough in a simulation, where the
    gateway and the locator read each agency's published JWKS."""
    hosted = []
    for holdings in agencies:
        records = FileBackend([minimise(r, holdings.provides) for r in holdings.records])
        hosted.append(HostedAgency(holdings.name, records, _key(holdings.name, key_directory)))
    return hosted


def _key(name: str, directory: Path | None) -> ec.EllipticCurvePrivateKey:
    if directory is None:
        return ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    ensure_key_pair(private, directory / f"{name}.pub.pem")
    return load_private_key(private)


# --- Publishing to the locator -------------------------------------------------------------------


class Publication:
    """Every hosted agency's holdings synced to the locator: all at start, again every
    `interval_s` (or `retry_s` after a round in which some failed), at most `concurrency` at once
    so that thousands of agencies starting together do not stampede the locator."""

    def __init__(
        self,
        jobs: Mapping[str, Callable[[], Awaitable[object]]],
        *,
        concurrency: int = 8,
        interval_s: float = 300.0,
        retry_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """`client`, when given, is what the jobs send with: closed when publishing stops."""
        if concurrency < 1:
            raise ValueError(f"publication concurrency must be at least 1, got {concurrency}")
        self._jobs = dict(jobs)
        self._concurrency = concurrency
        self._interval_s = interval_s
        self._retry_s = retry_s
        self._client = client
        self._published: set[str] = set()
        self._failing: set[str] = set()
        self._started = time.monotonic()
        self._all_published_s: float | None = None

    def status(self) -> dict[str, Any]:
        """Counts only (no agency's holdings): for the launcher's readiness and its report."""
        return {
            "publishers": len(self._jobs),
            "published": len(self._published),
            "failing": len(self._failing),
            "all_published_s": self._all_published_s,
        }

    async def run(self) -> None:
        """Publish round after round until cancelled."""
        while True:
            await self.round()
            await asyncio.sleep(self._retry_s if self._failing else self._interval_s)

    async def round(self) -> None:
        """Sync every agency once."""
        slots = asyncio.Semaphore(self._concurrency)

        async def sync(name: str, job: Callable[[], Awaitable[object]]) -> None:
            async with slots:
                try:
                    await job()
                except Exception as error:  # the next round tries again; others go on
                    if name not in self._failing:
                        log_event(
                            _logger,
                            logging.WARNING,
                            "publish_failed",
                            source=name,
                            error=type(error).__name__,
                        )
                    self._failing.add(name)
                    return
            self._failing.discard(name)
            self._published.add(name)

        await asyncio.gather(*(sync(name, job) for name, job in self._jobs.items()))
        if self._all_published_s is None and len(self._published) == len(self._jobs):
            self._all_published_s = round(time.monotonic() - self._started, 2)
            log_event(
                _logger,
                logging.INFO,
                "all_published",
                agencies=len(self._jobs),
                seconds=self._all_published_s,
            )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Publish in the background while the agencies serve (a lifespan)."""
        self._started = time.monotonic()
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._client is not None:
                await self._client.aclose()


def locator_publication(
    agencies: Sequence[HostedAgency],
    *,
    locator_url: str,
    pseudonym_keys: Sequence[PseudonymKey],
    locator_id: str = DEFAULT_LOCATOR_ID,
    concurrency: int = 8,
    interval_s: float = 300.0,
    tls: ssl.SSLContext | None = None,
) -> Publication:
    """Each agency's records synced to the locator by the SDK's `LocatorPublisher`, signed with
    the agency's own key, over one HTTP client shared by all (the identity sources, asked on
    every lookup, publish nothing); an https locator is trusted by `tls` (default: the public
    CAs)."""
    client = httpx.AsyncClient(timeout=30.0, verify=True if tls is None else tls)
    jobs = {
        agency.name: functools.partial(
            LocatorPublisher(
                agency.name, locator_url, agency.key, pseudonym_keys, client, locator_id=locator_id
            ).sync,
            agency.records.identifiers(),
        )
        for agency in agencies
        if agency.name not in IDENTITY_SOURCES
    }
    return Publication(jobs, concurrency=concurrency, interval_s=interval_s, client=client)


def status_app(publication: Publication | None, agencies: int) -> ASGIApp:
    """The server's own status at STATUS_PATH: how many agencies it hosts and has published."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        status = {"agencies": agencies} | ({} if publication is None else publication.status())
        body = json.dumps(status).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


# --- Shards of a national population -------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): which of a population's agencies one process serves.

    The assignment hashes the agency's name, so it is stable across runs and machines, needs no
    list to agree on, and spreads agencies of every kind evenly.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 1 <= I <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read `I/N`, e.g. `1/3`; raises ValueError otherwise."""
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit()):
            raise ValueError(f"a shard is I/N, e.g. 1/3, not {text!r}")
        return cls(int(index), int(count))

    def holds(self, agency: str) -> bool:
        return shard_of(agency, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(agency: str, count: int) -> int:
    """The shard (1-based, of `count`) that serves `agency`."""
    digest = hashlib.sha256(agency.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def read_shard(directory: Path, shard: Shard) -> list[AgencyHoldings]:
    """The agencies of the national population in `directory` that `shard` serves, with their
    records (the identity sources among them when they fall in this shard).

    Raises ValueError naming the file at fault for a directory that is not a national population.
    """
    catalogue = directory / "national.json"
    try:
        national = json.loads(catalogue.read_text(encoding="utf-8"))
        agencies = [NationalAgency.model_validate(agency) for agency in national["agencies"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{catalogue}: not a national population ({type(error).__name__})"
        ) from None
    kinds: dict[str, str] = {agency.name: agency.kind for agency in agencies}
    kinds |= {name: name for name in IDENTITY_SOURCES}
    served = {name: kind for name, kind in kinds.items() if shard.holds(name)}
    records: defaultdict[str, list[ConnectorRecord]] = defaultdict(list)
    for kind in sorted(set(served.values())):
        _read_records(directory / "records" / f"{kind}.jsonl", served, records)
    return [
        AgencyHoldings(name, kind, tuple(records[name]), NATIONAL_KINDS[kind])
        for name, kind in sorted(served.items())
    ]


class _AgencyRecord(BaseModel):
    """One line of a national records file."""

    agency: str
    record: ConnectorRecord


_AGENCY_FIELD: Final = re.compile(rb'^\{"agency": ?"([a-z0-9_]+)"')
"""The agency of a line as the synthetic writer puts it, first: read without parsing the line,
so a shard skips other shards' records at the cost of a regular expression."""


def _read_records(
    path: Path, served: Mapping[str, str], into: defaultdict[str, list[ConnectorRecord]]
) -> None:
    """Add the records of `path` that belong to a served agency, validating only those."""
    if not path.exists():
        return
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            agency = _AGENCY_FIELD.match(line)
            if agency is not None and agency.group(1).decode() not in served:
                continue
            try:
                entry = _AgencyRecord.model_validate_json(line)
            except ValidationError as error:  # never quoting the line: it is a child's record
                reason = summarise_validation_error(error)
                raise ValueError(f"{path}:{number}: not an agency record: {reason}") from None
            if entry.agency in served:
                into[entry.agency].append(entry.record)


# --- Serving -------------------------------------------------------------------------------------


def agencies_app(
    agencies: Sequence[HostedAgency],
    verifier: RequestVerifier | None,
    publication: Publication | None = None,
) -> AgencyRouter:
    """One app serving every agency in `agencies` under its name, with the server's status at
    STATUS_PATH; publishing (when given) runs while it serves."""
    apps: dict[str, ASGIApp] = {agency.name: agency.app(verifier) for agency in agencies}
    apps[STATUS_PATH.lstrip("/")] = status_app(publication, len(agencies))
    return AgencyRouter(apps, lifespan=None if publication is None else publication.running)


def peak_resident_mb() -> float:
    """This process's peak resident memory, in MB (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def add_serve_agencies(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `serve-agencies` on the connector commands."""
    serve = commands.add_parser(
        "serve-agencies",
        help="serve many agencies of a national synthetic population from one process, each at "
        "/<agency>/ (childlookup synth --national)",
    )
    serve.add_argument("--national", type=Path, required=True, metavar="DIR")
    serve.add_argument(
        "--shard", type=Shard.parse, default=Shard(1, 1), metavar="I/N", help="default 1/1"
    )
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--gateway-jwks", metavar="URL", help="require requests signed by this gateway"
    )
    serve.add_argument("--gateway-issuer", default="childlookup-gateway")
    serve.add_argument(
        "--signing-keys",
        type=Path,
        metavar="DIR",
        help="each agency's P-256 key at DIR/<agency>.pem (made when missing); default: fresh "
        "keys for this run",
    )
    locator = serve.add_argument_group("publishing to the locator")
    locator.add_argument("--locator", metavar="URL", help="the locator's base URL")
    locator.add_argument("--locator-id", default=DEFAULT_LOCATOR_ID)
    locator.add_argument(
        "--pseudonym-keys", type=Path, metavar="JSON", help="the pseudonym key file (--locator)"
    )
    locator.add_argument("--publish-every-s", type=float, default=300.0)
    locator.add_argument("--publish-concurrency", type=int, default=8)
    serve.set_defaults(run=serve_agencies)


def serve_agencies(args: argparse.Namespace) -> int:
    """`childlookup connector serve-agencies`: load the shard, then serve it until stopped."""
    from connectors.serving import ServedApp, bind_socket, run, serve_all
    from connectors.trust import PublishedKeys

    started = time.monotonic()
    with out_of_collector_reach():
        agencies = hosted_agencies(read_shard(args.national, args.shard), args.signing_keys)
        verifier = (
            RequestVerifier(PublishedKeys(args.gateway_jwks), issuer=args.gateway_issuer)
            if args.gateway_jwks
            else None
        )
        app = agencies_app(agencies, verifier, _publication(args, agencies))
    served = ServedApp(f"agencies-{args.shard}", app, bind_socket(args.host, args.port))
    print(
        f"{len(agencies)} agencies (shard {args.shard}) on {served.url}/<agency>, loaded in "
        f"{time.monotonic() - started:.1f} s, peak resident {peak_resident_mb()} MB",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        run(serve_all([served]))
    return 0


def _publication(args: argparse.Namespace, agencies: Sequence[HostedAgency]) -> Publication | None:
    """What publishes the shard's holdings to the locator, when --locator names one."""
    if args.locator is None:
        return None
    if args.pseudonym_keys is None:
        raise ValueError("--locator needs --pseudonym-keys: the locator knows pseudonyms only")
    return locator_publication(
        agencies,
        locator_url=args.locator,
        locator_id=args.locator_id,
        pseudonym_keys=load_pseudonym_keys(args.pseudonym_keys),
        concurrency=args.publish_concurrency,
        interval_s=args.publish_every_s,
    )
