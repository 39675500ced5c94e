"""The second round: ask again with an identifier the first round found.

Agencies key their records differently: a school by UPN, health and social care by NHS number. A
lookup by UPN reaches the school, whose record often carries the NHS number too, while health and
social care answer "no record" to the UPN - and without a second round the answer would miss the
health visitor yet say it was complete. So when the match stage links records holding an identifier
the lookup did not use, the sources that may hold the child but were not asked with it are asked
again with it, and what they return is linked by that identifier alone.

The second round stays inside the first one's decisions: the same caller, purpose, plan, fields
and deadline; only sources the plan chose and that answered are asked; no new policy question.

Only an identifier the linked records agree on is used, and only a valid one: exactly one distinct
value among them, with a correct check character, and a lookup that is not ambiguous. The NHS
number is preferred (the consistent identifier for children); a UPN is used when no NHS number is
found. In a lookup by a former UPN, the new UPN that a record linked by it carries (the match
stage's FORMER_UPN) is an identifier the lookup did not use, and the child's as much as the old
one: a later record carrying it contradicts nothing. A source is asked again if none of its linked
records carries the identifier and it said "no record" or was asked with something weaker (a UPN,
or demographics, where the NHS number is found). A source that timed out or failed is not: that
would be a retry. A demographic search that shield-safe search would hide (gateway.shield_safe) is
not taken further either.

Matching the new answers reuses `match_records` on a lookup by the found identifier, so a record
carrying another value of it is never linked and its source is FAILED (RECORD_MISMATCH). A new
record contradicting what the first round established (the lookup's UPN, say, or the date of birth
its records give) is treated the same.
By demographics, two linked records in one source must share an identifier, as in the match stage,
or the lookup is AMBIGUOUS.

The `second_round` span holds the sources asked again and how they answered - except in a
demographic search, where shield-safe search may yet hide what they reach: a search for nobody never
asks again, and a trace that showed the sources asked would tell the two apart. There the span
holds only the choice of whom to ask, and the round runs after it, in no span of its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from connectors.protocol import ConnectorRecord
from gateway import tracing
from gateway.fanout import FanOut
from gateway.identifiers import is_normal, normalise_nhs_number, normalise_upn
from gateway.linkage import LinkageModel, Person
from gateway.match import (
    FORMER_UPN,
    RECORD_MISMATCH,
    MatchResult,
    failed_as_mismatch,
    look_like_twins,
    match_records,
    share_identifier,
)
from gateway.shield_safe import shield_safe
from gateway.types import (
    IDENTIFIER_FIELDS,
    Ambiguity,
    AmbiguityReason,
    IdentifiedBy,
    LookupContext,
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    Plan,
    SourceAnswer,
    SourceStatus,
)

_STRENGTH = {IdentifiedBy.DEMOGRAPHICS: 0, IdentifiedBy.UPN: 1, IdentifiedBy.NHS_NUMBER: 2}


@dataclass(frozen=True)
class FoundIdentifier:
    """An identifier of the child that the first round's linked records hold and the lookup did
    not use."""

    kind: IdentifiedBy
    value: str

    def held_by(self, record: ConnectorRecord) -> bool:
        return bool(getattr(record.identifiers, IDENTIFIER_FIELDS[self.kind]) == self.value)


def found_identifier(query: LookupQuery, first: MatchResult) -> FoundIdentifier | None:
    """The best identifier to ask again with, or None: when nothing was linked, the lookup is
    ambiguous, the linked records disagree on an identifier, or the one they hold is invalid."""
    return next(_agreed(query, first), None)


def identifiers_found(
    query: LookupQuery, first: MatchResult, registers: Collection[str] = ()
) -> tuple[FoundIdentifier, ...]:
    """Every identifier the linked records agree on and the lookup did not use, and vouch for,
    best first (gateway.routing locates and asks agencies with them); none if they disagree on
    any, or if any source sent a record of another child (RECORD_MISMATCH: asked with an
    identifier a linked record carried, a source answering for someone else shows that record
    may be another child's). An agency is never sent an identifier the lookup has shown to be in
    doubt, nor one only a weaker link vouches for (`_vouched`)."""
    if any(a.error_code == RECORD_MISMATCH for a in first.answers):
        return ()
    found = tuple(_agreed(query, first))
    if None in found:
        return ()
    vouched = _vouched(query, first.matched, registers)
    # Routing holds one value per kind, the lookup's own first: a lookup by a former UPN routes
    # by it, as the locator was asked with it, and leaves the new UPN to the second round.
    return tuple(
        f
        for f in found
        if f is not None and f.kind is not query.identified_by and (f.kind, f.value) in vouched
    )


def _vouched(
    query: LookupQuery, matched: Sequence[MatchedRecord], registers: Collection[str]
) -> set[tuple[IdentifiedBy, str]]:
    """The identifiers the linked records vouch for. An NHS number: the lookup's own, or one a
    record linked by it holds (a source asked with it found the child), or one a register
    (`holds_every_child`: the spine assigns NHS numbers) holds on a record linked by
    demographics. A UPN: one a record linked by it, or by a vouched NHS number, or by
    demographics in a register holds. A census record found by UPN carrying an NHS number that
    no source asked with it confirmed (no record, no answer) vouches for none: the number may
    be another child's, whose authority and practice would be told of an enquiry about them."""
    nhs_numbers = {query.nhs_number} - {None}
    for m in matched:
        if m.method is MatchMethod.NHS_NUMBER or _register_by_demographics(m, registers):
            nhs_numbers.add(m.record.identifiers.nhs_number)
    nhs_numbers.discard(None)
    vouched = {(IdentifiedBy.NHS_NUMBER, value) for value in nhs_numbers if value is not None}
    for m in matched:
        upn = m.record.identifiers.upn
        anchored = (
            m.method is MatchMethod.UPN
            or m.record.identifiers.nhs_number in nhs_numbers
            or _register_by_demographics(m, registers)
        )
        if upn is not None and anchored:
            vouched.add((IdentifiedBy.UPN, upn))
    return vouched


def _register_by_demographics(matched: MatchedRecord, registers: Collection[str]) -> bool:
    return matched.method is MatchMethod.DEMOGRAPHICS and matched.source in registers


def _agreed(query: LookupQuery, first: MatchResult) -> Iterator[FoundIdentifier | None]:
    """Per identifier the lookup did not use, best first, the value the linked records agree on,
    or None where they disagree on who the child is (ask nobody more); nothing where they hold
    none or an invalid one, or when nothing was linked or the lookup is ambiguous. In a lookup
    by a former UPN, the new UPN a record linked by it carries is such an identifier: a source
    holding the child only under it answered "no record" to the old one."""
    if first.ambiguous or not first.matched:
        return
    for kind, field in IDENTIFIER_FIELDS.items():
        # The lookup's own value is no new identifier; another of its kind is one only in a
        # lookup by a former UPN, where a record linked by it (FORMER_UPN) carries the new UPN -
        # the match stage has made sure there is one at most, or the lookup is ambiguous.
        values = {getattr(m.record.identifiers, field) for m in first.matched}
        values -= {None, getattr(query, field)}
        if len(values) > 1:
            yield None
        elif values:
            (value,) = values
            if _valid(kind, value):
                yield FoundIdentifier(kind, value)


def sources_to_ask_again(
    query: LookupQuery, plan: Plan, first: MatchResult, found: FoundIdentifier
) -> tuple[str, ...]:
    """The planned sources that answered, hold no linked record carrying `found`, and either said
    "no record" or were asked with something weaker than it - in configuration order."""
    holding = {m.source for m in first.matched if found.held_by(m.record)}
    stronger = _STRENGTH[found.kind] > _STRENGTH[query.identified_by]
    return tuple(
        a.source
        for a in first.answers
        if a.source in plan.sources
        and a.answered
        and a.source not in holding
        and (stronger or a.status is SourceStatus.NO_RECORD)
    )


@dataclass(frozen=True)
class _Asking:
    """Whom the second round asks again, and with what."""

    query: LookupQuery
    sources: tuple[str, ...]


async def second_round(
    lookup: LookupContext,
    plan: Plan,
    first: MatchResult,
    fanout: FanOut,
    linkage: LinkageModel,
) -> MatchResult:
    """`first` with the answers of the sources asked again, or `first` itself when there is no
    identifier to ask with or nobody to ask."""
    query = lookup.query
    with tracing.span("second_round"):
        asking = _asking(query, plan, first)
        if asking is not None and query.identified_by is not IdentifiedBy.DEMOGRAPHICS:
            return await _asked(lookup, plan, first, asking, fanout, linkage, in_trace=True)
    if asking is None:
        return first
    # Under the lookup's span, where the fanout and match stages have run and so open no span
    # again (gateway.tracing), and with no span per source: nothing in the trace.
    return await _asked(lookup, plan, first, asking, fanout, linkage, in_trace=False)


def _asking(query: LookupQuery, plan: Plan, first: MatchResult) -> _Asking | None:
    """Whom to ask again and with what, or None: for a search shield-safe search would hide,
    with no identifier to ask with, or with nobody to ask."""
    if shield_safe(query, first, plan.doubt_authorities, unasked=plan.unasked_authorities)[1]:
        return None
    found = found_identifier(query, first)
    if found is None:
        return None
    sources = sources_to_ask_again(query, plan, first, found)
    if not sources:
        return None
    again = LookupQuery(
        purpose=query.purpose,
        justification=query.justification,
        nhs_number=found.value if found.kind is IdentifiedBy.NHS_NUMBER else None,
        upn=found.value if found.kind is IdentifiedBy.UPN else None,
    )
    return _Asking(again, sources)


async def _asked(
    lookup: LookupContext,
    plan: Plan,
    first: MatchResult,
    asking: _Asking,
    fanout: FanOut,
    linkage: LinkageModel,
    *,
    in_trace: bool,
) -> MatchResult:
    again, sources = asking.query, asking.sources
    # A request id of its own (the lookup's, marked as its second round, so an agency's log still
    # leads to the audit record): under the first round's, a signed "no record" that round's
    # request was answered with would pass for this round's answer, replayed by whoever is on
    # the network, and hide the record the agency holds (an answer is bound to its request by
    # the id it names, docs/connector-protocol.md).
    asked = replace(lookup, query=again, request_id=f"{lookup.request_id}.2")
    answers = await fanout.ask(asked, replace(plan, sources=sources), in_trace=in_trace)
    asked_again = [a for a in answers if a.source in sources]
    second = match_records(again, asked_again, linkage, born=first.born)
    return combined(lookup.query, first, second, linkage)


def combined(
    query: LookupQuery, first: MatchResult, second: MatchResult, linkage: LinkageModel
) -> MatchResult:
    """Both rounds as one match result: per source one answer (a source asked only in the second
    round, as the routing stage's agencies are, after the first round's), and the records linked
    in either. A second-round source whose records contradict what the first round established
    is FAILED (RECORD_MISMATCH) and keeps no record (`_contradicting`). Either round ambiguous
    (a former UPN naming two children) makes both so: nothing linked."""
    established = _Established(
        identifiers=_identifiers_known(query, first.matched),
        born=first.born,
        people=tuple(Person.from_record(m.record) for m in first.matched),
        linkage=linkage,
        asked_upn=query.upn,
    )
    later = {a.source: _contradicting(a, established) for a in second.answers}
    # A later round may give the child one new UPN for the one asked, not two (the match stage's
    # rule): sources whose records give different ones are all FAILED.
    new_upns = {
        source: {upn for r in a.records if (upn := established.renumbers(r)) is not None}
        for source, a in later.items()
    }
    if len(set().union(*new_upns.values())) > 1:
        later = {
            source: failed_as_mismatch(a) if new_upns[source] else a for source, a in later.items()
        }
    mismatched = {s for s, a in later.items() if a.error_code == RECORD_MISMATCH}
    seen = {m.key for m in first.matched}
    added = [m for m in second.matched if m.source not in mismatched and m.key not in seen]
    matched = [m for m in first.matched if m.source not in mismatched] + added
    by_demographics = query.identified_by is IdentifiedBy.DEMOGRAPHICS
    ambiguity = _two_children(matched) if by_demographics else None
    if ambiguity is None:
        # A lookup by identifier is ambiguous where a former UPN names two children (the match
        # stage): in the first round, or among a later round's answers to the identifier it was
        # asked with. It stays so - no later answer links a record to either child.
        ambiguity = first.ambiguity or second.ambiguity
    if ambiguity is not None:
        matched = []
    linked = Counter(m.source for m in matched)
    if ambiguity is not None:
        linked.update(r.source for r in ambiguity.records)
    unmatched: dict[str, int] = {}
    if not by_demographics:  # by demographics, unlinked records are other children: not counted
        for counts in (first.unmatched, second.unmatched):
            for source, n in counts.items():
                if source not in mismatched:
                    unmatched[source] = unmatched.get(source, 0) + n
    earlier = {a.source for a in first.answers}
    returned = _returned(later)
    return MatchResult(
        answers=tuple(
            _joined(a, later.get(a.source), by_demographics and not linked[a.source])
            for a in first.answers
        )
        + tuple(
            _joined(a, None, by_demographics and not linked[a.source])
            for a in later.values()
            if a.source not in earlier
        ),
        matched=tuple(matched),
        unmatched=unmatched,
        possible=dict(first.possible),
        ambiguity=ambiguity,
        shielded_near=first.shielded_near or any(r.flags.shielded for r in returned),
        restricted_near=first.restricted_near or any(r.flags.restricted for r in returned),
    )


def _returned(later: Mapping[str, SourceAnswer]) -> list[ConnectorRecord]:
    """The records a later round's sources returned, whose flags count as the first round's
    linked and possible records' do. Every record returned for the identifier a source was asked
    with counts, linked or not, as in gateway.decide: a local
    authority holding the child under its own case id answers the NHS number with a record that
    does not carry it, and its shield is the child's for all the gateway can tell - a demographic
    search that reached it must be hidden, not show the child's location from the other records.
    (A record that contradicted the first round has been dropped with its source.)"""
    return [record for answer in later.values() for record in answer.records]


def _joined(first: SourceAnswer, second: SourceAnswer | None, unlinked: bool) -> SourceAnswer:
    """One source's answers as one; by demographics (`unlinked` set for a source with no linked
    record), ANSWERED only for a source holding a linked record, as the match stage reports it."""
    answer = first if second is None else _both(first, second)
    if unlinked and answer.status is SourceStatus.ANSWERED:
        return replace(answer, status=SourceStatus.NO_RECORD)
    return answer


def _both(first: SourceAnswer, second: SourceAnswer) -> SourceAnswer:
    """A source asked twice: the status of the second answer (ANSWERED if either round found a
    record; FAILED, keeping no record, if the second sent one of another child), every record
    returned, the time both took."""
    status, records = second.status, first.records + second.records
    if second.error_code == RECORD_MISMATCH:
        records = ()
    elif second.answered and SourceStatus.ANSWERED in (first.status, second.status):
        status = SourceStatus.ANSWERED
    return SourceAnswer(
        source=first.source,
        status=status,
        latency_ms=_total(first.latency_ms, second.latency_ms),
        records=records,
        error_code=second.error_code,
        cached=first.cached and second.cached,
        asked_with=first.asked_with + second.asked_with,
        asked_because=first.asked_because,
    )


def _identifiers_known(
    query: LookupQuery, matched: Sequence[MatchedRecord]
) -> dict[str, frozenset[str]]:
    """The child's identifiers as the lookup and its first round's linked records give them: one
    value of each (the match stage and `found_identifier` have made sure), but for a lookup by a
    former UPN, which is the child's as well as the new UPN a record linked by it (FORMER_UPN)
    carries - the match stage allows one such at most, or the lookup is ambiguous."""
    known = {
        f: frozenset({v})
        for f in IDENTIFIER_FIELDS.values()
        if (v := getattr(query, f)) is not None
    }
    for m in matched:
        for field, value in _identifiers(m.record):
            known.setdefault(field, frozenset({value}))
    renumbered = frozenset(
        upn
        for m in matched
        if (upn := m.record.identifiers.upn)
        and (FORMER_UPN in m.reasons or _lists_as_former(m.record, query.upn))
    )
    if renumbered:
        known["upn"] = known.get("upn", frozenset()) | renumbered
    return known


def _lists_as_former(record: ConnectorRecord, upn: str | None) -> bool:
    """Whether `record` lists `upn` as a former UPN: a record an earlier round linked by another
    identifier (_Established.renumbers) gives the child its new UPN as one linked by it does."""
    return upn is not None and upn in (record.identifiers.former_upns or ())


@dataclass(frozen=True)
class _Established:
    """What the first round's linked records say of the child, that a later record must not
    contradict."""

    identifiers: Mapping[str, Collection[str]]
    born: Collection[date]
    people: Sequence[Person]
    linkage: LinkageModel
    asked_upn: str | None = None
    """The UPN the lookup asked with, if it did: a later record may list it as former."""

    def renumbers(self, record: ConnectorRecord) -> str | None:
        """The new UPN `record` gives the child, or None: one the child is not known by yet,
        on a record listing the UPN the lookup asked with as its former one - the match stage links
        such a record (FORMER_UPN), and a later round must not call it another child's - while the
        first round established no new UPN for it (one former UPN names one child)."""
        upn, asked = record.identifiers.upn, self.asked_upn
        if upn is None or asked is None or not _lists_as_former(record, asked):
            return None
        known = self.identifiers.get("upn", ())
        if upn in known or any(other != asked for other in known):
            return None
        return upn

    def contradicted_by(self, record: ConnectorRecord) -> bool:
        """Whether `record` is another child's: it carries a value of an identifier known for the
        child that is none of the child's (in a lookup by a former UPN, the new UPN is one), or
        another date of birth, or it reads as the twin of a record the first round linked - a twin
        shares the birthday and, where another agency's record carried the twin's NHS number, the
        identifier asked with. (A child adopted and renamed since, under another family name at
        another address, is no twin: found by NHS number, still linked.)"""
        known = self.identifiers
        renumbered = self.renumbers(record)
        if any(
            value not in known.get(field, (value,)) and not (field == "upn" and value == renumbered)
            for field, value in _identifiers(record)
        ):
            return True
        born = record.date_of_birth
        if self.born and born is not None and born not in self.born:
            return True
        person = Person.from_record(record)
        return any(look_like_twins(person, other, self.linkage) for other in self.people)


def _contradicting(answer: SourceAnswer, established: _Established) -> SourceAnswer:
    """The answer, or the source FAILED if any record it sent contradicts what the first round
    established: like a record with another NHS number, it shows that a source misbehaved - this
    one, or the one whose record carried the identifier asked with (another child's NHS number on
    a school's record would otherwise bring in that child's health record, linked by it)."""
    if any(established.contradicted_by(record) for record in answer.records):
        return failed_as_mismatch(answer)
    return answer


def _two_children(matched: Sequence[MatchedRecord]) -> Ambiguity | None:
    """Ambiguous when a source has linked records that no identifier says are one child (a
    duplicate): with how many records each source linked, and how."""
    by_source: defaultdict[str, list[MatchedRecord]] = defaultdict(list)
    for m in matched:
        by_source[m.source].append(m)
    for records in by_source.values():
        if len(records) > 1 and not share_identifier([m.record for m in records]):
            return Ambiguity.of(
                AmbiguityReason.SEVERAL_IN_ONE_SOURCE, ((m.source, m.method) for m in matched)
            )
    return None


def _identifiers(record: ConnectorRecord) -> Iterator[tuple[str, str]]:
    for field in IDENTIFIER_FIELDS.values():
        value = getattr(record.identifiers, field)
        if value is not None:
            yield field, value


def _valid(kind: IdentifiedBy, value: str) -> bool:
    normalise = normalise_nhs_number if kind is IdentifiedBy.NHS_NUMBER else normalise_upn
    return is_normal(normalise, value)


def _total(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return first if second is None else second
    return round(first + second, 2)
