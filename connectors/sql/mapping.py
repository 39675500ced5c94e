"""The mapping file: how an agency's own tables and columns become protocol fields.

An agency configures the SQL connector rather than coding it, so the mapping is the whole of its
integration work, and mistakes in it must be caught where the agency can fix them: when the file
is read (this module: an unknown key, a missing one, a wrong type, each named by its dotted key)
and when the connector starts (`connectors.sql.tables`: a table or column the database does not
have, named by the key that mentions it). A mapping that loads and starts is one a lookup cannot
trip over.

The file is TOML; `connectors/sql/la_case_records/mapping.toml` is a worked example and
docs/connectors.md the reference.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from connectors.backend import summarise_validation_error
from connectors.protocol import FieldId, Sex

_Identifier = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
]
"""A table or column name as SQL spells it unquoted: the mapping names things, it holds no SQL."""

DEFAULT_REFRESH: Final = timedelta(seconds=60)


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the key at fault."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Section):
    """A fixed text for every row (`service = { value = "Early help" }`), where the agency's table
    has no column for it because the table itself says it."""

    value: str = Field(min_length=1)


_Text = _Identifier | Constant
"""A column to read the text from, or a constant."""


class Condition(_Section):
    """A flag read from a column: true when the column's value, as text, is one of `in`
    (`{ column = "restriction", in = ["S", "X"] }`); a bare column name is a boolean column."""

    column: _Identifier
    in_: list[str] = Field(alias="in", min_length=1)


_Flag = _Identifier | Condition


class NameColumns(_Section):
    given: _Identifier
    family: _Identifier
    former_family: _Identifier | None = None
    known_as: _Identifier | None = None
    separator: str = Field(default=";", min_length=1, max_length=3)
    """Splits several former family names or known-as names kept in one column."""


class SexColumn(_Section):
    column: _Identifier
    values: dict[str, Sex] = Field(min_length=1)
    """The agency's codes (as text) and the sex each means; a code not listed reads as unknown."""


class AddressColumns(_Section):
    lines: list[_Identifier] = Field(min_length=1, max_length=6)
    postcode: _Identifier


class RecordFlag(_Section):
    """A record flag (`shielded`, `restricted`) read from a column that may hold NULL, with what
    a NULL there means: `{ column = "shield", null = false }` for a boolean column,
    `{ column = "restriction", in = ["S", "X"], null = false }` for a code column.

    Without `null`, a NULL is no answer: the agency has not said the child is not shielded, so
    the record cannot be read (the lookup reaching it is refused, never answered as if clear)."""

    column: _Identifier
    in_: list[str] | None = Field(default=None, alias="in", min_length=1)
    """The codes that set the flag; none for a boolean column."""
    null: StrictBool | None = None
    """What a NULL in the column means: true (the flag is set), false (it is not)."""


_RecordFlag = _Identifier | RecordFlag


class FlagColumns(_Section):
    """The record's shielding and restriction. A bare column name is a boolean column that holds
    no NULL (a NULL refuses the record); a table states codes and what a NULL means."""

    shielded: _RecordFlag | None = None
    restricted: _RecordFlag | None = None


class ChildTable(_Section):
    """The table with one row per child: its key is the record id and the local id."""

    table: _Identifier
    key: _Identifier
    nhs_number: _Identifier | None = None
    upn: _Identifier | None = None
    former_upn: _Identifier | None = None
    """Looked up as a UPN too: a pupil's UPN changes when the first one was temporary."""
    date_of_birth: _Identifier | None = None
    name: NameColumns | None = None
    sex: SexColumn | None = None
    address: AddressColumns | None = None
    flags: FlagColumns = Field(default_factory=FlagColumns)
    as_of: _Identifier | None = None
    """When the row's facts were last known true (a statutory return's reference date); without
    it a record is as of the lookup, as a live case system's are."""
    updated_at: _Identifier | None = None
    """When the agency's system last changed the row: lets the blocking-key refresh read only
    rows changed since it last ran, instead of every row."""

    def columns(self) -> Iterator[tuple[str, str]]:
        """(mapping key, column) for every column this section names."""
        yield from _columns("child", self, ("key", "nhs_number", "upn", "former_upn"))
        yield from _columns("child", self, ("date_of_birth", "as_of", "updated_at"))
        if self.name is not None:
            yield from _columns("child.name", self.name, ("given", "family"))
            yield from _columns("child.name", self.name, ("former_family", "known_as"))
        if self.sex is not None:
            yield "child.sex.column", self.sex.column
        if self.address is not None:
            for number, line in enumerate(self.address.lines):
                yield f"child.address.lines[{number}]", line
            yield "child.address.postcode", self.address.postcode
        for flag in ("shielded", "restricted"):
            value = getattr(self.flags, flag)
            if isinstance(value, RecordFlag):
                yield f"child.flags.{flag}.column", value.column
            elif value is not None:
                yield f"child.flags.{flag}", value


class Episodes(_Section):
    """An indicator as a declarative rule: true when the child has a row in `table` with
    `start` on or before today and `end` empty or after today (and, with `where`, the row meets
    that condition too) - an open plan, episode or case."""

    table: _Identifier
    child: _Identifier
    """The column holding the child's key."""
    start: _Identifier
    end: _Identifier | None = None
    """Without it, a row once started never ends (a table of current cases only)."""
    where: Condition | None = None

    def columns(self, key: str) -> Iterator[tuple[str, str]]:
        yield from _columns(key, self, ("child", "start", "end"))
        if self.where is not None:
            yield f"{key}.where.column", self.where.column


