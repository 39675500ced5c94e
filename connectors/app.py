"""The connector's HTTP face: protocol v1 over one agency backend.

Every way a lookup can go wrong ends in a typed `ErrorResponse`, never a stack trace or a bare
500, because the gateway must tell a practitioner "this source failed" apart from "this source has
no record" - a partial answer that looks complete is how a child at risk is missed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address
from types import MappingProxyType
from typing import Final, TypeVar

from opentelemetry import propagate, trace
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan, Receive, Scope, Send

from connectors.backend import (
    ConnectorBackend,
    ConnectorError,
    parse_message,
)
from connectors.check_digits import is_nhs_number, is_permanent_upn
from connectors.logs import log_event
from connectors.minimisation import minimise
from connectors.notifications import (
    NOTIFICATIONS_PATH,
    RECENT_NOTIFICATIONS_PATH,
    Notification,
    NotificationReceipt,
    NotificationSink,
    RecentNotifications,
)
from connectors.protocol import (
    LOOKUP_PATH,
    MAX_RECORDS,
    ConnectorRecord,
    ErrorCode,
    ErrorDetail,
    ErrorResponse,
    Identifiers,
    LookupRequest,
    LookupResponse,
)
from connectors.serving import http_refusals
from connectors.trust import (
    JWKS_PATH,
    SIGNATURE_HEADER,
    AnswerSigner,
    CheckUnavailable,
    RequestVerifier,
    TrustError,
)
from connectors.witness import (
    MAX_REQUEST_BYTES,
    WITNESS_PATH,
    LogName,
    WitnessProblem,
    WitnessRequest,
    WitnessStore,
)

MAX_BODY_BYTES: Final = 64 * 1024
"""A lookup is a few identifiers and field names; anything near this size is not a lookup."""

ERROR_STATUS: Final[Mapping[ErrorCode, int]] = MappingProxyType(
    {
        ErrorCode.BAD_REQUEST: 400,
        ErrorCode.UNAUTHENTICATED: 401,
        ErrorCode.UNSUPPORTED_VERSION: 400,
        ErrorCode.FORBIDDEN: 403,
        ErrorCode.INTERNAL: 500,
        ErrorCode.UNAVAILABLE: 503,
        ErrorCode.DEADLINE_EXCEEDED: 504,
    }
)
"""HTTP status for each error code; an oversize body is the one exception (413, BAD_REQUEST)."""

PAYLOAD_TOO_LARGE: Final = 413

RECENT_LIMIT: Final = 1_000
"""Most notifications the recent-accesses view lists at once."""

_logger = logging.getLogger("childlookup.connector")
_tracer = trace.get_tracer("childlookup.connector")


def create_connector_app(
    backend: ConnectorBackend,
    *,
    source: str,
    verifier: RequestVerifier | None = None,
    signer: AnswerSigner | None = None,
    notifications: NotificationSink | None = None,
    witness: WitnessStore | None = None,
    lifespan: Lifespan[Starlette] | None = None,
) -> Starlette:
    """Serve `backend` as the connector named `source` (the name the gateway knows it by).

    With a `verifier`, only requests the gateway signed for `source` are read (others get 401
    UNAUTHENTICATED before their body is parsed). With a `signer`, every lookup response - answer
    or refusal - carries a signature over its body, and the public key is served at
    /.well-known/jwks.json for the gateway to check it against.

    With `notifications`, the gateway's owner notifications are received at /v1/notifications and
    kept there (see connectors.notifications). They need a `verifier`: an unsigned notice of who
    looked at a child would let anyone write the agency's access record.

    With `witness`, the connector also keeps the gateway's signed audit checkpoints there and
    lists them to anyone (see connectors.witness); receiving them needs a `verifier` too, or
    anyone could write the record an auditor compares the gateway's log with.

    `lifespan` runs around serving: a backend's background work (polling a folder, refreshing
    search keys) and the closing of its connections.
    """
    if notifications is not None and verifier is None:
        raise ValueError("receiving notifications needs a verifier of the gateway's signature")
    if witness is not None and verifier is None:
        raise ValueError("witnessing checkpoints needs a verifier of the gateway's signature")

    lookups = _Lookups(backend, source, verifier, signer)
    routes = [Route(LOOKUP_PATH, lookups, methods=["POST"]), *_served_as(source, signer)]
    if notifications is not None and verifier is not None:
        routes += _notification_routes(notifications, verifier, signer, source)
    if witness is not None and verifier is not None:
        routes += _witness_routes(witness, verifier, signer, source)
    return _ConnectorApp(routes, lookups, lifespan)


def create_witness_app(
    witness: WitnessStore,
    *,
    name: str,
    verifier: RequestVerifier,
    signer: AnswerSigner | None = None,
) -> Starlette:
    """A standalone witness named `name` (the audience the gateway signs its requests to it for):
    the witness routes over `witness`, liveness, and its answer-signing key when it signs."""
    routes = [*_witness_routes(witness, verifier, signer, name), *_served_as(name, signer)]
    return service_app(routes)


def service_app(
    routes: Sequence[BaseRoute], lifespan: Lifespan[Starlette] | None = None
) -> Starlette:
    """A Starlette app as every service of the SDK's is served (a connector, a witness, the
    locator): Starlette's own refusals in the protocol's error shape (`REFUSALS`), and no
    redirect from a path with a trailing slash to one without, which Starlette builds from the
    request's Host header and which repeats a POST there."""
    app = Starlette(routes=list(routes), lifespan=lifespan, exception_handlers=REFUSALS)
    app.router.redirect_slashes = False
    return app


