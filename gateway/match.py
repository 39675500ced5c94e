"""The match stage: decide which returned records are about the child asked for.

Merging the wrong child is worse than missing one, so every rule here errs towards not linking:

- By identifier (NHS number or UPN), a record is linked only when it carries that same identifier
  - a UPN as its own or as one of its `former_upns` (the reason `FORMER_UPN` says which). A
  source that returns a record with a *different* one has misbehaved: all of its records are
  dropped and its status says so, rather than trusting any of them. A former UPN links only
  while it names one child: listed under two current UPNs, or on a record whose NHS number
  differs from another linked record's, it makes the lookup AMBIGUOUS and nothing is merged.
  So do records linked by one identifier that differ on the other: the NHS number asked under
  two UPNs (neither the other's former one), or the UPN asked under two NHS numbers.
  Nor may they differ on the date of birth: the child's is the one a source holding every child
  (a register) gives, or an earlier round established, and a source whose linked record gives
  another is FAILED (RECORD_MISMATCH) - another child's record, keyed under this identifier;
  with no register to say, two dates make the lookup AMBIGUOUS. A record without a date of
  birth contradicts nothing; a differing sex is shown as a conflict, not weighed.
- By demographics, every candidate is scored against the query with the linkage model and falls in
  a band: linked, possible (counted, never merged) or rejected. A candidate sharing a valid
  identifier with a linked record is the same child and is linked by that identifier; one whose
  identifier contradicts it never is. The linked records must then agree with each other: two
  strong candidates in one source, two different NHS numbers, or a linked record the model rejects
  as the same person as the strongest one make the lookup AMBIGUOUS, and nothing is merged: the
  result says which of these it was, and per source how many records were strong enough to link
  and how (`Ambiguity`), and those sources are reported as having answered.
- Twins agree on everything but the given name, so a given name that is not the same name is
  weighed two ways. When some source holds two children of one family born on the same day near
  the query - twins in view - it is the other twin, and vetoes the link. When no source does, it
  is what it usually is in records: a middle or known-as name, or a slip, and the rest of the
  evidence may carry it. Every candidate's reasons say which way it was weighed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from itertools import combinations
from typing import Final

from connectors.protocol import ConnectorRecord
from gateway import tracing
from gateway.identifiers import is_normal, normalise_nhs_number, normalise_upn
from gateway.linkage import (
    FIELD_LEVELS,
    HOUSEHOLD_FAMILY_LEVELS,
    TWIN_LEVELS,
    Band,
    Level,
    LinkageModel,
    Person,
)
from gateway.types import (
    Ambiguity,
    AmbiguityReason,
    IdentifiedBy,
    LookupQuery,
    MatchedRecord,
    MatchMethod,
    SourceAnswer,
    SourceStatus,
)

RECORD_MISMATCH = "RECORD_MISMATCH"
FORMER_UPN = "upn:FORMER_UPN"
"""The reason a record linked by UPN carries when the UPN asked is one of its `former_upns`: it
is the child's, under the UPN that replaced it (the DfE's FormerUPN names the same pupil)."""
TWINS_IN_VIEW = "household:TWINS_IN_VIEW"
"""The reason every candidate of a lookup with twins in view carries (see the module docstring)."""

# How two records in one source look when they are twins: one family, one birthday, one address.
_GIVEN_RANK = {level: rank for rank, level in enumerate(FIELD_LEVELS["given"])}
"""Given-name levels from the closest (EXACT) to the furthest (DIFFERENT); MISSING is unranked."""
_TWIN_POSTCODE = frozenset({Level.FULL, Level.SECTOR, Level.MISSING})

_IDENTIFIER_KINDS = {"nhs_number": MatchMethod.NHS_NUMBER, "upn": MatchMethod.UPN}


@dataclass(frozen=True)
class MatchResult:
    """The stage's verdict. `shielded_near` and `restricted_near` say whether any linked or
    possible record is shielded or restricted, which a demographic search must not reveal (see
    gateway.shield_safe) - and which its audit record keeps when it hides a child it did not
    single out."""

    answers: tuple[SourceAnswer, ...]
    matched: tuple[MatchedRecord, ...]
    unmatched: dict[str, int]
    possible: dict[str, int]
    ambiguity: Ambiguity | None = None
    """Why the linked records cannot all be one child; None when they can."""
    shielded_near: bool = False
    restricted_near: bool = False

    @property
    def ambiguous(self) -> bool:
        return self.ambiguity is not None

    @property
    def born(self) -> frozenset[date]:
        """The child's dates of birth as the linked records give them: what a later round's
        records must not contradict (gateway.second_round)."""
        return frozenset(
            m.record.date_of_birth for m in self.matched if m.record.date_of_birth is not None
        )

    @property
    def flagged(self) -> bool:
        return self.shielded_near or self.restricted_near


@dataclass(frozen=True)
class _Candidate:
    source: str
    key: str
    record: ConnectorRecord
    band: Band
    probability: float
    weight: float
    reasons: tuple[str, ...]
    person: Person
    given: str = Level.MISSING
    """The given name's level against the query."""
    twins: bool = False
    """Whether it was weighed by the twins' given-name weights (it may be another twin)."""
    method: MatchMethod = MatchMethod.DEMOGRAPHICS