class Indicators(_Section):
    child_protection_plan: Episodes | None = None
    looked_after: Episodes | None = None
    child_in_need: Episodes | None = None
    early_help: Episodes | None = None


class CarerTable(_Section):
    table: _Identifier
    child: _Identifier
    name: _Identifier
    relationship: _Text
    parental_responsibility: _Flag
    phone: _Identifier | None = None
    order_by: _Identifier | None = None
    """The order a child's carers are listed in (the agency's own, e.g. main carer first)."""

    def columns(self) -> Iterator[tuple[str, str]]:
        yield from _columns("carers", self, ("child", "name", "relationship", "phone", "order_by"))
        if isinstance(self.parental_responsibility, Condition):
            yield "carers.parental_responsibility.column", self.parental_responsibility.column
        else:
            yield "carers.parental_responsibility", self.parental_responsibility


class InvolvementTable(_Section):
    """One table of people working with the child (allocated social worker, early help lead,
    team). Rows that ended (`until` before today) are left out: a practitioner wants who to
    call now."""

    table: _Identifier
    child: _Identifier
    service: _Text
    organisation: _Text | None = None
    practitioner_name: _Identifier | None = None
    practitioner_role: _Text | None = None
    practitioner_phone: _Identifier | None = None
    practitioner_email: _Identifier | None = None
    lead: _Flag | None = None
    since: _Identifier | None = None
    until: _Identifier | None = None
    order_by: _Identifier | None = None

    def columns(self, key: str) -> Iterator[tuple[str, str]]:
        names = ("child", "service", "organisation", "practitioner_name", "practitioner_role")
        yield from _columns(key, self, names)
        names = ("practitioner_phone", "practitioner_email", "since", "until", "order_by")
        yield from _columns(key, self, names)
        if isinstance(self.lead, Condition):
            yield f"{key}.lead.column", self.lead.column
        elif self.lead is not None:
            yield f"{key}.lead", self.lead


class BlockingSettings(_Section):
    """The blocking-key table the connector keeps for demographic search (connectors.sql.blocks)."""

    table: _Identifier = "childlookup_blocking_keys"
    refresh_seconds: float = Field(default=DEFAULT_REFRESH.total_seconds(), ge=0)
    """How often a serving connector indexes rows changed since it last looked (needs
    `child.updated_at`); 0 leaves it to `refresh_blocking_keys` run by the operator."""


class Mapping(_Section):
    """A whole mapping file."""

    schema_: _Identifier | None = Field(default=None, alias="schema")
    """The database schema holding the tables (PostgreSQL); none for the default one."""
    child: ChildTable
    indicators: Indicators = Field(default_factory=Indicators)
    carers: CarerTable | None = None
    involvements: list[InvolvementTable] = Field(default_factory=list)
    blocking: BlockingSettings = Field(default_factory=BlockingSettings)

    @model_validator(mode="after")
    def _blocking_table_is_its_own(self) -> Mapping:
        if self.blocking.table in self.tables():
            raise ValueError("blocking.table must not be one of the agency's mapped tables")
        return self

    def tables(self) -> set[str]:
        """Every agency table the mapping reads."""
        named = {self.child.table, *(i.table for i in self.involvements)}
        named.update(e.table for e in self.episodes().values())
        if self.carers is not None:
            named.add(self.carers.table)
        return named

    def episodes(self) -> dict[FieldId, Episodes]:
        """The indicators this mapping can answer, by field."""
        return {
            FieldId(name): episodes
            for name, episodes in self.indicators
            if isinstance(episodes, Episodes)
        }

    def columns(self) -> Iterator[tuple[str, str, str]]:
        """(mapping key, table, column) for every column the mapping names."""
        for key, column in self.child.columns():
            yield key, self.child.table, column
        for field, episodes in self.episodes().items():
            for key, column in episodes.columns(f"indicators.{field.value}"):
                yield key, episodes.table, column
        if self.carers is not None:
            for key, column in self.carers.columns():
                yield key, self.carers.table, column
        for number, involvement in enumerate(self.involvements):
            for key, column in involvement.columns(f"involvements[{number}]"):
                yield key, involvement.table, column

    def provides(self) -> tuple[FieldId, ...]:
        """The protocol fields records read through this mapping can carry."""
        child = self.child
        held = {
            FieldId.NHS_NUMBER: child.nhs_number is not None,
            FieldId.NAME: child.name is not None,
            FieldId.DATE_OF_BIRTH: child.date_of_birth is not None,
            FieldId.SEX: child.sex is not None,
            FieldId.ADDRESS: child.address is not None,
            FieldId.CARERS: self.carers is not None,
            FieldId.INVOLVEMENTS: bool(self.involvements),
            **{field: True for field in self.episodes()},
        }
        return tuple(field for field in FieldId if held.get(field, False))


def _columns(key: str, section: BaseModel, names: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for name in names:
        value = getattr(section, name)
        if isinstance(value, str):
            yield f"{key}.{name}", value


def load_mapping(path: Path) -> Mapping:
    """Read and validate a mapping file.

    Raises MappingError naming the file and, for a file that parses, each key at fault (at most
    three, then how many more); a mapping holds table and column names only, so the message may
    quote what the file says.
    """
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise MappingError(f"{path}: cannot read the mapping file: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"{path}: not TOML: {error}") from None
    try:
        return Mapping.model_validate(document)
    except ValidationError as error:
        raise MappingError(f"{path}: {summarise_validation_error(error)}") from None
