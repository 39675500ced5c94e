"""Data minimisation enforced by the SDK, so an agency cannot over-share by accident.

A record is rebuilt from an allowlist rather than having unrequested fields blanked: a field added
to the protocol later is left out until a `FieldId` names it, instead of leaking until someone
remembers to blank it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from connectors.protocol import (
    INDICATOR_FIELDS,
    PLAIN_FIELDS,
    ConnectorRecord,
    FieldId,
    Indicators,
    Involvement,
)
from connectors.sensitive_services import as_marked

# Needed by the gateway whatever the caller may see: every identifier (not only those asked by) to
# match records across sources, and the flags to apply shielding. The gateway's policy, not the
# connector, decides which of them reach the caller.
_ALWAYS_KEPT: Final = ("record_id", "identifiers", "flags", "as_of")
# Each plain field with its attribute name, looked up once: an enum's `.value` is a descriptor
# call, and minimise runs for every record of every lookup.
_PLAIN_ATTRIBUTES: Final = tuple((field, field.value) for field in PLAIN_FIELDS)
_PLAIN_BY_ATTRIBUTE: Final = {name: field for field, name in _PLAIN_ATTRIBUTES}
_RECORD_ATTRIBUTES: Final = tuple(ConnectorRecord.model_fields)


def minimise(record: ConnectorRecord, fields: Collection[FieldId]) -> ConnectorRecord:
    """Keep only what was requested: identifiers, flags, record_id and as_of, plus `fields`.

    Sensitive involvements lose their provider (service, organisation, practitioner) and their
    dates (since, until) unless `sensitive_service_details` is requested, leaving the broker as
    the way to make contact: when a sexual-health or mental-health service began says something
    about the child too. An involvement in a service of `connectors.sensitive_services` is
    sensitive whether or not the agency marked it, and is marked so here: one agency's unmarked
    "CAMHS" would otherwise show the provider that another's marked entry brokers.
    """
    wanted = frozenset(fields)
    if _holds_only(record, wanted):
        return record  # records are immutable: passing it on is the same as a copy
    kept = {name: getattr(record, name) for name in _ALWAYS_KEPT}
    for field, name in _PLAIN_ATTRIBUTES:
        if field in wanted:
            kept[name] = getattr(record, name)
    if FieldId.INVOLVEMENTS in wanted and record.involvements is not None:
        show_provider = FieldId.SENSITIVE_SERVICE_DETAILS in wanted
        kept["involvements"] = [
            _minimise_involvement(involvement, show_provider) for involvement in record.involvements
        ]
    if record.indicators is not None:
        kept["indicators"] = _minimise_indicators(record.indicators, wanted)
    # The values come from an already-validated record, so validating them again only costs time.
    return ConnectorRecord.model_construct(**kept)


def _holds_only(record: ConnectorRecord, wanted: frozenset[FieldId]) -> bool:
    """Whether `record` already is, value for value, what minimising it for `wanted` would build:
    as when a lookup asks for all an agency holds, which saves building the record again.

    Judged by the same allowlist: a field outside it that is not empty - one no `FieldId` names
    included - means the record is rebuilt, and so do involvements or indicators that minimising
    would change.
    """
    for name in _RECORD_ATTRIBUTES:
        value = getattr(record, name)
        if value is None or name in _ALWAYS_KEPT:
            continue
        field = _PLAIN_BY_ATTRIBUTE.get(name)
        if field is not None:
            if field not in wanted:
                return False
        elif name == "involvements":
            if FieldId.INVOLVEMENTS not in wanted:
                return False
            show_provider = FieldId.SENSITIVE_SERVICE_DETAILS in wanted
            if any(
                (kept := _minimise_involvement(involvement, show_provider)) is not involvement
                and kept != involvement
                for involvement in value
            ):
                return False
        elif name != "indicators" or value != _minimise_indicators(value, wanted):
            return False
    return True


def _minimise_involvement(involvement: Involvement, show_provider: bool) -> Involvement:
    involvement = as_marked(involvement)
    if show_provider or not involvement.sensitive:
        return involvement
    return Involvement(
        service=None,
        lead=involvement.lead,
        sensitive=True,
        broker=involvement.broker,
    )


def _minimise_indicators(indicators: Indicators, wanted: frozenset[FieldId]) -> Indicators | None:
    requested = [field for field in INDICATOR_FIELDS if field in wanted]
    if not requested:
        return None
    return Indicators(**{field.value: getattr(indicators, field.value) for field in requested})
