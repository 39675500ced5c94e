"""One run of the kit against one connector: what every check works with, and what a check is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from connectors.app import ERROR_STATUS
from connectors.conformance.client import ConnectorClient, Exchange, lookup_request
from connectors.conformance.dataset import ConformanceDataset, lookup_identifiers
from connectors.conformance.holdings import Holdings
from connectors.conformance.results import Verdict
from connectors.protocol import (
    ConnectorRecord,
    Demographics,
    ErrorCode,
    FieldId,
    LookupRequest,
    LookupResponse,
)
from connectors.trust import KeySource

MATCH_FIELDS = (FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX, FieldId.ADDRESS)
"""What the gateway asks for in every demographic lookup, to score candidates."""


@dataclass(frozen=True)
class Session:
    """The connector under test, the dataset it was loaded with, and the run's settings."""

    client: ConnectorClient
    dataset: ConformanceDataset
    answer_keys: KeySource
    answer_keys_from: str
    max_ms: float
    lookups: int

    @property
    def source(self) -> str:
        return self.client.audience

    @property
    def holdings(self) -> Holdings:
        return self.dataset.holdings

    def by_identifier(
        self, record: ConnectorRecord, fields: Collection[FieldId] | None = None
    ) -> LookupRequest:
        """A lookup of `record`'s child by identifier, for `fields` (by default the name, or
        else the first field the agency provides)."""
        return lookup_request(
            identifiers=lookup_identifiers(record, self.holdings),
            fields=self._default_fields() if fields is None else fields,
        )

    def by_demographics(self, demographics: Demographics) -> LookupRequest:
        """A demographic lookup asking, as the gateway does, for the fields that score one."""
        return lookup_request(
            demographics=demographics,
            fields=[field for field in MATCH_FIELDS if field in self.holdings.fields],
        )

    def by_unknown_identifier(self) -> LookupRequest:
        """A lookup by an identifier no conformance child holds."""
        return lookup_request(
            identifiers=self.dataset.unknown_identifiers(), fields=self._default_fields()
        )

    async def answer(self, request: LookupRequest) -> LookupResponse:
        """Send `request` signed, and read the answer (Nonconformance if there is none)."""
        exchange = await self.client.lookup(request)
        return exchange.answer(request, self.source)

    def _default_fields(self) -> list[FieldId]:
        if FieldId.NAME in self.holdings.fields:
            return [FieldId.NAME]
        return sorted(self.holdings.fields)[:1]


@dataclass(frozen=True)
class Check:
    """One conformance check: its name as printed, and how it reaches its verdict."""

    name: str
    run: Callable[[Session], Awaitable[Verdict]]


def same_child(record: ConnectorRecord, expected: ConnectorRecord) -> bool:
    """Whether `record` carries one of `expected`'s identifiers: the connector's copy of a child
    keeps the child's identifiers even if its record ids are its own."""
    ours, theirs = record.identifiers, expected.identifiers
    return any(
        mine is not None and mine == getattr(theirs, kind)
        for kind, mine in ours.model_dump().items()
    )


def expect_refusal(exchange: Exchange, code: ErrorCode, what: str) -> Verdict:
    """Pass when `exchange` is the protocol's refusal `code` (its ErrorResponse and status);
    `what` names the request, for the failure's reason."""
    status = ERROR_STATUS[code]
    if exchange.status == 200:
        return Verdict.failed(f"answered {what}; expected HTTP {status} {code}")
    error = exchange.error()
    if error is None:
        return Verdict.failed(
            f"refused {what} with HTTP {exchange.status} but no protocol ErrorResponse"
        )
    if error.error.code is not code or exchange.status != status:
        return Verdict.failed(
            f"refused {what} with {exchange.describe()}; expected HTTP {status} {code}"
        )
    return Verdict.passed()