@tracing.stage("match")
def match_records(
    query: LookupQuery,
    answers: Sequence[SourceAnswer],
    model: LinkageModel,
    *,
    registers: frozenset[str] = frozenset(),
    born: Collection[date] = (),
) -> MatchResult:
    """Link records to the child in `query`; answers come back with statuses corrected.

    `registers` are the sources that hold every child of the area (`holds_every_child`): when
    one of them has not answered, nobody can say the child has no twin, and a given name that
    differs is weighed as a twin's; by identifier, their date of birth is the child's. `born`:
    the child's dates of birth as an earlier round established them (gateway.second_round),
    which a record linked by identifier must not contradict, whatever a register says.
    """
    if query.identified_by is IdentifiedBy.DEMOGRAPHICS:
        assert query.demographics is not None
        extra = query.corroboration
        person = Person.from_demographics(
            query.demographics, address_lines=extra.address_lines, carers=extra.carer_names
        )
        return _by_demographics(person, answers, model, registers)
    kind = "nhs_number" if query.identified_by is IdentifiedBy.NHS_NUMBER else "upn"
    value = query.nhs_number if kind == "nhs_number" else query.upn
    assert value is not None
    return _by_identifier(kind, value, answers, registers, born)


def _by_identifier(
    kind: str,
    value: str,
    answers: Sequence[SourceAnswer],
    registers: frozenset[str],
    born: Collection[date],
) -> MatchResult:
    checked: list[SourceAnswer] = []
    matched: list[MatchedRecord] = []
    unmatched: dict[str, int] = {}
    for answer in answers:
        if any(_another_childs(r, kind, value) for r in answer.records):
            checked.append(failed_as_mismatch(answer))
            continue
        checked.append(answer)
        for key, record in _unique_records(answer):
            how = _held_as(record, kind, value)
            if how is None:
                unmatched[answer.source] = unmatched.get(answer.source, 0) + 1
            else:
                method = _IDENTIFIER_KINDS[kind]
                matched.append(MatchedRecord(key, answer.source, record, method, reasons=how))
    born_elsewhere = _born_to_another_child(matched, registers, born)
    if born_elsewhere:
        checked = [failed_as_mismatch(a) if a.source in born_elsewhere else a for a in checked]
        matched = [m for m in matched if m.source not in born_elsewhere]
        unmatched = {s: n for s, n in unmatched.items() if s not in born_elsewhere}
    ambiguity = _former_upn_names_two_children(matched) or _other_identifier_differs(kind, matched)
    if ambiguity is None and born_elsewhere is None:
        ambiguity = Ambiguity.of(
            AmbiguityReason.DATES_OF_BIRTH_DIFFER, ((m.source, m.method) for m in matched)
        )
    if ambiguity is not None:
        return MatchResult(tuple(checked), (), unmatched, {}, ambiguity)
    return MatchResult(tuple(checked), tuple(matched), unmatched, {})


def failed_as_mismatch(answer: SourceAnswer) -> SourceAnswer:
    """The source FAILED (RECORD_MISMATCH), keeping no record: it sent another child's record as
    the child's, so none of its records is trusted - in this round or a later one
    (gateway.second_round)."""
    return replace(answer, status=SourceStatus.FAILED, records=(), error_code=RECORD_MISMATCH)


