"""Checks of what a lookup by identifier returns: the child, and of the child only what was asked.

Minimisation is judged by the SDK's own rules (`connectors.minimisation.minimise`): a record the
connector sent must be exactly what minimising it for the requested fields would leave.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from connectors.conformance.dataset import exact_search
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
    strangers = [r for r in answer.records if not _answers_to(r, kind, sent)]
    if strangers:
        return Verdict.failed(
            f"{len(strangers)} record(s) without the requested {kind} came back with the child"
        )
    for record in answer.records:
        other = _someone_else(record, plain)
        if other is not None:
            return Verdict.failed(f"the record under the plain child's {kind} {other}")
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
            other = _someone_else(record, session.dataset.plain)
            if other is not None:
                return Verdict.failed(f"the record found by identifier {other}")
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
    return await _minimises_candidates(session)


async def _minimises_candidates(session: Session) -> Verdict:
    """Every candidate a search sends - mostly other children - holds no more than the search
    asked for: minimisation is for every record that leaves the agency, not only for the child
    looked up by identifier."""
    if not session.holdings.provides(FieldId.NAME, FieldId.DATE_OF_BIRTH):
        return Verdict.passed()
    request = session.by_demographics(exact_search(session.dataset.plain))
    answer = await session.answer(request)
    for record in answer.records:
        extra = _overshared(record, request.fields)
        if extra:
            return Verdict.failed(
                f"a search asking for {_names(request.fields)} sent a candidate with more than "
                f"that in {_names(extra)}"
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


def _answers_to(record: ConnectorRecord, kind: str, sent: str | None) -> bool:
    """Whether `record` carries the identifier asked with: as its own, or - a UPN - as one of its
    `former_upns`, the child's record under the UPN that replaced it (the protocol's matching)."""
    if getattr(record.identifiers, kind) == sent:
        return True
    return kind == "upn" and sent in (record.identifiers.former_upns or ())


def _someone_else(record: ConnectorRecord, child: ConnectorRecord) -> str | None:
    """How `record`, sent under `child`'s identifier, describes another child: a name or date of
    birth that is not the child's (case and spacing aside), or None when what it sends of them
    agrees. A row joined on the wrong key would pass on identifiers alone."""
    if record.name is not None and child.name is not None:
        for part in ("given", "family"):
            if _folded(getattr(record.name, part)) != _folded(getattr(child.name, part)):
                return f"carries another child's {part} name"
    born = record.date_of_birth
    if born is not None and child.date_of_birth is not None and born != child.date_of_birth:
        return "carries another child's date of birth"
    return None


def _folded(name: str) -> str:
    return " ".join(name.split()).casefold()


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