def _refused(status: int, message: str, headers: Mapping[str, str]) -> Response:
    response = _Refusal(ErrorCode.BAD_REQUEST, message, status=status).response()
    response.headers.update(headers)
    return response


REFUSALS: Final = http_refusals(_refused)
"""No route for the path (404) or a method the route does not serve (405, with `Allow`), as the
protocol's BAD_REQUEST error with that status."""


def _served_as(name: str, signer: AnswerSigner | None) -> list[Route]:
    """Liveness naming the service, and the public key its answers are signed with, if signed."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "source": name})

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if signer is not None:
        keys = signer.jwks()

        async def jwks(request: Request) -> Response:
            return JSONResponse(keys)

        routes.append(Route(JWKS_PATH, jwks, methods=["GET"]))
    return routes


class _ConnectorApp(Starlette):
    """The connector's routes, with lookups - its one hot path - handed straight to their
    endpoint rather than through Starlette's middleware and router, which cost nearly as much per
    lookup as the lookup's own work (bench/connector.py). Anything else, and every request once an
    agency adds middleware or exception handlers of its own, goes the usual way (to the same
    endpoint, for lookups)."""

    def __init__(
        self, routes: list[Route], lookups: _Lookups, lifespan: Lifespan[Starlette] | None
    ) -> None:
        super().__init__(routes=routes, lifespan=lifespan, exception_handlers=REFUSALS)
        self.router.redirect_slashes = False  # as `service_app`
        self._lookups = lookups

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == LOOKUP_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.user_middleware
            and self.exception_handlers == REFUSALS
        ):
            await self._lookups(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One lookup's HTTP answer, and what its log line says about it."""

    status: int
    body: bytes
    request_id: str | None
    code: str
    records: int
    duration_ms: float