def _held_as(record: ConnectorRecord, kind: str, value: str) -> tuple[str, ...] | None:
    """How `record` holds the identifier asked, as the reasons its link records: as its own (no
    reason needed), as one of its former UPNs (`FORMER_UPN`), or not at all (None)."""
    if getattr(record.identifiers, kind) == value:
        return ()
    if kind == "upn" and value in (record.identifiers.former_upns or ()):
        return (FORMER_UPN,)
    return None


def _another_childs(record: ConnectorRecord, kind: str, value: str) -> bool:
    """Whether a record answering a lookup by identifier is another child's: it carries another
    value of that identifier, and not the one asked as a former UPN either."""
    return getattr(record.identifiers, kind) is not None and _held_as(record, kind, value) is None


def _born_to_another_child(
    matched: Sequence[MatchedRecord], registers: Collection[str], born: Collection[date]
) -> frozenset[str] | None:
    """The sources whose records, linked by the identifier asked, give another date of birth
    than the child's - another child's records, keyed under this identifier - or None when
    nobody can say which date is the child's.

    The child's date of birth is the one an earlier round established (`born`), or else the one
    the sources holding every child (`registers`: the spine assigns the NHS number, with the
    date of birth it was given for) give on their linked records. With neither, linked records
    that agree, or give one date between them, leave nothing to decide; records that disagree,
    with no register giving a date or registers giving two, make the lookup ambiguous. A record
    without a date of birth contradicts nothing. A recorded sex that differs is not weighed here
    (nor in a later round): it is a known drift between agencies, shown as a conflict."""
    childs = frozenset(born)
    if not childs:
        if len({m.record.date_of_birth for m in matched} - {None}) < 2:
            return frozenset()
        childs = frozenset(
            m.record.date_of_birth
            for m in matched
            if m.source in registers and m.record.date_of_birth is not None
        )
        if len(childs) != 1:
            return None
    return frozenset(m.source for m in matched if m.record.date_of_birth not in (None, *childs))


def _former_upn_names_two_children(matched: Sequence[MatchedRecord]) -> Ambiguity | None:
    """Why the records a former UPN linked are not one child with the others, or None.

    A former UPN identifies the same pupil, but only while it names one: two records listing it
    under two current UPNs (a UPN allocated twice, a record corrected onto the wrong child), or
    a record linked by it carrying another NHS number than a record linked with it, are two
    children, and the lookup is ambiguous - nothing is merged - rather than either being picked.
    """
    if not any(FORMER_UPN in m.reasons for m in matched):
        return None
    current = {m.record.identifiers.upn for m in matched if FORMER_UPN in m.reasons}
    if len(current - {None}) > 1:
        reason = AmbiguityReason.UPNS_DIFFER
    elif len({m.record.identifiers.nhs_number for m in matched} - {None}) > 1:
        reason = AmbiguityReason.NHS_NUMBERS_DIFFER
    else:
        return None
    return Ambiguity.of(reason, ((m.source, m.method) for m in matched))


def _other_identifier_differs(kind: str, matched: Sequence[MatchedRecord]) -> Ambiguity | None:
    """Why the records linked by one identifier are not one child by the other, or None.

    Records carrying the NHS number asked under two UPNs - neither listing the other as former -
    or the UPN asked under two NHS numbers are two children, one of them recorded under the
    other's identifier: nobody can say which, so the lookup is ambiguous, as a former UPN naming
    two children is and as a later round fails such a record (gateway.second_round)."""
    if kind == "nhs_number":
        upns = {m.record.identifiers.upn for m in matched} - {None}
        former = {upn for m in matched for upn in m.record.identifiers.former_upns or ()}
        if len(upns - former) > 1:
            return Ambiguity.of(
                AmbiguityReason.UPNS_DIFFER, ((m.source, m.method) for m in matched)
            )
    elif len({m.record.identifiers.nhs_number for m in matched} - {None}) > 1:
        return Ambiguity.of(
            AmbiguityReason.NHS_NUMBERS_DIFFER, ((m.source, m.method) for m in matched)
        )
    return None


