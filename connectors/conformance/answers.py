"""Checks of what a lookup by identifier returns: the child, and of the child only what was asked.

Minimisation is judged by the SDK's own rules (`connectors.minimisation.minimise`): a record the
connector sent must be exactly what minimising it for the requested fields would leave.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from connectors.conformance.results import Verdict
from connectors.conformance.session import Check, Session, same_child
from connectors.minimisation import minimise
from connectors.protocol import INDICATOR_FIELDS, ConnectorRecord, FieldId, Involvement

_NOT_RECORD_FIELDS: Final = frozenset({FieldId.NHS_NUMBER, FieldId.SENSITIVE_SERVICE_DETAILS})
"""Field ids with no record attribute of their own: the NHS number travels in `identifiers`,
and sensitive service details only widen `involvements`."""


async def finds_by_identifier(session: Session) -> Verdict:
    plain = session.dataset.plain
    request = session.by_identifier(plain)
    answer = await session.answer(request)
    kind = session.holdings.lookup_kind
    sent = getattr(request.identifiers, kind)
    if not any(same_child(record, plain) for record in answer.records):
        return Verdict.failed(f"the plain child was not found by {kind}")
    strangers = [r for r in answer.records if getattr(r.identifiers, kind) != sent]
    if strangers:
        return Verdict.failed(
            f"{len(strangers)} record(s) without the requested {kind} came back with the child"
        )
    return Verdict.passed()


async def unknown_identifier_is_empty(session: Session) -> Verdict:
    request = session.by_unknown_identifier()
    answer = await session.answer(request)
    if answer.records:
        return Verdict.failed(
            f"an identifier no child holds returned {len(answer.records)} records"
        )
    return Verdict.passed()


async def returns_only_requested_fields(session: Session) -> Verdict:
    releasable = sorted(session.holdings.fields - _NOT_RECORD_FIELDS)
    if len(releasable) < 2:
        return Verdict.skipped("the agency provides fewer than two fields to choose between")
    # Two complementary subsets: every field the agency provides is asked for once and left out
    # once, so both over-sharing and dropping a requested field are seen.
    for asked in (releasable[::2], releasable[1::2]):
        request = session.by_identifier(session.dataset.plain, fields=asked)
        answer = await session.answer(request)
        found = [r for r in answer.records if same_child(r, session.dataset.plain)]
        if not found:
            return Verdict.failed("the plain child was not found by identifier")
        for record in found:
            extra = _overshared(record, asked)
            if extra:
                return Verdict.failed(
                    f"asked for {_names(asked)}, sent more than that in {_names(extra)}"
                )
            missing = [field for field in asked if not _holds(record, field)]
            if missing:
                return Verdict.failed(
                    f"asked for {_names(asked)}, sent no value for {_names(missing)} "
                    "(the dataset holds one)"
                )
    return Verdict.passed()


async def withholds_sensitive_service_details(session: Session) -> Verdict:
    if FieldId.INVOLVEMENTS not in session.holdings.fields:
        return Verdict.skipped("the agency does not provide involvements")
    if FieldId.SENSITIVE_SERVICE_DETAILS not in session.holdings.fields:
        return Verdict.skipped("the agency holds no sensitive services")
    sensitive = await _sensitive_involvements(session, [FieldId.INVOLVEMENTS])
    if not sensitive:
        return Verdict.failed("the plain child's sensitive involvement did not come back")
    if any(_provider_shown(involvement) for involvement in sensitive):
        return Verdict.failed(
            "a sensitive involvement's service, organisation or practitioner was sent "
            "without sensitive_service_details being asked for"
        )
    if any(involvement.broker is None for involvement in sensitive):
        return Verdict.failed("a sensitive involvement came back without its broker")
    asked = [FieldId.INVOLVEMENTS, FieldId.SENSITIVE_SERVICE_DETAILS]
    detailed = await _sensitive_involvements(session, asked)
    if not any(_provider_shown(involvement) for involvement in detailed):
        return Verdict.failed(
            "sensitive_service_details was asked for and provided, yet no sensitive "
            "involvement came back with its service"
        )
    return Verdict.passed()


async def _sensitive_involvements(session: Session, fields: Sequence[FieldId]) -> list[Involvement]:
    plain = session.dataset.plain
    answer = await session.answer(session.by_identifier(plain, fields=fields))
    return [
        involvement
        for record in answer.records
        if same_child(record, plain)
        for involvement in record.involvements or ()
        if involvement.sensitive
    ]


def _provider_shown(involvement: Involvement) -> bool:
    return any(
        value is not None
        for value in (involvement.service, involvement.organisation, involvement.practitioner)
    )


def _overshared(record: ConnectorRecord, asked: Collection[FieldId]) -> list[str]:
    """The record attributes holding more than minimising for `asked` would leave."""
    kept = minimise(record, asked)
    return [
        name
        for name in ConnectorRecord.model_fields
        if getattr(record, name) != getattr(kept, name)
    ]


def _holds(record: ConnectorRecord, field: FieldId) -> bool:
    if field in INDICATOR_FIELDS:
        return record.indicators is not None and getattr(record.indicators, field) is not None
    return getattr(record, field.value) is not None


def _names(fields: Collection[str]) -> str:
    return ", ".join(str(field) for field in fields)


CHECKS: Final = (
    Check("finds_by_identifier", finds_by_identifier),
    Check("unknown_identifier_is_empty", unknown_identifier_is_empty),
    Check("returns_only_requested_fields", returns_only_requested_fields),
    Check("withholds_sensitive_service_details", withholds_sensitive_service_details),
)
