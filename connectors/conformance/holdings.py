"""What one agency holds, as the conformance kit sees it: the fields it provides, the flags it
carries and the identifiers its records are keyed by.

The reference agencies' holdings follow their profiles (`connectors.reference`) and the synthetic
population: health carries the PDS restricted flag and the NHS number, education is keyed by UPN,
social care shields children and holds the NHS number beside its own id. Any other agency states
its fields (`--fields`) and is assumed to carry both flags and both national identifiers unless
told otherwise (`--flags`), so the kit asks more of it rather than less.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from connectors.protocol import FieldId
from connectors.reference import REFERENCE_AGENCIES


class Flag(StrEnum):
    """A record flag (`RecordFlags`) an agency may set."""

    SHIELDED = "shielded"
    RESTRICTED = "restricted"


IdentifierKind = Literal["nhs_number", "upn", "local_id"]

_REFERENCE_FLAGS: Final[Mapping[str, frozenset[Flag]]] = MappingProxyType(
    {
        "health": frozenset({Flag.RESTRICTED}),
        "education": frozenset(),
        "social_care": frozenset({Flag.SHIELDED}),
    }
)
_REFERENCE_IDENTIFIERS: Final[Mapping[str, tuple[IdentifierKind, ...]]] = MappingProxyType(
    {
        "health": ("nhs_number",),
        "education": ("upn",),
        "social_care": ("nhs_number", "local_id"),
    }
)
_OTHER_IDENTIFIERS: Final[tuple[IdentifierKind, ...]] = ("nhs_number", "upn")


@dataclass(frozen=True)
class Holdings:
    """One agency's share of the conformance dataset, and so what the kit may ask it for."""

    agency: str
    fields: frozenset[FieldId]
    flags: frozenset[Flag]
    identifiers: tuple[IdentifierKind, ...]

    @property
    def lookup_kind(self) -> IdentifierKind:
        """The national identifier the kit looks children up by: the NHS number if held."""
        return "nhs_number" if "nhs_number" in self.identifiers else "upn"

    def provides(self, *fields: FieldId) -> bool:
        return all(field in self.fields for field in fields)


def holdings(
    agency: str,
    *,
    fields: Collection[FieldId] | None = None,
    flags: Collection[Flag] | None = None,
) -> Holdings:
    """The holdings of `agency`: a reference agency's by default, overridden by `fields` and
    `flags`. Raises ValueError for an agency that is not a reference agency when `fields` is not
    given: the kit cannot guess what an unknown agency provides."""
    if fields is None:
        profile = REFERENCE_AGENCIES.get(agency)
        if profile is None:
            known = ", ".join(sorted(REFERENCE_AGENCIES))
            raise ValueError(
                f"{agency!r} is not a reference agency ({known}): say which fields it provides"
            )
        fields = profile.provides
    carried = _REFERENCE_FLAGS.get(agency, frozenset(Flag)) if flags is None else flags
    return Holdings(
        agency=agency,
        fields=frozenset(fields),
        flags=frozenset(carried),
        identifiers=_REFERENCE_IDENTIFIERS.get(agency, _OTHER_IDENTIFIERS),
    )