class _Lookups:
    """`POST /v1/lookup` as a plain ASGI app: bytes in, bytes out, no Request or Response objects.

    The answer is on the wire before its log line is written, so logging adds nothing to the
    gateway's wait; the line says the same, and its duration is measured as before (up to the
    answer being ready to serialise).
    """

    def __init__(
        self,
        backend: ConnectorBackend,
        source: str,
        verifier: RequestVerifier | None,
        signer: AnswerSigner | None,
    ) -> None:
        self._backend = backend
        self._source = source
        self._verifier = verifier
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _tracing():
            await self._serve(scope, receive, send, None)
            return
        # The gateway's `traceparent` makes this span part of the lookup's trace.
        with _tracer.start_as_current_span(
            "connector.lookup",
            context=propagate.extract(Headers(scope=scope)),
            kind=trace.SpanKind.SERVER,
            attributes={"childlookup.source": self._source},
            record_exception=False,
        ) as span:
            await self._serve(scope, receive, send, span)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, span: trace.Span | None
    ) -> None:
        outcome = await self._respond(scope, receive)
        if span is not None:  # the request id and outcome code only
            span.set_attributes(
                {
                    "childlookup.request_id": outcome.request_id or "",
                    "childlookup.outcome": outcome.code,
                }
            )
        try:
            await self._send(send, outcome)
        finally:
            _log_outcome(self._source, outcome)

    async def _respond(self, scope: Scope, receive: Receive) -> _Outcome:
        started = time.perf_counter()
        try:
            declared, authorization = _lookup_headers(scope)
            body = await _read_body(receive, declared)
            if self._verifier is not None:
                await _authenticate(self._verifier, authorization, body, self._source)
            answer = await _answer(self._backend, self._source, _parse(body))
            duration_ms = _ms_since(started)
            answer_body = _serialised(answer, self._source)
        except _Refusal as refusal:
            return _Outcome(
                refusal.status,
                refusal.body(),
                refusal.request_id,
                refusal.code.value,
                0,
                _ms_since(started),
            )
        return _Outcome(200, answer_body, answer.request_id, "OK", len(answer.records), duration_ms)

    async def _send(self, send: Send, outcome: _Outcome) -> None:
        """Send `outcome` as Starlette would send Response(body, media_type=JSON), signed."""
        body = outcome.body
        headers = [(b"content-length", str(len(body)).encode()), _JSON_CONTENT]
        if self._signer is not None:
            signature = self._signer.sign(body, source=self._source)
            headers.append((_SIGNATURE_HEADER_NAME, signature.encode("latin-1")))
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_JSON_CONTENT: Final = (b"content-type", b"application/json")
_SIGNATURE_HEADER_NAME: Final = SIGNATURE_HEADER.encode("latin-1")
_LOOKUP_RESPONSE_JSON: Final = LookupResponse.__pydantic_serializer__
"""What `model_dump_json` uses, giving bytes rather than a str to encode again."""


def _serialised(answer: LookupResponse, source: str) -> bytes:
    """`answer` as JSON, or INTERNAL when a record holds what the protocol's models do not
    describe. A backend may build records without validation (`model_construct`, from a
    database row): a dict left where a model belongs would be written out whole, members the
    protocol does not define included, and pydantic's warning about it would quote the values
    into the connector's log. Serialising strictly refuses it instead, and a value the
    serialiser cannot write at all is the same fault, not a plain-text 500.

    A record built from a row may also hold what the protocol's models accept but do not hold:
    a date as the ISO text a database gives back, an enum's plain string, a list where a tuple
    is kept. Those are validated into the models once (`_records_validated`), never a member the
    protocol does not define (extra="forbid" refuses it) nor a value it cannot read."""
    try:
        return _LOOKUP_RESPONSE_JSON.to_json(answer, warnings="error")
    except Exception:  # noqa: S110 - validated below, or refused as INTERNAL
        pass
    try:
        return _LOOKUP_RESPONSE_JSON.to_json(_records_validated(answer), warnings="error")
    except Exception as error:
        raise _unexpected(error, source, answer.request_id) from None


def _records_validated(answer: LookupResponse) -> LookupResponse:
    """`answer` with every record validated from what it holds (python mode: nothing is
    converted to text first, and a value of no known type stays as it is, for validation to
    refuse). Raises on a record the protocol's models do not accept."""
    records = [
        ConnectorRecord.model_validate(record.model_dump(mode="python", warnings=False))
        for record in answer.records
    ]
    return LookupResponse(request_id=answer.request_id, source=answer.source, records=records)


