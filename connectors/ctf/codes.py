"""The DfE code values a Common Transfer File uses for sex, relationships and placeholder schools.

Codes are the Common Basic Data Set's (CBDS). They live here, apart from the reader and the writer,
so that both translate through the same table and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from connectors.protocol import Sex

SEX_FROM_CODE: Final[Mapping[str, Sex]] = MappingProxyType({"M": Sex.MALE, "F": Sex.FEMALE})
"""CTF `Sex` (formerly `Gender`) codes; any other code (U, X, ...) reads as unknown."""

SEX_TO_CODE: Final[Mapping[Sex, str]] = MappingProxyType(
    {Sex.MALE: "M", Sex.FEMALE: "F", Sex.UNKNOWN: "U"}
)

RELATIONSHIPS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "PAM": "Mother",
        "PAF": "Father",
        "STM": "Stepmother",
        "STF": "Stepfather",
        "FOM": "Foster mother",
        "FOF": "Foster father",
        "CAR": "Carer",
        "REL": "Relative",
        "FAM": "Family member",
        "CHM": "Childminder",
        "DOC": "Doctor",
        "SWR": "Social worker",
        "OTH": "Other contact",
    }
)
"""CBDS relationship-to-pupil codes, as a practitioner reads them. A code not listed is passed on
as written rather than guessed at."""

CARER_RELATIONSHIPS: Final = frozenset(
    {"PAM", "PAF", "STM", "STF", "FOM", "FOF", "CAR", "REL", "FAM"}
)
"""Contacts who look after the child. A CTF lists every contact a school holds - the family doctor,
a childminder, a neighbour to ring in an emergency - and only these (or anyone with parental
responsibility) are the child's carers."""

RELATIONSHIP_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        **{text.casefold(): code for code, text in RELATIONSHIPS.items()},
        "grandmother": "REL",
        "grandfather": "REL",
        "foster carer": "CAR",
    }
)
"""Relationship text back to a code, for the writer; a relationship CBDS has no code for is written
as the nearest one (a grandmother is a relative) and reads back as that."""

NOT_A_SCHOOL: Final = frozenset({"LLLL", "XXXX", "MMMM"})
"""Destination establishment numbers that name no school: the local authority itself (LLLL), and
a pupil whose next school is not known (XXXX, the DfE's lost pupils database; MMMM, a child missing
education)."""

LA_ESTAB: Final = "LLLL"
