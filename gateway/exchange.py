"""One request to a federated party (a connector, the locator) and its answer, read the same way.

The answer is read with a size cap, so a misbehaving party cannot make the gateway buffer without
bound, and is parsed strictly only after its signature has been checked by the caller: a body that
was not signed by the party it claims to come from is never data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors.protocol import ErrorResponse
from connectors.trust import SIGNATURE_HEADER
from gateway.transport import ConnectorTransport

_AnswerT = TypeVar("_AnswerT", bound=BaseModel)


class Malformed(Exception):
    """The party answered, but not in its protocol (or far too much)."""


@dataclass(frozen=True)
class Reply:
    status_code: int
    payload: bytes
    signature: str | None


_SIGNATURE: Final = SIGNATURE_HEADER.encode("ascii")

REQUEST_TIMEOUTS: Final = {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}
"""httpx's per-request timeouts, in seconds. Each caller bounds its exchange by its own, shorter
deadline; these only stop one that would otherwise outlive the caller."""


async def post_capped(
    transport: ConnectorTransport,
    url: httpx.URL,
    body: bytes,
    headers: Mapping[str, str],
    max_bytes: int,
) -> Reply:
    """POST `body`; the answer, unparsed, with its signature header. Raises Malformed past
    `max_bytes`, httpx errors as they come.

    Straight through the transport, not httpx.AsyncClient: its cookie jar, redirect and auth
    handling, URL and header merging and its request and response models were most of the cost
    of each request (bench/transport.py), and a federated party's answer needs none of them.
    Only `Host` and `Content-Length` are added to `headers`: nothing asks for a compressed
    answer."""
    status, answer_headers, payload = await transport.post(
        url, body, headers, max_bytes, REQUEST_TIMEOUTS
    )
    if payload is None:
        raise Malformed("answer too large")
    signature = next(
        (value.decode("latin-1") for name, value in answer_headers if name.lower() == _SIGNATURE),
        None,
    )
    return Reply(status, payload, signature)


def parsed(reply: Reply, answer: type[_AnswerT]) -> _AnswerT | ErrorResponse:
    """A 200's body as `answer`, any other status's as the protocol's ErrorResponse; Malformed if
    it is neither."""
    try:
        if reply.status_code == 200:
            return answer.model_validate_json(reply.payload)
        return ErrorResponse.model_validate_json(reply.payload)
    except ValidationError as exc:
        raise Malformed(str(reply.status_code)) from exc