def _lookup_headers(scope: Scope) -> tuple[bytes, str | None]:
    """The request's Content-Length (as sent, b"" when absent) and Authorization headers."""
    declared, authorization = b"", None
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = declared or value
        elif name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    return declared, authorization


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _notification_routes(
    sink: NotificationSink, verifier: RequestVerifier, signer: AnswerSigner | None, source: str
) -> list[Route]:
    """The receiver, and the local-only view of recent accesses when the sink can list them."""
    one_at_a_time = asyncio.Lock()  # so a redelivery racing the first delivery is still a duplicate

    async def receive(request: Request) -> Response:
        try:
            body = await _gateway_signed_body(request, verifier, source, MAX_BODY_BYTES)
            notification = _validated(body, Notification, "notification")
            async with one_at_a_time:
                kept = await _keep(sink, notification, source)
        except _Refusal as refusal:
            log_event(
                _logger, logging.INFO, "notification", source=source, outcome=refusal.code.value
            )
            return _signed(refusal.response(), signer, source)
        message_id = notification.message_id
        log_event(
            _logger, logging.INFO, "notification", source=source, message_id=message_id, kept=kept
        )
        receipt = NotificationReceipt(message_id=message_id, duplicate=not kept)
        return _signed(_json(receipt), signer, source)

    routes = [Route(NOTIFICATIONS_PATH, receive, methods=["POST"])]
    if isinstance(sink, RecentNotifications):
        recent_sink = sink

        async def recent(request: Request) -> Response:
            # The gateway's token proves the gateway, not an agency officer, so it cannot guard
            # this list of who looked at which child: it is served only to the agency's own host.
            if not _is_loopback(request):
                refusal = _Refusal(ErrorCode.FORBIDDEN, "Recent accesses are served locally only.")
                return refusal.response()
            shown = recent_sink.recent(RECENT_LIMIT)
            return JSONResponse({"notifications": [n.model_dump(mode="json") for n in shown]})

        routes.append(Route(RECENT_NOTIFICATIONS_PATH, recent, methods=["GET"]))
    return routes


async def _keep(sink: NotificationSink, notification: Notification, source: str) -> bool:
    """Hand the notification to the agency's sink; its failure is UNAVAILABLE, so the gateway
    tries again later, and is logged by type and place only."""
    try:
        return await sink.keep(notification)
    except Exception as error:
        log_event(
            _logger,
            logging.ERROR,
            "notification_sink_failed",
            source=source,
            message_id=notification.message_id,
            error=type(error).__name__,
            at=_crash_site(error),
        )
        raise _Refusal(
            ErrorCode.UNAVAILABLE, "The notification could not be kept; retry later."
        ) from None


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _witness_routes(
    store: WitnessStore, verifier: RequestVerifier, signer: AnswerSigner | None, name: str
) -> list[Route]:
    """The witness's receiver, for checkpoints the gateway signed for `name` as it signs
    notifications, and its listing, open to anyone: it holds no personal data, and an auditor
    compares it with the gateway's log without gateway credentials."""

    async def receive(request: Request) -> Response:
        try:
            body = await _gateway_signed_body(request, verifier, name, MAX_REQUEST_BYTES)
            offered = _validated(body, WitnessRequest, "witness request")
            receipt = await _in_witness_store(functools.partial(store.witness, offered), name)
        except _Refusal as refusal:
            log_event(_logger, logging.INFO, "witness", source=name, outcome=refusal.code.value)
            return _signed(refusal.response(), signer, name)
        log_event(
            _logger,
            logging.WARNING if receipt.problem is WitnessProblem.CONFLICT else logging.INFO,
            "witness",
            source=name,
            log=receipt.log,
            accepted=receipt.accepted,
            latest_seq=None if receipt.latest is None else receipt.latest.seq,
            problem=receipt.problem,
        )
        return _signed(_json(receipt), signer, name)

    async def listing(request: Request) -> Response:
        try:
            log, after = _listing_query(request)
            listed = await _in_witness_store(functools.partial(store.listing, log, after), name)
        except _Refusal as refusal:
            return _signed(refusal.response(), signer, name)
        return _signed(_json(listed), signer, name)

    return [
        Route(WITNESS_PATH, receive, methods=["POST"]),
        Route(WITNESS_PATH, listing, methods=["GET"]),
    ]


_LOG_NAME: Final = TypeAdapter(LogName)
_SEQ: Final = re.compile(r"[0-9]{1,18}")


def _listing_query(request: Request) -> tuple[str, int | None]:
    """`log` (required) and `after` (optional: from the first checkpoint) of a listing."""
    log, after = request.query_params.get("log"), request.query_params.get("after")
    try:
        log = _LOG_NAME.validate_python(log)
    except ValidationError:
        raise _Refusal(
            ErrorCode.BAD_REQUEST,
            "Name the log with ?log=<the gateway's id>: letters, digits and . _ : - only.",
        ) from None
    if after is not None and not _SEQ.fullmatch(after):
        raise _Refusal(
            ErrorCode.BAD_REQUEST, "?after= must be a checkpoint's sequence number (0 or more)."
        )
    return log, None if after is None else int(after)


