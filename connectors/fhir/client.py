"""One FHIR server seen from the connector: read a resource, search a type, and nothing else.

Every answer is either parsed FHIR JSON or a `ConnectorError`; "not there" is a value (None) only
where the server said RESOURCE_NOT_FOUND or INVALIDATED_RESOURCE to a read. Calls are bounded by
the lookup's deadline as well as the client's own timeout, so a slow server costs at most the time
the gateway is still waiting; and by size (`MAX_ANSWER_BYTES`, read uncompressed through
`connectors.bounded_reads`), so an endless or compressed answer costs at most that much memory.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from connectors.backend import ConnectorError
from connectors.bounded_reads import AnswerTooLarge, read_answer
from connectors.fhir.auth import FhirAuth
from connectors.fhir.outcomes import NOT_FOUND_CODES, outcome_code, refusal
from connectors.fhir.terminology import SpineError
from connectors.protocol import ErrorCode

FHIR_JSON: Final = "application/fhir+json"
MIN_CALL_S: Final = 0.05
"""Shortest timeout worth giving a call; with less left the SDK's deadline ends the lookup."""
MAX_ANSWER_BYTES: Final = 2 * 1024 * 1024
"""The most of one FHIR answer read. The largest the connector asks for is a PDS search of at most
50 patients (`PDS_MAX_RESULTS`); a PDS Patient is 2-10 KB even with its name and address history,
so 50 are under 500 KB, and a CP-IS or RelatedPerson Bundle is far smaller. 2 MB is four times
that; parsed into FHIR models it is some tens of MB, which a lookup's five searches at once can
hold."""

SearchParams = Sequence[tuple[str, str]]
"""Query parameters in order; a name may repeat (PDS takes `given` twice for two given names)."""


class FhirClient:
    """Calls to one FHIR base URL (`service` names it in errors: "PDS", "CP-IS")."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        auth: FhirAuth,
        http: httpx.AsyncClient,
        timeout_s: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._service = service
        self._auth = auth
        self._http = http
        self._timeout_s = timeout_s

    async def read(self, path: str, *, deadline: datetime) -> dict[str, Any] | None:
        """GET `[base]/path` (e.g. "Patient/9000000009"): the resource, or None when the server
        answers that it does not exist or was invalidated."""
        status, body = await self._get(path, (), deadline)
        if status == 200:
            return _resource(body, self._service)
        code = await _outcome_code(body)
        if status == 404 and code in NOT_FOUND_CODES:
            return None
        raise refusal(self._service, status, code)

    async def search(
        self, path: str, params: SearchParams, *, deadline: datetime, none_found_ok: bool = False
    ) -> Bundle | None:
        """GET `[base]/path?params`: the searchset Bundle. An `OperationOutcome` in its place -
        PDS answers TOO_MANY_MATCHES with 200 - is a refusal, never an empty result. With
        `none_found_ok`, a 404 RESOURCE_NOT_FOUND (PDS's answer to related people of a patient who
        has none) is None. One page of a paged answer (see `_partial`) is INTERNAL, never read
        as the whole of it."""
        status, body = await self._get(path, params, deadline)
        code = await _outcome_code(body)
        if none_found_ok and status == 404 and code == SpineError.RESOURCE_NOT_FOUND:
            return None
        if status != 200 or code is not None:
            raise refusal(self._service, status, code)
        bundle = await asyncio.to_thread(_bundle, body, self._service)
        if _partial(bundle):
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"{self._service} answered with one page of several; the connector reads whole "
                "answers only.",
            )
        return bundle

    async def _get(self, path: str, params: SearchParams, deadline: datetime) -> tuple[int, Any]:
        authorization = await self._auth.authorization(self._http)
        status, body = await self._send(path, params, deadline, authorization)
        if status == 401 and authorization is not None:
            # A cached token the server no longer accepts (revoked, clock skew): one fresh try.
            authorization = await self._auth.authorization(self._http, refresh=True)
            status, body = await self._send(path, params, deadline, authorization)
        try:
            return status, await asyncio.to_thread(json.loads, body, parse_constant=_not_json)
        except (ValueError, RecursionError):  # not JSON, or nested past what Python reads
            if status == 200:
                raise _unreadable(self._service) from None
            return status, None

    async def _send(
        self,
        path: str,
        params: SearchParams,
        deadline: datetime,
        authorization: str | None,
    ) -> tuple[int, bytes]:
        """The status and body of one GET, read whole within the call's time and
        `MAX_ANSWER_BYTES`."""
        headers: Mapping[str, str] = {
            "accept": FHIR_JSON,
            # PDS requires a unique request id (a UUID) on every call.
            "x-request-id": str(uuid.uuid4()),
        }
        if authorization is not None:
            headers = {**headers, "authorization": authorization}
        left = (deadline - datetime.now(UTC)).total_seconds()
        timeout = max(MIN_CALL_S, min(self._timeout_s, left))
        try:
            response, body = await read_answer(
                self._http,
                "GET",
                f"{self._base}/{path}",
                max_bytes=MAX_ANSWER_BYTES,
                within_s=timeout,
                headers=headers,
                params=list(params),
            )
        except AnswerTooLarge:
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"{self._service} answered with more than the connector reads "
                f"({MAX_ANSWER_BYTES // (1024 * 1024)} MB).",
            ) from None
        except httpx.TimeoutException:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, f"{self._service} did not answer in time."
            ) from None
        except httpx.DecodingError:
            raise _unreadable(self._service) from None
        except httpx.HTTPError:
            raise ConnectorError(
                ErrorCode.UNAVAILABLE, f"{self._service} could not be reached."
            ) from None
        return response.status_code, body


async def _outcome_code(body: Any) -> str | None:
    """`outcome_code`, validating an OperationOutcome in a worker thread (see `_bundle`)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    return await asyncio.to_thread(outcome_code, body)


def _bundle(body: Any, service: str) -> Bundle:
    """The searchset `body` as a Bundle. Called in a worker thread: up to MAX_ANSWER_BYTES of
    FHIR takes seconds of CPU to validate, which on the event loop would hold every lookup, this
    one's deadline included, until it was done."""
    try:
        return Bundle.model_validate(body)
    except ValidationError:
        raise _unreadable(service) from None


def _partial(bundle: Bundle) -> bool:
    """Whether a searchset is one page of its results: it links to a `next` page, or its `total`
    counts more matches than it holds. The connector asks for at most what one answer carries and
    never follows pages, so a paged answer read as it stands would be a partial answer that looks
    complete - a plan on the next page read as no plan, some carers as all of them."""
    if any(link.relation == "next" for link in bundle.link or []):
        return True
    held = sum(
        1
        for entry in bundle.entry or []
        if entry.resource is not None
        and not (entry.search is not None and entry.search.mode in ("outcome", "include"))
    )
    return bundle.total is not None and bundle.total > held


def _not_json(constant: str) -> Any:
    """NaN and Infinity, which Python's JSON reader takes and JSON (so FHIR) does not have."""
    raise ValueError(f"{constant} is not JSON")


def _resource(body: Any, service: str) -> dict[str, Any]:
    if not isinstance(body, dict) or "resourceType" not in body:
        raise _unreadable(service)
    return body


def _unreadable(service: str) -> ConnectorError:
    return ConnectorError(
        ErrorCode.INTERNAL, f"{service} answered in a form the connector cannot read."
    )
