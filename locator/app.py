"""The locator's HTTP face: protocol v1 (connectors.locator) over the store.

Every answer - a receipt, a page, a located list or a refusal - is signed by the locator's key,
so the gateway can refuse a forged "nobody else holds this child". Every refusal is the
connector protocol's `ErrorResponse`, never a stack trace; a store that fails is UNAVAILABLE,
which the gateway reports as an incomplete answer and a publisher retries.

Logs carry agencies, batch ids, request ids and counts - never a pseudonym.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from ipaddress import ip_address
from typing import Final, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.app import ERROR_STATUS, BodyTooLarge, read_capped, service_app
from connectors.backend import ConnectorError, parse_message
from connectors.locator import (
    HOLDINGS_LIST_PATH,
    HOLDINGS_PATH,
    LOCATE_PATH,
    STATUS_PATH,
    Holder,
    HoldingsListRequest,
    LocateRequest,
    LocateResponse,
    PublishRequest,
)
from connectors.logs import log_event
from connectors.protocol import ErrorCode, ErrorDetail, ErrorResponse
from connectors.trust import (
    JWKS_PATH,
    SIGNATURE_HEADER,
    AnswerSigner,
    CheckUnavailable,
    RequestVerifier,
    TrustError,
    ensure_key_pair,
)
from locator.authentication import Publishers, gateway_verifier
from locator.settings import Mode, Settings, load_agencies
from locator.store import Store, StoreRefusal

MAX_PUBLISH_BYTES: Final = 1024 * 1024
"""A full batch is 10,000 pseudonyms of 45 bytes: about 460 KB."""
MAX_QUESTION_BYTES: Final = 16 * 1024
"""A locate or a list request: a few pseudonyms."""

_logger = logging.getLogger("childlookup.locator")
_ModelT = TypeVar("_ModelT", bound=BaseModel)


class _Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_STATUS[code] if status is None else status


def app_from_settings(settings: Settings) -> Starlette:
    """The locator as `settings` configure it. In dev mode a missing answer-signing key is
    generated in the state dir; production uses only the key it is given."""
    key_file = settings.answer_key_file
    if settings.mode is Mode.DEV:
        ensure_key_pair(key_file, key_file.with_name(key_file.stem + ".pub.pem"))
    agencies = () if settings.agencies_file is None else load_agencies(settings.agencies_file)
    if settings.database_url is None:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    token = settings.status_token
    return create_locator_app(
        Store.open(
            settings.store_url,
            schema=settings.database_schema,
            key_versions=settings.key_versions,
        ),
        publishers=Publishers(agencies, audience=settings.locator_id),
        gateway=gateway_verifier(settings.gateway_keys, issuer=settings.gateway_id),
        gateway_id=settings.gateway_id,
        signer=AnswerSigner.from_pem_file(key_file),
        locator_id=settings.locator_id,
        status_token=None if token is None else token.get_secret_value(),
    )


def create_locator_app(
    store: Store,
    *,
    publishers: Publishers,
    gateway: RequestVerifier,
    gateway_id: str,
    signer: AnswerSigner,
    locator_id: str,
    status_token: str | None = None,
) -> Starlette:
    """Serve the locator over `store`: `publishers` may publish and list their own holdings,
    requests `gateway` verifies (made by `gateway_id`) may locate, and `signer` signs every
    answer as `locator_id`.

    /v1/status (coverage per key version, for key rotation) is served to this host only, or to
    a caller presenting `status_token`."""

    def signed(answer: BaseModel | bytes, status: int = 200) -> Response:
        body = answer if isinstance(answer, bytes) else answer.model_dump_json().encode()
        response = Response(body, status_code=status, media_type="application/json")
        response.headers[SIGNATURE_HEADER] = signer.sign(body, source=locator_id)
        return response

    def endpoint(
        event: str, limit: int, work: Callable[[Request, bytes], Awaitable[BaseModel]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def respond(request: Request) -> Response:
            try:
                body = await _read_body(request, limit)
                return signed(await work(request, body))
            except _Refusal as refusal:
                log_event(_logger, logging.INFO, f"locator_{event}", outcome=refusal.code.value)
                error = ErrorResponse(error=ErrorDetail(code=refusal.code, message=refusal.message))
                return signed(error, refusal.status)

        return respond

    async def publish(request: Request, body: bytes) -> BaseModel:
        agency = await _publisher(publishers, request, body)
        publication = _validated(body, PublishRequest, "publication")
        _own(agency, publication.agency)
        receipt = await _stored(store.publish(publication))
        log_event(
            _logger,
            logging.INFO,
            "locator_publish",
            agency=agency,
            batch_id=receipt.batch_id,
            key_version=publication.key_version,
            published=receipt.published,
            withdrawn=receipt.withdrawn,
            held=receipt.held,
        )
        return receipt

    async def listed(request: Request, body: bytes) -> BaseModel:
        agency = await _publisher(publishers, request, body)
        question = _validated(body, HoldingsListRequest, "holdings list request")
        _own(agency, question.agency)
        return await _stored(
            store.listed(agency, question.key_version, question.after, question.limit)
        )

    async def locate(request: Request, body: bytes) -> BaseModel:
        await _verified(gateway, request, body, locator_id)
        question = _validated(body, LocateRequest, "locate request")
        located = await _stored(
            store.locate(question.pseudonyms, request_id=question.request_id, issuer=gateway_id)
        )
        holders = _registered(located.holders, publishers)
        log_event(
            _logger,
            logging.INFO,
            "locator_locate",
            request_id=question.request_id,
            asked=len(question.pseudonyms),
            agencies=located.agencies,
        )
        return LocateResponse(request_id=question.request_id, holders=holders)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await store.ping()
        except (SQLAlchemyError, OSError) as error:
            log_event(_logger, logging.WARNING, "locator_not_ready", error=type(error).__name__)
            return JSONResponse({"status": "store unreachable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    jwks_document = signer.jwks()

    async def jwks(request: Request) -> Response:
        return JSONResponse(jwks_document)

    async def status(request: Request) -> Response:
        if not _may_see_status(request, status_token):
            return JSONResponse(
                ErrorResponse(
                    error=ErrorDetail(
                        code=ErrorCode.FORBIDDEN,
                        message="The status is served to this host, or with the status token.",
                    )
                ).model_dump(mode="json"),
                status_code=403,
            )
        coverage = await store.coverage()
        return JSONResponse(asdict(coverage))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.create()
        try:
            yield
        finally:
            await publishers.aclose()
            await store.close()

    post = ["POST"]
    return service_app(
        [
            Route(HOLDINGS_PATH, endpoint("publish", MAX_PUBLISH_BYTES, publish), methods=post),
            Route(HOLDINGS_LIST_PATH, endpoint("list", MAX_QUESTION_BYTES, listed), methods=post),
            Route(LOCATE_PATH, endpoint("locate", MAX_QUESTION_BYTES, locate), methods=post),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(JWKS_PATH, jwks, methods=["GET"]),
            Route(STATUS_PATH, status, methods=["GET"]),
        ],
        lifespan,
    )


async def _publisher(publishers: Publishers, request: Request, body: bytes) -> str:
    try:
        return await publishers.verify(request.headers.get("authorization"), body)
    except CheckUnavailable as error:
        raise _Refusal(ErrorCode.UNAVAILABLE, error.message) from None
    except TrustError as error:
        raise _Refusal(ErrorCode.UNAUTHENTICATED, error.message) from None


async def _verified(
    verifier: RequestVerifier, request: Request, body: bytes, audience: str
) -> None:
    try:
        await verifier.verify(request.headers.get("authorization"), body, audience=audience)
    except CheckUnavailable as error:
        raise _Refusal(ErrorCode.UNAVAILABLE, error.message) from None
    except TrustError as error:
        raise _Refusal(ErrorCode.UNAUTHENTICATED, error.message) from None


def _own(signer: str, named: str) -> None:
    """An agency publishes and lists its own holdings only."""
    if named != signer:
        raise _Refusal(ErrorCode.FORBIDDEN, "An agency may publish and list only its own holdings.")


_T = TypeVar("_T")


def _registered(holders: Sequence[Holder], publishers: Publishers) -> list[Holder]:
    """`holders` naming only agencies registered now. An agency taken out of the agencies file
    (its key compromised, say) can no longer withdraw what it published; what it published must
    not go on sending lookups to it. Logged by count, for the operators to clear its holdings."""
    kept, dropped = [], 0
    for holder in holders:
        named = [agency for agency in holder.agencies if agency in publishers]
        dropped += len(holder.agencies) - len(named)
        if named:
            kept.append(holder.model_copy(update={"agencies": named}))
    if dropped:
        log_event(_logger, logging.WARNING, "locator_unregistered_holdings", named=dropped)
    return kept


async def _stored(work: Awaitable[_T]) -> _T:
    """The store's answer; its refusal is BAD_REQUEST, its failure UNAVAILABLE (logged by type
    only: a driver's message may quote the statement's parameters)."""
    try:
        return await work
    except StoreRefusal as refusal:
        raise _Refusal(ErrorCode.BAD_REQUEST, str(refusal)) from None
    except (SQLAlchemyError, OSError) as error:
        log_event(_logger, logging.ERROR, "locator_store_failed", error=type(error).__name__)
        raise _Refusal(
            ErrorCode.UNAVAILABLE, "The locator's store is unavailable; retry."
        ) from None


def _validated(body: bytes, model: type[_ModelT], what: str) -> _ModelT:
    try:
        return parse_message(body, model, what, speaker="This locator")
    except ConnectorError as error:
        raise _Refusal(error.code, error.message) from None


async def _read_body(request: Request, limit: int) -> bytes:
    """At most `limit` bytes, checked as chunks arrive."""
    declared = request.headers.get("content-length", "").encode("latin-1")
    try:
        return await read_capped(request.receive, declared, limit)
    except BodyTooLarge:
        raise _Refusal(
            ErrorCode.BAD_REQUEST, f"The body is larger than {limit} bytes.", 413
        ) from None
    except ClientDisconnect:
        raise _Refusal(ErrorCode.BAD_REQUEST, "The client went away.") from None


def _may_see_status(request: Request, token: str | None) -> bool:
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # As bytes: compare_digest raises TypeError on a str holding anything but ASCII.
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    host = request.client.host if request.client else ""
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