async def _in_witness_store(work: Callable[[], _T], name: str) -> _T:
    """Run `work` on the witness's store in a thread; a store that fails (a full disk, a locked
    file) is UNAVAILABLE, so the gateway sends again later, and is logged by type and place."""
    try:
        return await asyncio.to_thread(work)
    except Exception as error:
        log_event(
            _logger,
            logging.ERROR,
            "witness_store_failed",
            source=name,
            error=type(error).__name__,
            at=_crash_site(error),
        )
        raise _Refusal(ErrorCode.UNAVAILABLE, "The witness store failed; retry later.") from None


def _json(message: BaseModel) -> Response:
    return Response(message.model_dump_json(), media_type="application/json")


async def _gateway_signed_body(
    request: Request, verifier: RequestVerifier, audience: str, limit: int
) -> bytes:
    """The body of a request the gateway signed for `audience` (a notification, checkpoints), read
    to at most `limit` bytes; a _Refusal otherwise."""
    declared = request.headers.get("content-length", "").encode("latin-1")
    body = await _read_body(request.receive, declared, limit)
    await _authenticate(verifier, request.headers.get("authorization"), body, audience)
    return body


async def _authenticate(
    verifier: RequestVerifier, authorization: str | None, body: bytes, source: str
) -> None:
    try:
        await verifier.verify(authorization, body, audience=source)
    except CheckUnavailable as error:  # not the gateway's fault: it may retry
        raise _Refusal(ErrorCode.UNAVAILABLE, error.message) from None
    except TrustError as error:
        raise _Refusal(ErrorCode.UNAUTHENTICATED, error.message) from None


def _signed(response: Response, signer: AnswerSigner | None, source: str) -> Response:
    if signer is not None:
        response.headers[SIGNATURE_HEADER] = signer.sign(bytes(response.body), source=source)
    return response


class _Refusal(Exception):
    """Ends a lookup early with an error response; carries what the log line needs."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.status = ERROR_STATUS[code] if status is None else status

    def body(self) -> bytes:
        return (
            ErrorResponse(error=ErrorDetail(code=self.code, message=self.message))
            .model_dump_json()
            .encode()
        )

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type="application/json")


async def _read_body(receive: Receive, declared: bytes, limit: int = MAX_BODY_BYTES) -> bytes:
    try:
        return await read_capped(receive, declared, limit)
    except BodyTooLarge:
        raise _too_large(limit) from None
    except ClientDisconnect:  # as the locator: logged as a refusal, not a traceback
        raise _Refusal(ErrorCode.BAD_REQUEST, "The client went away.") from None


class BodyTooLarge(Exception):
    """A request body past the reader's limit: answer 413."""


async def read_capped(receive: Receive, declared: bytes, limit: int) -> bytes:
    """Read a request body of at most `limit` bytes, checking as chunks arrive so a chunked upload
    without a Content-Length cannot make the server buffer it all first. `declared` is the
    request's Content-Length header as sent (b"" when it has none). Raises BodyTooLarge, and
    ClientDisconnect when the client went away. The connector's and the locator's reader."""
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = b""  # one message, nearly always: at most `limit` is copied however it is chunked
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


def _too_large(limit: int) -> _Refusal:
    return _Refusal(
        ErrorCode.BAD_REQUEST,
        f"Request body is larger than {limit} bytes.",
        status=PAYLOAD_TOO_LARGE,
    )


_MessageT = TypeVar("_MessageT", bound=BaseModel)
_T = TypeVar("_T")


def _validated(body: bytes, model: type[_MessageT], what: str) -> _MessageT:
    try:
        return parse_message(body, model, what, speaker="This connector")
    except ConnectorError as error:
        raise _Refusal(error.code, error.message) from None


def _parse(body: bytes) -> LookupRequest:
    lookup_request = _validated(body, LookupRequest, "lookup request")
    if lookup_request.deadline.tzinfo is None:
        raise _Refusal(
            ErrorCode.BAD_REQUEST,
            "The deadline must carry a UTC offset.",
            request_id=lookup_request.request_id,
        )
    unreadable = _unreadable_identifier(lookup_request.identifiers)
    if unreadable is not None:
        raise _Refusal(ErrorCode.BAD_REQUEST, unreadable, request_id=lookup_request.request_id)
    if lookup_request.demographics is None and not _names_anyone(lookup_request.identifiers):
        # Nothing could have matched, so an answer would be a "no record" that means nothing -
        # or, from a backend whose records hold an empty local id, other children's records.
        raise _Refusal(
            ErrorCode.BAD_REQUEST,
            "The request names no identifier and no demographics: nothing to look up by.",
            request_id=lookup_request.request_id,
        )
    return lookup_request