def _by_demographics(
    query: Person, answers: Sequence[SourceAnswer], model: LinkageModel, registers: frozenset[str]
) -> MatchResult:
    twins_unknown = _register_unheard(answers, registers)
    found = [
        (answer.source, key, record, Person.from_record(record))
        for answer in answers
        for key, record in _unique_records(answer)
    ]
    candidates = [_scored(query, *f, model, twins=twins_unknown) for f in found]
    others = () if twins_unknown else _other_twins(candidates, model)
    if others:
        candidates = [
            _rescored(query, c, model, twins=_may_be_another_twin(c, others, model), in_view=True)
            for c in candidates
        ]
    if registers and not twins_unknown:
        candidates = [_weigh_the_house(query, c, candidates, registers, model) for c in candidates]
    linked = [c for c in candidates if c.band is Band.LINKED]
    linked += _linked_by_identifier(linked, candidates, model)
    linked_keys = {c.key for c in linked}
    possible = [c for c in candidates if c.band is Band.POSSIBLE and c.key not in linked_keys]
    near = [c.record.flags for c in linked + possible]
    ambiguity = _ambiguity(linked, model)
    matched = () if ambiguity else tuple(_matched(c) for c in linked)
    holding = {c.source for c in linked} if ambiguity else {m.source for m in matched}
    return MatchResult(
        answers=tuple(_as_candidates_answered(a, holding) for a in answers),
        matched=matched,
        unmatched={},
        possible=dict(Counter(c.source for c in possible)),
        ambiguity=ambiguity,
        shielded_near=any(flags.shielded for flags in near),
        restricted_near=any(flags.restricted for flags in near),
    )


def _scored(
    query: Person,
    source: str,
    key: str,
    record: ConnectorRecord,
    person: Person,
    model: LinkageModel,
    *,
    twins: bool,
    in_view: bool = False,
    siblings_ruled_out: bool = False,
) -> _Candidate:
    """`twins`: weigh the given name by the twins' weights; `in_view`: the lookup has twins in
    view, which the reasons say whichever weights this candidate needed; `siblings_ruled_out`:
    the house counts within the household (`_weigh_the_house`)."""
    score = model.score(query, person, twins=twins, siblings_ruled_out=siblings_ruled_out)
    reasons = (*score.reasons, TWINS_IN_VIEW) if twins or in_view else score.reasons
    given = score.level("given")
    return _Candidate(
        source,
        key,
        record,
        score.band,
        score.probability,
        score.weight,
        reasons,
        person,
        given,
        twins,
    )


def _rescored(
    query: Person,
    candidate: _Candidate,
    model: LinkageModel,
    *,
    twins: bool,
    in_view: bool,
    siblings_ruled_out: bool = False,
) -> _Candidate:
    """The same record scored again, with what the lookup has learnt since (`_scored`)."""
    return _scored(
        query,
        candidate.source,
        candidate.key,
        candidate.record,
        candidate.person,
        model,
        twins=twins,
        in_view=in_view,
        siblings_ruled_out=siblings_ruled_out,
    )


def _weigh_the_house(
    query: Person,
    candidate: _Candidate,
    candidates: Sequence[_Candidate],
    registers: frozenset[str],
    model: LinkageModel,
) -> _Candidate:
    """The candidate weighed with its house even within the household, when the register shows
    it is none of the household's other children.

    Within one household the house cannot tell the child from a brother, so it normally counts
    for nothing (compare.address_level). But a source that holds every child has answered, and
    its answer holds the household's children (they share family name and postcode with the
    query). A copy that scores no better against any of them - not linked to the query - than
    against the query is not a brother's record: its wrong date of birth is a wrong date of
    birth, and the house may carry it. A brother's record under the child's name still scores
    better against the brother's own register record (his date of birth agrees).
    """
    if candidate.band is Band.LINKED or candidate.method is not MatchMethod.DEMOGRAPHICS:
        return candidate
    weighed = _rescored(
        query,
        candidate,
        model,
        twins=candidate.twins,
        in_view=TWINS_IN_VIEW in candidate.reasons,
        siblings_ruled_out=True,
    )
    if weighed.band is not Band.LINKED:
        return candidate
    household = [
        c
        for c in candidates
        if c.source in registers and c.key != candidate.key and c.band is not Band.LINKED
    ]
    if any(
        model.score(candidate.person, member.person).weight >= candidate.weight
        for member in household
    ):
        return candidate
    return weighed


