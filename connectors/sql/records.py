"""Rows of the agency's tables read as `ConnectorRecord`s, through the mapping.

One place turns SQL into protocol records - for lookups and for the blocking-key refresh alike -
so a record found by identifier, found by demographics and indexed for search always says the
same about the child. The queries select named columns only, and carers and involvements only
for the few children an answer carries, so a lookup reads no more of the agency's data than the
answer needs.

A database that checks no types (SQLite stores whatever it is given) can hold a date that is no
date: '2015-02-30', '01/06/2015', an integer. Such a value is never allowed to stop a whole
query, nor to be read as an answer: a child's date of birth or as-of read whole or the record is
`UnreadableRecord`; an episode date that is no date makes its indicator unknown (null), never
false - a plan whose start cannot be read may be open.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Dialect,
    Row,
    Select,
    Table,
    and_,
    case,
    exists,
    literal,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType, TypeDecorator, TypeEngine

from connectors.logs import log_event
from connectors.protocol import (
    Address,
    Carer,
    ConnectorRecord,
    Contact,
    FieldId,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    Sex,
)
from connectors.sql.mapping import (
    Condition,
    Constant,
    Episodes,
    InvolvementTable,
    Mapping,
    RecordFlag,
)
from connectors.sql.tables import MappedTables

_INDICATOR_LABEL: Final = "indicator_"
_DATE_LABELS: Final = ("date_of_birth", "as_of")


class UnreadableRecord(ValueError):
    """A child's row holds a value its column's type cannot be read as. Names the row's key and
    the column, never the value (it is a child's data)."""

    def __init__(self, key: str, column: str) -> None:
        super().__init__(f"child {key}: column {column!r} cannot be read")
        self.key = key
        self.column = column

    def log(self, logger: logging.Logger) -> None:
        """For the agency's operators: which row and column, never the value."""
        log_event(logger, logging.ERROR, "sql_row_unreadable", child=self.key, column=self.column)


class _Unreadable:
    """What a date column reads as when its value is not a date."""


_UNREADABLE: Final = _Unreadable()


class _ReadAlone(TypeDecorator[Any]):
    """A column read value by value through its own type's conversion, a value that conversion
    refuses becoming `_UNREADABLE`: SQLAlchemy would otherwise raise for the whole result."""

    impl = NullType
    cache_ok = True

    def __init__(self, inner: TypeEngine[Any]) -> None:
        super().__init__()
        self.inner = inner

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        convert = self.inner.dialect_impl(dialect).result_processor(dialect, None)
        try:
            return value if convert is None else convert(value)
        except (ValueError, TypeError):
            return _UNREADABLE


class _UnreadableDate(FunctionElement[bool]):
    """Whether a date column's value is one SQL cannot compare as a date. Always false but on
    SQLite, the one database here that stores a date column's values unchecked."""

    type = Boolean()
    inherit_cache = True


@compiles(_UnreadableDate)
def _never(element: _UnreadableDate, compiler: SQLCompiler, **kw: Any) -> str:
    return "1 = 0"


@compiles(_UnreadableDate, "sqlite")
def _not_iso_text(element: _UnreadableDate, compiler: SQLCompiler, **kw: Any) -> str:
    """Text that does not start with a real ISO date (date(..., '+0 days') moves '2015-02-30' on
    to March, and gives NULL for '30/05/2024'); an integer or real is no date either."""
    (column,) = element.clauses
    value = compiler.process(column, **kw)
    day = f"substr({value}, 1, 10)"
    not_a_day = f"typeof({value}) != 'text' OR date({day}, '+0 days') IS NOT {day}"
    return f"({value} IS NOT NULL AND ({not_a_day}))"


class RecordReader:
    """Builds the queries for one mapping and reads their rows as records."""

    def __init__(self, mapping: Mapping, tables: MappedTables) -> None:
        self._mapping = mapping
        self._tables = tables
        self.key = tables.child.c[mapping.child.key]

    def select(self, today: date | None) -> Select[Any]:
        """The child table's mapped columns, labelled by what they mean; with `today`, also
        whether each indicator's episodes are open on it (an EXISTS per indicator, on the
        episodes table's child column)."""
        child, table = self._mapping.child, self._tables.child
        columns: list[ColumnElement[Any]] = [self.key.label("key")]
        for label in ("nhs_number", "upn", "former_upn"):
            name = getattr(child, label)
            if name is not None:
                columns.append(table.c[name].label(label))
        for label in _DATE_LABELS:
            name = getattr(child, label)
            if name is not None:
                column = table.c[name]
                columns.append(type_coerce(column, _ReadAlone(column.type)).label(label))
        if child.name is not None:
            for label in ("given", "family", "former_family", "known_as"):
                name = getattr(child.name, label)
                if name is not None:
                    columns.append(table.c[name].label(label))
        if child.sex is not None:
            columns.append(table.c[child.sex.column].label("sex"))
        if child.address is not None:
            columns += [
                table.c[line].label(f"line{number}")
                for number, line in enumerate(child.address.lines)
            ]
            columns.append(table.c[child.address.postcode].label("postcode"))
        for flag in ("shielded", "restricted"):
            value = getattr(child.flags, flag)
            if value is not None:
                column = value.column if isinstance(value, RecordFlag) else value
                columns.append(table.c[column].label(flag))
        if today is not None:
            for field, episodes in self._mapping.episodes().items():
                columns.append(self._open(episodes, field, today).label(_INDICATOR_LABEL + field))
        return select(*columns)

    def _open(self, episodes: Episodes, field: FieldId, today: date) -> ColumnElement[Any]:
        """Whether the child has an open episode: true when one whose dates can be read surely
        is; else NULL (unknown) when one of the child's episodes has no start or a date SQL
        cannot compare, since that one may be open; else false."""
        table = self._tables.episodes[field]
        start = table.c[episodes.start]
        child = [table.c[episodes.child] == self.key]
        if episodes.where is not None:
            child.append(table.c[episodes.where.column].in_(episodes.where.in_))
        opened = [start <= today]
        unreadable = [start.is_(None), _UnreadableDate(start)]
        # What surely keeps an episode from being open today, whatever its other date says: a
        # start read after today, or an end read on or before it (an old plan whose start was
        # never entered is over all the same).
        not_open = [and_(start.is_not(None), ~_UnreadableDate(start), start > today)]
        if episodes.end is not None:
            end = table.c[episodes.end]
            opened.append(or_(end.is_(None), end > today))
            unreadable.append(_UnreadableDate(end))
            not_open.append(and_(end.is_not(None), ~_UnreadableDate(end), end <= today))
        return case(
            (exists().where(*child, *opened, ~or_(*unreadable)), literal(True)),
            (exists().where(*child, or_(*unreadable), ~or_(*not_open)), null()),
            else_=literal(False),
        )

    def record(self, row: Row[Any], now: datetime, *, to_index: bool = False) -> ConnectorRecord:
        """The record one row of `select` describes; its carers and involvements come from
        `with_contacts`. Indicators are present only when `select` was given a day.

        Raises UnreadableRecord when the row's date of birth or as-of is not a date - unless
        `to_index`, where such a date is left out: what is read of the row is what a search can
        reach it by, so that the search is refused rather than missing the child."""
        values = row._mapping
        child = self._mapping.child
        record_id = str(values["key"])
        for label in _DATE_LABELS:
            if values.get(label) is _UNREADABLE and not to_index:
                raise UnreadableRecord(record_id, getattr(child, label))
        flags = {}
        for label in ("shielded", "restricted"):
            source = getattr(child.flags, label)
            flag = _record_flag(source, values.get(label))
            if flag is None and not to_index:
                raise UnreadableRecord(record_id, _column_of(source))
            flags[label] = flag is not False
        name = None
        if child.name is not None and values["given"] and values["family"]:
            separator = child.name.separator
            name = PersonName(
                given=values["given"],
                family=values["family"],
                former_family=_split(values.get("former_family"), separator),
                known_as=_split(values.get("known_as"), separator),
            )
        address = None
        if child.address is not None and values["postcode"]:
            lines = (values[f"line{n}"] for n in range(len(child.address.lines)))
            address = Address(lines=[line for line in lines if line], postcode=values["postcode"])
        indicators = None
        labels = {field.value: _INDICATOR_LABEL + field for field in self._mapping.episodes()}
        if labels and all(label in values for label in labels.values()):
            indicators = Indicators(**{f: _known(values[label]) for f, label in labels.items()})
        return ConnectorRecord(
            record_id=record_id,
            identifiers=Identifiers(
                nhs_number=_text(values.get("nhs_number")),
                upn=_text(values.get("upn")),
                local_id=record_id,
                former_upns=_former(values.get("former_upn"), values.get("upn")),
            ),
            name=name,
            date_of_birth=_as_date(_readable(values.get("date_of_birth"))),
            sex=self._sex(values.get("sex")),
            address=address,
            indicators=indicators,
            flags=RecordFlags(**flags),
            as_of=_as_datetime(_readable(values.get("as_of"))) or now,
        )

    def _sex(self, value: object) -> Sex | None:
        sex = self._mapping.child.sex
        if sex is None or value is None:
            return None
        return sex.values.get(str(value), Sex.UNKNOWN)

    async def with_contacts(
        self,
        connection: AsyncConnection,
        records: Sequence[ConnectorRecord],
        fields: Iterable[FieldId],
        today: date,
    ) -> list[ConnectorRecord]:
        """`records` with their carers and current involvements, each read by one query over the
        records' keys - and only when the lookup asked for them."""
        wanted = set(fields)
        keys = [self.key_for(record.record_id) for record in records]
        carers: dict[str, list[Carer]] | None = None
        involvements: dict[str, list[Involvement]] | None = None
        if FieldId.CARERS in wanted and self._mapping.carers is not None:
            carers = await self._carers(connection, keys)
        if FieldId.INVOLVEMENTS in wanted and self._mapping.involvements:
            involvements = defaultdict(list)
            for section, table in zip(
                self._mapping.involvements, self._tables.involvements, strict=True
            ):
                for key, found in (
                    await self._involvements(connection, section, table, keys, today)
                ).items():
                    involvements[key] += found
        return [
            record.model_copy(
                update={
                    "carers": None if carers is None else carers.get(record.record_id, []),
                    "involvements": None
                    if involvements is None
                    else involvements.get(record.record_id, []),
                }
            )
            for record in records
        ]

    def key_for(self, record_id: str) -> object:
        """A record id as the key column holds it: an integer for an integer key (None when it
        is not one, which matches no row), else the text itself."""
        try:
            python_type = self.key.type.python_type
        except NotImplementedError:
            python_type = str
        if python_type is int:
            return int(record_id) if record_id.isdigit() else None
        return record_id

    async def _carers(
        self, connection: AsyncConnection, keys: list[object]
    ) -> dict[str, list[Carer]]:
        section, table = self._mapping.carers, self._tables.carers
        assert section is not None
        assert table is not None
        child = table.c[section.child]
        query = select(
            child.label("child"),
            table.c[section.name].label("name"),
            _text_column(table, section.relationship, "relationship"),
            _flag_column(table, section.parental_responsibility, "parental_responsibility"),
            _optional(table, section.phone, "phone"),
        ).where(child.in_(keys))
        query = query.order_by(*_order(table, child, section.order_by))
        found: defaultdict[str, list[Carer]] = defaultdict(list)
        for row in await connection.execute(query):
            values = row._mapping
            found[str(values["child"])].append(
                Carer(
                    name=values["name"],
                    relationship=values["relationship"],
                    parental_responsibility=_flag(
                        section.parental_responsibility, values["parental_responsibility"]
                    ),
                    phone=_text(values["phone"]),
                )
            )
        return found

    async def _involvements(
        self,
        connection: AsyncConnection,
        section: InvolvementTable,
        table: Table,
        keys: list[object],
        today: date,
    ) -> dict[str, list[Involvement]]:
        child = table.c[section.child]
        query = select(
            child.label("child"),
            _text_column(table, section.service, "service"),
            _text_column(table, section.organisation, "organisation"),
            _optional(table, section.practitioner_name, "practitioner_name"),
            _text_column(table, section.practitioner_role, "practitioner_role"),
            _optional(table, section.practitioner_phone, "practitioner_phone"),
            _optional(table, section.practitioner_email, "practitioner_email"),
            _flag_column(table, section.lead, "lead"),
            _optional(table, section.since, "since"),
            _optional(table, section.until, "until"),
        ).where(child.in_(keys))
        if section.until is not None:
            until = table.c[section.until]
            query = query.where(or_(until.is_(None), until > today))
        query = query.order_by(*_order(table, child, section.order_by))
        found: defaultdict[str, list[Involvement]] = defaultdict(list)
        for row in await connection.execute(query):
            values = row._mapping
            practitioner = None
            if values["practitioner_name"]:
                practitioner = Contact(
                    name=values["practitioner_name"],
                    role=_text(values["practitioner_role"]),
                    phone=_text(values["practitioner_phone"]),
                    email=_text(values["practitioner_email"]),
                )
            found[str(values["child"])].append(
                Involvement(
                    service=_text(values["service"]),
                    organisation=_text(values["organisation"]),
                    practitioner=practitioner,
                    lead=_flag(section.lead, values["lead"]),
                    since=_as_date(values["since"]),
                    until=_as_date(values["until"]),
                )
            )
        return found


def _order(table: Table, child: ColumnElement[Any], order_by: str | None) -> list[Any]:
    """A child's rows in the agency's order, else its primary key's: answers never reorder
    between lookups."""
    tail = [table.c[order_by]] if order_by is not None else list(table.primary_key.columns)
    return [child, *tail]


def _text_column(table: Table, source: str | Constant | None, label: str) -> ColumnElement[Any]:
    if source is None:
        return literal(None).label(label)
    if isinstance(source, Constant):
        return literal(source.value).label(label)
    return table.c[source].label(label)


def _flag_column(table: Table, source: str | Condition | None, label: str) -> ColumnElement[Any]:
    if source is None:
        return literal(None).label(label)
    column = source.column if isinstance(source, Condition) else source
    return table.c[column].label(label)


def _optional(table: Table, column: str | None, label: str) -> ColumnElement[Any]:
    return literal(None).label(label) if column is None else table.c[column].label(label)


def _flag(source: str | Condition | None, value: object) -> bool:
    if source is None or value is None:
        return False
    if isinstance(source, Condition):
        return str(value) in source.in_
    return bool(value)


def _record_flag(source: str | RecordFlag | None, value: object) -> bool | None:
    """A shielding or restriction flag as the row holds it; None when the column is NULL and the
    mapping does not say what a NULL means - never read as "not shielded"."""
    if source is None:
        return False
    if value is None:
        return source.null if isinstance(source, RecordFlag) else None
    if isinstance(source, RecordFlag) and source.in_ is not None:
        return str(value) in source.in_
    return bool(value)


def _column_of(source: str | RecordFlag | None) -> str:
    return source.column if isinstance(source, RecordFlag) else str(source)


def _split(value: str | None, separator: str) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in value.split(separator) if part.strip()]


def _former(former: object, current: object) -> tuple[str, ...] | None:
    """The former UPN as the record's `former_upns`: a lookup by UPN also matches it, so the
    record says why it answers to a UPN that is not its own. None when the row holds none, or
    holds its current UPN there too."""
    value = _text(former)
    return None if value is None or value == _text(current) else (value,)


def _readable(value: object) -> object:
    return None if value is _UNREADABLE else value


def _known(value: object) -> bool | None:
    return None if value is None else bool(value)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def _as_datetime(value: object) -> datetime | None:
    """A stored as-of as an aware datetime: a naive one (SQLite keeps no offset) is UTC, a date
    is its start in UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None