def _names_anyone(identifiers: Identifiers) -> bool:
    """Whether the request gives an identifier to look up by (an empty local id names nobody)."""
    return bool(identifiers.nhs_number or identifiers.upn or identifiers.local_id)


def _unreadable_identifier(identifiers: Identifiers) -> str | None:
    """Why an NHS number or UPN in a request is not one as the protocol sends them, if it is not.

    A backend matches identifiers by equality, so a number sent with spaces or a wrong check
    character would find nothing, and "no record" would then be a false answer to a caller that
    sent what it did not mean: it is refused instead."""
    if identifiers.nhs_number is not None and not is_nhs_number(identifiers.nhs_number):
        return "identifiers.nhs_number: not 10 digits ending in their check digit."
    if identifiers.upn is not None and not is_permanent_upn(identifiers.upn):
        return "identifiers.upn: not a check letter followed by the 12 digits it checks."
    return None


async def _answer(
    backend: ConnectorBackend, source: str, lookup_request: LookupRequest
) -> LookupResponse:
    """Ask the backend within what is left of the deadline, then minimise what it returned.

    The deadline is the gateway's: past it the gateway has already reported this source as timed
    out, so finishing the work would spend the agency's capacity on an answer nobody reads.
    """
    request_id = lookup_request.request_id
    remaining = (lookup_request.deadline - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        raise _Refusal(
            ErrorCode.DEADLINE_EXCEEDED,
            "The deadline had passed before the lookup started.",
            request_id=request_id,
        )
    within_deadline = asyncio.timeout(remaining)
    try:
        async with within_deadline:
            records = await backend.lookup(lookup_request)
        if len(records) > MAX_RECORDS:
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"The backend found {len(records)} records; an answer holds at most {MAX_RECORDS}.",
            )
        return LookupResponse(
            request_id=request_id,
            source=source,
            records=[minimise(record, lookup_request.fields) for record in records],
        )
    except ConnectorError as error:
        if not (isinstance(error.code, str) and error.code in ERROR_STATUS):  # not a protocol code
            raise _unexpected(error, source, request_id) from None
        code = ErrorCode(error.code)  # a code's plain string too
        raise _Refusal(code, error.message, request_id=request_id) from None
    except TimeoutError as error:
        # Only our own deadline is DEADLINE_EXCEEDED; a backend's internal timeout is a failure.
        if not within_deadline.expired():
            raise _unexpected(error, source, request_id) from None
        raise _Refusal(
            ErrorCode.DEADLINE_EXCEEDED,
            "The lookup did not finish before the deadline.",
            request_id=request_id,
        ) from None
    except asyncio.CancelledError as error:
        # Only the lookup's own cancellation (the server stopping) passes through: a backend
        # awaiting work something else cancelled raises CancelledError while nobody cancelled
        # this lookup, and that is the backend failing, not a reason to answer nothing.
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise _unexpected(error, source, request_id) from None
    except Exception as error:
        raise _unexpected(error, source, request_id) from None


def _unexpected(error: BaseException, source: str, request_id: str) -> _Refusal:
    """Log a backend crash by type and place only, and hide it from the gateway behind INTERNAL."""
    log_event(
        _logger,
        logging.ERROR,
        "lookup_crashed",
        source=source,
        request_id=request_id,
        error=type(error).__name__,
        at=_crash_site(error),
    )
    return _Refusal(ErrorCode.INTERNAL, "The connector failed unexpectedly.", request_id=request_id)


def _log_outcome(source: str, outcome: _Outcome) -> None:
    log_event(
        _logger,
        logging.INFO,
        "lookup",
        source=source,
        request_id=outcome.request_id,
        outcome=outcome.code,
        records=outcome.records,
        duration_ms=outcome.duration_ms,
    )


def _tracing() -> bool:
    """Whether this process has a tracer provider: without one, a span would record nothing."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _crash_site(error: BaseException) -> str:
    """Where an exception was raised, without its message: messages can quote a child's data."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"