def _register_unheard(answers: Sequence[SourceAnswer], registers: frozenset[str]) -> bool:
    heard = {
        a.source for a in answers if a.status in (SourceStatus.ANSWERED, SourceStatus.NO_RECORD)
    }
    return not registers <= heard


def _other_twins(candidates: Sequence[_Candidate], model: LinkageModel) -> tuple[_Candidate, ...]:
    """The records of the query child's twins, when a lookup has them in view: one source holding
    two children of one household born on the same day, at least one of them a candidate for
    the query. Of such a pair, those whose given name is not the query's are the others (both,
    when neither's is); none means no twins in view.

    Only records in one source count: two sources disagreeing on a given name is exactly the
    drift this must not veto, while one source holding both is two children. Two records that
    share an identifier are one child recorded twice, not twins.
    """
    by_source: defaultdict[str, list[_Candidate]] = defaultdict(list)
    for c in candidates:
        by_source[c.source].append(c)
    twins: dict[str, _Candidate] = {}
    for group in by_source.values():
        for a, b in combinations(group, 2):
            if Band.REJECTED in (a.band, b.band) and a.band is b.band:
                continue
            if share_identifier((a.record, b.record)):
                continue
            if look_like_twins(a.person, b.person, model):
                twins.update((c.key, c) for c in (a, b) if c.given in TWIN_LEVELS)
    return tuple(twins.values())


def look_like_twins(a: Person, b: Person, model: LinkageModel) -> bool:
    """Whether two records read as twins: one family, one birthday, one address, and given names
    that are not one name."""
    levels = {c.field: c.level for c in model.score(a, b).comparisons}
    return (
        levels["given"] in TWIN_LEVELS
        and levels["family"] in HOUSEHOLD_FAMILY_LEVELS
        and levels["date_of_birth"] == Level.EXACT
        and levels["postcode"] in _TWIN_POSTCODE
    )


def _may_be_another_twin(
    candidate: _Candidate, others: Sequence[_Candidate], model: LinkageModel
) -> bool:
    """Whether a record could be one of the other twins, and so is weighed by the twins' given
    names: it is one of them, or it is at least as like one of them as like the child asked for.

    Twins are told apart by what differs: sex (a girl's copy under another given name is not her
    brother), and the given name itself - "Lek" is a bad slip for Leo and nothing like his twin
    Theo's name, while "Rhys", like neither, could be either twin's middle name.
    """
    if candidate.given not in TWIN_LEVELS:
        return False
    asked = _GIVEN_RANK[Level(candidate.given)]
    for twin in others:
        if twin.key == candidate.key:
            return True
        sexes = (candidate.person.sex, twin.person.sex)
        if None not in sexes and sexes[0] != sexes[1]:
            continue
        level = model.score(candidate.person, twin.person).level("given")
        if _GIVEN_RANK.get(Level(level), 0) <= asked:
            return True
    return False


def _linked_by_identifier(
    linked: Sequence[_Candidate], candidates: Sequence[_Candidate], model: LinkageModel
) -> list[_Candidate]:
    """Candidates below the link band that share a valid identifier with a linked record: the
    same child, whatever their demographics say (a name change, a foster placement) - but for
    one weighed as another twin that reads as a linked record's twin: a twin's record carrying
    the child's identifier is the twin's, keyed with the wrong number (the second round fails
    such a record, gateway.second_round)."""
    held = {(kind, v) for c in linked for kind, v in _identifiers(c.record)}
    linked_keys = {c.key for c in linked}
    promoted = []
    for c in candidates:
        if c.key in linked_keys:
            continue
        if c.twins and any(look_like_twins(c.person, other.person, model) for other in linked):
            continue
        shared = [kind for kind, v in _identifiers(c.record) if (kind, v) in held]
        if shared:
            promoted.append(
                replace(
                    c,
                    band=Band.LINKED,
                    probability=1.0,
                    reasons=(*c.reasons, f"{shared[0]}:SHARED_WITH_LINKED_RECORD"),
                    method=_IDENTIFIER_KINDS[shared[0]],
                )
            )
    return promoted


