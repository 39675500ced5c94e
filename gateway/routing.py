"""The routing stage: out of thousands of agencies, ask only those that may know the child.

England has 153 local authorities, some 6,300 GP practices and 24,000 schools; asking them all for
every lookup is impossible, which is why ContactPoint kept a central copy. This gateway instead
asks two kinds of pointer, neither of which holds anything about the child beyond where to look:

- the **locator** (the `locator` service, asked through gateway.locator_client), where each agency
  has published "I hold a record for child P" under keyed pseudonyms of the NHS number and UPN -
  the only way to reach a local authority a child has moved away from, or a school they left;
- the **identity routes**, from the national identity sources' records (asked on every lookup):
  the registered GP practice and the local authority of the home postcode from the health record,
  the school on roll from the education record.

Each agency so named is asked once, with the identifier it knows the child by (schools by UPN
where there is one; everyone else by NHS number), and its status says why it was asked. The
locator's own status is among the lookup's sources: if it did not answer, the lookup is incomplete
and the child's shielding in doubt (gateway.plan.LOCATOR_SOURCE) - a silent locator never quietly
narrows the answer to the routes.

The stage stays inside the lookup's earlier decisions: only agencies of a kind the plan chose; no
new policy question; nobody asked for a demographic search that shield-safe search would hide, or
that identified nobody; and the answers are matched by identifier alone and combined as a second
round's are (gateway.second_round.combined), so a record of another child fails its source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from connectors.protocol import ConnectorRecord
from gateway import metrics, tracing
from gateway.config import Asked, SourceConfig
from gateway.fanout import FanOut
from gateway.identifiers import InvalidIdentifier, postcode_district
from gateway.linkage import LinkageModel
from gateway.locator_client import Located, LocatorClient
from gateway.match import MatchResult, match_records
from gateway.merge import instant
from gateway.second_round import combined, identifiers_found
from gateway.shield_safe import shield_safe
from gateway.types import (
    IDENTIFIER_FIELDS,
    LOCATOR_SOURCE,
    AskedBecause,
    IdentifiedBy,
    LookupContext,
    LookupQuery,
    MatchedRecord,
    Plan,
    SourceAnswer,
    SourceStatus,
)

UNKNOWN_AGENCY = "UNKNOWN_AGENCY"
TOO_MANY_AGENCIES = "TOO_MANY_AGENCIES"
UNCONFIRMED_IDENTIFIER = "UNCONFIRMED_IDENTIFIER"
_UNCONFIRMED = SourceAnswer(
    LOCATOR_SOURCE,
    SourceStatus.NOT_ASKED,
    error_code=UNCONFIRMED_IDENTIFIER,
    asked_because=(AskedBecause.CONFIGURED,),
)
"""The locator's status when the child was found by no identifier to ask it with: not asked, so
the answer is incomplete and the child's shielding unknown - never a silent locator read as one
that had nothing to say."""
_logger = logging.getLogger("childlookup.routing")


@dataclass(frozen=True)
class Directory:
    """The agencies asked only when routed, found by the routes that lead to them."""

    agencies: Mapping[str, SourceConfig]
    by_route: Mapping[str, tuple[str, ...]]
    postcode_districts: Mapping[str, str]

    @classmethod
    def of(
        cls, sources: Sequence[SourceConfig], postcode_districts: Mapping[str, str]
    ) -> Directory:
        routed = [s for s in sources if s.asked is Asked.WHEN_ROUTED]
        by_route: dict[str, list[str]] = {}
        for source in routed:
            for key in source.routes:
                by_route.setdefault(key, []).append(source.name)
        return cls(
            agencies=MappingProxyType({s.name: s for s in routed}),
            by_route=MappingProxyType({k: tuple(v) for k, v in by_route.items()}),
            postcode_districts=MappingProxyType(dict(postcode_districts)),
        )

    def routed(self, records: Sequence[MatchedRecord]) -> dict[str, set[AskedBecause]]:
        """The agencies the identity sources' records lead to, and by which route: from each
        source's latest record only (`as_of`), its current registration. Older records of the
        child name practices and schools left long ago - the locator knows who still holds a
        record - and a source sending many (up to the protocol's limit on records) must not turn
        one lookup into the child's identifiers sent to as many agencies."""
        found: dict[str, set[AskedBecause]] = {}
        for key, why in self._route_keys(_latest_by_source(records)):
            for name in self.by_route.get(key, ()):
                found.setdefault(name, set()).add(why)
        return found

    def _route_keys(self, records: Iterable[ConnectorRecord]) -> list[tuple[str, AskedBecause]]:
        keys = []
        for record in records:
            if record.gp_practice is not None:
                keys.append(
                    (f"ods:{record.gp_practice.ods_code.upper()}", AskedBecause.ROUTED_BY_GP)
                )
            if record.school is not None:
                keys.append((f"urn:{record.school.urn}", AskedBecause.ROUTED_BY_SCHOOL))
            if record.address is not None:
                authority = self._authority_of(record.address.postcode)
                if authority is not None:
                    keys.append((f"la:{authority}", AskedBecause.ROUTED_BY_ADDRESS))
        return keys

    def _authority_of(self, postcode: str) -> str | None:
        try:
            return self.postcode_districts.get(postcode_district(postcode))
        except InvalidIdentifier:
            return None  # no fixed abode, or a postcode the agency mistyped: no address route


class Router:
    """Runs the routing stage; holds no per-lookup state."""

    def __init__(
        self,
        directory: Directory,
        locator: LocatorClient | None,
        fanout: FanOut,
        linkage: LinkageModel,
        *,
        locator_agencies_max: int,
        registers: Collection[str] = (),
    ) -> None:
        """`registers`: the sources holding every child (`holds_every_child`), whose records
        linked by demographics vouch for the NHS number they carry."""
        self._directory = directory
        self._locator = locator
        self._fanout = fanout
        self._linkage = linkage
        self._located_max = locator_agencies_max
        self._registers = frozenset(registers)

    @property
    def locates(self) -> bool:
        """Whether a locator is asked (its silence then leaves shielding in doubt)."""
        return self._locator is not None

    def start(self, lookup: LookupContext) -> asyncio.Task[Located] | None:
        """Ask the locator about the lookup's own identifier now, while the identity sources are
        asked: most lookups then wait for neither in turn."""
        asked = _identifiers_of(lookup.query)
        if self._locator is None or not asked:
            return None
        return asyncio.ensure_future(self._locator.locate(lookup, asked))

    @tracing.stage("route")
    async def route(
        self,
        lookup: LookupContext,
        plan: Plan,
        matching: MatchResult,
        early: asyncio.Task[Located] | None,
    ) -> MatchResult:
        """`matching` with the answers of the located and routed agencies, and the locator's."""
        query = lookup.query
        hidden = shield_safe(
            query,
            matching,
            plan.doubt_authorities,
            before_routing=True,
            unasked=plan.unasked_authorities,
        )[1]
        # Nothing found for a search that linked nobody, or ambiguously (identifiers_found).
        known = _identifiers_of(query) | {
            f.kind: f.value for f in identifiers_found(query, matching, self._registers)
        }
        if hidden or not known:
            _cancel(early)  # a search that found nobody, or must look as if it had
            if hidden or self._locator is None or not matching.matched or matching.ambiguous:
                return matching
            # Found, but by no identifier the records vouch for (gateway.second_round): the
            # locator cannot be asked, and an authority only it would name may shield the child.
            return replace(matching, answers=(*matching.answers, _UNCONFIRMED))
        located = await self._located(lookup, known, early)
        reasons = self._directory.routed(
            [m for m in matching.matched if _configured(m, matching.answers)]
        )
        if located is not None:
            located = self._followable(located, plan)
            for name in located.agencies:
                reasons.setdefault(name, set()).add(AskedBecause.LOCATED)
        asked = {a.source for a in matching.answers}
        chosen = {
            name: why
            for name, why in reasons.items()
            if name in self._directory.agencies
            and name not in asked
            and plan.planned_as(name) in plan.sources
        }
        result = await self._ask(lookup, plan, matching, chosen, known, located)
        if located is None:
            return result
        return replace(result, answers=(*result.answers, located.answer))

    def _followable(self, located: Located, plan: Plan) -> Located:
        """The locator's answer, FAILED (UNKNOWN_AGENCY) if it names an agency this gateway has
        no connector for: the answer cannot be complete, and the agency's name, which the caller
        may not be entitled to learn, is logged for the operators rather than shown. Naming more
        agencies than a lookup follows (`locator_agencies_max`), it is not followed at all
        (TOO_MANY_AGENCIES): which of them hold the child could not be told. Counted are those
        this lookup would ask - of a kind the plan chose - and any it cannot."""
        followed = [
            name
            for name in located.agencies
            if name not in self._directory.agencies or plan.planned_as(name) in plan.sources
        ]
        if len(followed) > self._located_max:
            _logger.warning(
                "the locator named more agencies than a lookup follows",
                extra={
                    "event": "locator_too_many_agencies",
                    "context": {"named": len(followed), "max": self._located_max},
                },
            )
            answer = replace(
                located.answer, status=SourceStatus.FAILED, error_code=TOO_MANY_AGENCIES
            )
            return replace(located, agencies={}, answer=answer)
        unknown = sorted(set(located.agencies) - set(self._directory.agencies))
        if not unknown:
            return located
        _logger.warning(
            "the locator named agencies with no configured connector",
            extra={"event": "locator_unknown_agency", "context": {"agencies": unknown}},
        )
        return replace(
            located,
            answer=replace(located.answer, status=SourceStatus.FAILED, error_code=UNKNOWN_AGENCY),
        )

    async def _located(
        self,
        lookup: LookupContext,
        known: Mapping[IdentifiedBy, str],
        early: asyncio.Task[Located] | None,
    ) -> Located | None:
        if self._locator is None:
            return None
        located = None if early is None else await early
        missing = {k: v for k, v in known.items() if located is None or k not in located.asked}
        if not missing:
            return located
        later = await self._locator.locate(lookup, missing)
        return later if located is None else located.joined(later)

    async def _ask(
        self,
        lookup: LookupContext,
        plan: Plan,
        matching: MatchResult,
        chosen: Mapping[str, set[AskedBecause]],
        known: Mapping[IdentifiedBy, str],
        located: Located | None,
    ) -> MatchResult:
        """Ask each chosen agency with the identifier it knows the child by, all at once, and
        fold their matched answers into `matching` in a stable order."""
        groups: dict[IdentifiedBy, list[str]] = {}
        for name in sorted(chosen):
            held = frozenset() if located is None else located.agencies.get(name, frozenset())
            kind = _identifier_for(chosen[name], held, known)
            groups.setdefault(kind, []).append(name)
        if not groups:
            return matching
        queries = {kind: _query_by(lookup.query, kind, known[kind]) for kind in groups}
        rounds = await self._fanout.ask_routed(
            plan,
            [(replace(lookup, query=queries[kind]), names) for kind, names in groups.items()],
        )
        result = matching
        for kind, answers in zip(groups, rounds, strict=True):
            because = [replace(a, asked_because=_reasons(chosen[a.source])) for a in answers]
            result = combined(
                lookup.query,
                result,
                match_records(queries[kind], because, self._linkage, born=result.born),
                self._linkage,
            )
        metrics.routed_asked((a for a in result.answers if a.source in chosen), plan.planned_as)
        return result


def _latest_by_source(records: Sequence[MatchedRecord]) -> list[ConnectorRecord]:
    """Per source, its linked record of the latest `as_of` (the first of those, on a tie)."""
    latest: dict[str, ConnectorRecord] = {}
    for matched in records:
        held = latest.get(matched.source)
        if held is None or instant(matched.record.as_of) > instant(held.as_of):
            latest[matched.source] = matched.record
    return list(latest.values())


def _identifiers_of(query: LookupQuery) -> dict[IdentifiedBy, str]:
    return {
        kind: value
        for kind, field in IDENTIFIER_FIELDS.items()
        if (value := getattr(query, field)) is not None
    }


def _configured(matched: MatchedRecord, answers: Sequence[SourceAnswer]) -> bool:
    """Whether `matched` comes from a source asked on every lookup (an identity source): only
    their records give routes, since an agency's own may be years out of date."""
    return any(
        a.source == matched.source and AskedBecause.CONFIGURED in a.asked_because for a in answers
    )


def _identifier_for(
    why: set[AskedBecause], held: frozenset[IdentifiedBy], known: Mapping[IdentifiedBy, str]
) -> IdentifiedBy:
    """Schools know pupils by UPN; everyone else by NHS number. An agency located under only one
    of them is asked with that one."""
    if len(held) == 1:
        (only,) = held
        return only
    if AskedBecause.ROUTED_BY_SCHOOL in why and IdentifiedBy.UPN in known:
        return IdentifiedBy.UPN
    return IdentifiedBy.NHS_NUMBER if IdentifiedBy.NHS_NUMBER in known else IdentifiedBy.UPN


def _query_by(query: LookupQuery, kind: IdentifiedBy, value: str) -> LookupQuery:
    return LookupQuery(
        purpose=query.purpose,
        justification=query.justification,
        nhs_number=value if kind is IdentifiedBy.NHS_NUMBER else None,
        upn=value if kind is IdentifiedBy.UPN else None,
    )


def _reasons(why: set[AskedBecause]) -> tuple[AskedBecause, ...]:
    return tuple(reason for reason in AskedBecause if reason in why)


def _cancel(early: asyncio.Task[Located] | None) -> None:
    if early is not None:
        early.cancel()
