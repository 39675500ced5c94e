"""What an agency implements to answer federated lookups, and how it refuses one.

The SDK owns everything around the lookup - parsing, deadlines, minimisation, error mapping and
logging - so that an agency's code is one method over its own records and cannot get those wrong.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final, Protocol, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from connectors.protocol import PROTOCOL_VERSION, ConnectorRecord, ErrorCode, LookupRequest

_MessageT = TypeVar("_MessageT", bound=BaseModel)

_MAX_REPORTED_ERRORS = 3

ENGLAND: Final = ZoneInfo("Europe/London")
"""The zone the agencies' dates are in: a plan's end date is a day in England."""


def today_in_england() -> date:
    """The date in England now: a plan that ends today is still open until midnight there, not
    at midnight UTC - nor at midnight in whatever zone the connector's machine is set to."""
    return datetime.now(ENGLAND).date()


class ConnectorBackend(Protocol):
    """An agency's record store, seen from the connector.

    `lookup` may return records with more fields than were requested: the SDK minimises every record
    before it leaves the connector, so a backend can stay a plain query over its own data.
    """

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        """Records whose identifiers match any identifier in the request, then - when the
        request carries demographics - candidates that may be the child (see
        connectors.search.CandidateIndex); empty when there are none."""


class ConnectorError(Exception):
    """A typed refusal: the gateway turns the code into a source status a practitioner sees, so a
    backend raises this rather than letting a failure look like "no record"."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def summarise_validation_error(error: ValidationError) -> str:
    """Name where and why validation failed, never what the input was.

    pydantic's own text echoes input values, and the input here is a child's identifiers or record,
    which must not reach a log, an error response or a start-up message.
    """
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for problem in problems[:_MAX_REPORTED_ERRORS]:
        where = ".".join(str(loc) for loc in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    if len(problems) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(problems) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def parse_message(body: bytes, model: type[_MessageT], what: str, *, speaker: str) -> _MessageT:
    """`body` as `model`, or ConnectorError: UNSUPPORTED_VERSION when the protocol version is
    not ours - it wins over any other problem, since a v2 message is expected to fail the v1 schema
    elsewhere too and the sender needs to know it was the version - else BAD_REQUEST naming where
    (never what: summarise_validation_error). `speaker` says who refuses ("This connector")."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        if any(problem["loc"] == ("protocol_version",) for problem in error.errors()):
            raise ConnectorError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"{speaker} speaks protocol version {PROTOCOL_VERSION} only.",
            ) from None
        raise ConnectorError(
            ErrorCode.BAD_REQUEST, f"Invalid {what}: {summarise_validation_error(error)}"
        ) from None