def _ambiguity(linked: Sequence[_Candidate], model: LinkageModel) -> Ambiguity | None:
    """Why the linked records cannot all be one child, with how many each source holds and how
    each was linked; None when they can be."""
    reason = _ambiguous(linked, model)
    if reason is None:
        return None
    return Ambiguity.of(reason, ((c.source, c.method) for c in linked))


_DIFFERING = {
    "nhs_number": AmbiguityReason.NHS_NUMBERS_DIFFER,
    "upn": AmbiguityReason.UPNS_DIFFER,
}


def _ambiguous(linked: Sequence[_Candidate], model: LinkageModel) -> AmbiguityReason | None:
    """Why the linked records cannot all be one child, or None when they can be."""
    for kind in _IDENTIFIER_KINDS:
        if len({getattr(c.record.identifiers, kind) for c in linked} - {None}) > 1:
            return _DIFFERING[kind]
    by_source: defaultdict[str, list[_Candidate]] = defaultdict(list)
    for c in linked:
        by_source[c.source].append(c)
    for same_source in by_source.values():
        # Two records in one source are one child only if an identifier says so (a duplicate).
        if len(same_source) > 1 and not share_identifier([c.record for c in same_source]):
            return AmbiguityReason.SEVERAL_IN_ONE_SOURCE
    # Every other linked record must be compatible with the strongest one. Copies are compared
    # with that anchor, not with each other: "Bella" and "Izzy" are both Isabella, but not each
    # other's nickname, while "Alexander" and "Alexandra" both fit "Alex" and never each other.
    # Two copies that each fit the query's given name but not each other's are two children (the
    # twins' weights); a copy linked despite its given name is weighed as it was linked.
    scored = [c for c in linked if c.method is MatchMethod.DEMOGRAPHICS]
    if not scored:
        return None
    anchor = max(scored, key=lambda c: c.weight)
    disagree = any(
        c.source != anchor.source
        and not share_identifier((anchor.record, c.record))
        and model.score(anchor.person, c.person, twins=c.twins or c.given not in TWIN_LEVELS).band
        is Band.REJECTED
        for c in scored
    )
    return AmbiguityReason.RECORDS_DISAGREE if disagree else None


def share_identifier(records: Sequence[ConnectorRecord]) -> bool:
    """Whether the records all carry one identifier (a valid one): one child recorded more than
    once, rather than several children."""
    common = set(_identifiers(records[0]))
    for record in records[1:]:
        common &= set(_identifiers(record))
    return bool(common)


def _identifiers(record: ConnectorRecord) -> Iterator[tuple[str, str]]:
    """The record's identifiers that are ones (`is_normal`): a mistyped or made-up number - a
    placeholder two records happen to share - says nothing about whether they are one child, so
    it neither links them, nor makes twins one child recorded twice, nor two records in one
    source a duplicate."""
    for kind, normalise in _NORMALISE.items():
        value = getattr(record.identifiers, kind)
        if value is not None and is_normal(normalise, value):
            yield kind, value


_NORMALISE: Final = {"nhs_number": normalise_nhs_number, "upn": normalise_upn}


def _matched(c: _Candidate) -> MatchedRecord:
    return MatchedRecord(
        key=c.key,
        source=c.source,
        record=c.record,
        method=c.method,
        score=round(c.probability, 6),
        weight=round(c.weight, 3),
        reasons=c.reasons,
    )


def _as_candidates_answered(answer: SourceAnswer, holding: Collection[str]) -> SourceAnswer:
    """A demographic search reports a source as holding a record only when one was linked, or
    was strong enough to link when the lookup is ambiguous (`holding`): candidates that did not
    match are other children, and saying a source returned some would describe them."""
    if answer.status is not SourceStatus.ANSWERED or answer.source in holding:
        return answer
    return replace(answer, status=SourceStatus.NO_RECORD)


def _unique_records(answer: SourceAnswer) -> Iterator[tuple[str, ConnectorRecord]]:
    seen: set[str] = set()
    for record in answer.records:
        key = f"{answer.source}:{record.record_id}"
        if key not in seen:
            seen.add(key)
            yield key, record
