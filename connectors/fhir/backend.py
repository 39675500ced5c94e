"""The health connector's backend: lookups answered live from PDS, with CP-IS for the plans.

Per lookup: the NHS number is read from PDS (`Patient/{nhs number}`); demographics become the PDS
searches `connectors.fhir.searches` plans, run together and merged by NHS number, best score first,
at most `DEFAULT_LIMIT`; then, per record and only for what was requested, the related people (for
carers) and the CP-IS flags (for the plan indicators and the responsible authority's contacts).

CP-IS is asked only about a child found by NHS number, unless `cpis_for_candidates`: a CP-IS query
is an access the responsible authority is told of and sees among the child's recent accesses, and
a demographic search's candidates are mostly other children. The gateway asks again by NHS number
once it has linked the child (its second round) when the first answer was a demographic one, and
every source holding plans (social care) answers for them too.

Anything that fails - PDS, CP-IS, the token service - fails the lookup with a typed error: a
record without its CP-IS answer would read as "no plan", which is the partial answer that looks
complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, TypeVar

from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.relatedperson import RelatedPerson
from pydantic import ValidationError

from connectors.backend import ConnectorError, today_in_england
from connectors.fhir.client import FhirClient
from connectors.fhir.outcomes import TooManyMatches
from connectors.fhir.patients import confidentiality, record_from_patient
from connectors.fhir.plans import indicators, involvements, plans_from_flags, unread_in_force
from connectors.fhir.searches import PdsSearch, plan_searches
from connectors.fhir.subjects import nhs_number, refers_to
from connectors.fhir.terminology import PDS_MAX_RESULTS, Confidentiality
from connectors.protocol import ConnectorRecord, ErrorCode, FieldId, LookupRequest
from connectors.search import DEFAULT_LIMIT

CPIS_FIELDS: Final = frozenset(
    {FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER, FieldId.INVOLVEMENTS}
)
FLAGS_PER_ANSWER: Final = 100
"""The `_count` CP-IS is asked for flags with. A server pages a search past its own default (HAPI
FHIR's is 20), and a paged answer fails the lookup (FhirClient.search), so without it a child
with a long history of plans could not be looked up. A flag is one plan; 100 is more than any
child has, well inside what the connector reads (`MAX_ANSWER_BYTES`: 100 flags are some 150 KB),
and within every common server's largest page (HAPI's 200, Azure's and Google's 1000). More than
100 is still one page of several, and still fails the lookup."""
_FAILED: Final = frozenset({"error", "fatal"})
"""`OperationOutcome.issue.severity` values that say the operation failed."""


UNNUMBERED: Final = "no-nhs-number-"
"""The record id of a search result without one usable NHS number, before a number that keeps it
apart from every other: nothing says two such are one child, or which child either is."""


@dataclass(frozen=True)
class _Found:
    """A patient PDS returned, the record id it is answered under, and whether it was found by the
    NHS number the lookup gave."""

    patient: Patient
    record_id: str
    by_identifier: bool


class FhirBackend:
    """A `ConnectorBackend` over a PDS-shaped FHIR server and, optionally, a CP-IS one.

    `today` is the day plans, names and addresses are judged in force on: England's date, not the
    machine's (a server kept in UTC would still show a plan that ended yesterday in England as in
    force for the first hour of a summer day)."""

    def __init__(
        self,
        pds: FhirClient,
        cpis: FhirClient | None = None,
        *,
        cpis_for_candidates: bool = False,
        today: Callable[[], date] = today_in_england,
    ) -> None:
        self._pds = pds
        self._cpis = cpis
        self._cpis_for_candidates = cpis_for_candidates
        self._today = today

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        """The record PDS holds under the request's NHS number, then - with demographics - the
        candidates PDS finds, best first and not repeating it; each with the requested extras."""
        found: list[_Found] = []
        number = request.identifiers.nhs_number
        if number is not None:
            patient = await self._read_patient(number, request.deadline)
            if patient is not None:
                found.append(_Found(patient, number, by_identifier=True))
        if request.demographics is not None:
            seen = {f.record_id for f in found}
            candidates = await self._search(request)
            found += [_Found(p, key, False) for key, p in candidates if key not in seen]
        fetched_at = datetime.now(UTC)
        records = await asyncio.gather(*(self._record(f, request, fetched_at) for f in found))
        return [record for record in records if record is not None]

    async def _read_patient(self, number: str, deadline: datetime) -> Patient | None:
        """The patient PDS holds under `number`, or None. A patient whose NHS number is not
        `number` - another child's, none, two - fails the lookup before anything more is asked
        about it: its carers would be another child's, and a CP-IS query about it an access to
        another child that their authority is told of."""
        body = await self._pds.read(f"Patient/{number}", deadline=deadline)
        if body is None:
            return None
        # In a worker thread, as every FHIR answer is validated: see FhirClient.search.
        patient = await asyncio.to_thread(_parsed, Patient, body, "PDS")
        if nhs_number(patient) != number:
            raise ConnectorError(
                ErrorCode.INTERNAL,
                "PDS answered with a patient whose NHS number is not the one asked for; nothing "
                "in that answer can be taken as this child's.",
            )
        return patient

    async def _search(self, request: LookupRequest) -> list[tuple[str, Patient]]:
        """Every planned search at once; the patients merged by NHS number at their best score,
        each with its record id. A patient without one usable NHS number is a candidate of its
        own (`UNNUMBERED`), merged with none: dropping one of two namesakes would make the other
        look unique. Demographics PDS cannot search with are refused, not answered "no record"."""
        assert request.demographics is not None
        searches = plan_searches(request.demographics)
        if not searches:
            raise ConnectorError(
                ErrorCode.BAD_REQUEST,
                "PDS needs at least a family name and date of birth, or a given name, date of "
                "birth, sex and postcode, to search.",
            )
        bundles = await asyncio.gather(
            *(self._search_once(search, request.deadline) for search in searches)
        )
        best: dict[str, tuple[float, Patient]] = {}  # in the order first found
        # The record ids of patients without an NHS number, by their whole resource: the same
        # resource found by several searches is one patient, not several namesakes.
        unnumbered: dict[str, str] = {}
        for bundle in bundles:
            for score, patient in _scored_patients(bundle):
                key = nhs_number(patient) or unnumbered.setdefault(
                    patient.model_dump_json(), f"{UNNUMBERED}{len(best) + 1}"
                )
                if key not in best or score > best[key][0]:
                    best[key] = (score, patient)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])  # stable: ties keep order
        return [(key, patient) for key, (_, patient) in ranked[:DEFAULT_LIMIT]]

    async def _search_once(self, search: PdsSearch, deadline: datetime) -> Bundle | None:
        """One search, asking for `DEFAULT_LIMIT` matches; when more match, PDS returns none of
        them, so once more asking for as many as PDS gives. The strongest `DEFAULT_LIMIT` of
        those are the answer, as from any connector: a crowd of namesakes is a capped list the
        gateway calls ambiguous, not a failed source. Only more than PDS ever returns is
        refused (TOO_MANY_MATCHES, BAD_REQUEST)."""
        try:
            return await self._pds.search("Patient", search.params(), deadline=deadline)
        except TooManyMatches:
            wider = search.params(PDS_MAX_RESULTS)
            return await self._pds.search("Patient", wider, deadline=deadline)

    async def _record(
        self, found: _Found, request: LookupRequest, fetched_at: datetime
    ) -> ConnectorRecord | None:
        """The patient's record with the related people and CP-IS plans the request needs,
        fetched together; None for a redacted patient (answered as not found). Neither is asked
        about a patient without an NHS number: they are found by it, and there is none to check
        them against."""
        today = self._today()
        fields = set(request.fields)
        level = confidentiality(found.patient)
        if level == Confidentiality.REDACTED:
            return None
        number = nhs_number(found.patient)
        wants_carers = FieldId.CARERS in fields and level == Confidentiality.UNRESTRICTED
        wants_plans = (
            self._cpis is not None
            and bool(fields & CPIS_FIELDS)
            and (found.by_identifier or self._cpis_for_candidates)
        )
        related, plan_flags = await asyncio.gather(
            self._related(number, request.deadline) if number and wants_carers else _nothing(),
            self._flags(number, request.deadline) if number and wants_plans else _nothing(),
        )
        record = record_from_patient(
            found.patient, related, record_id=found.record_id, today=today, fetched_at=fetched_at
        )
        if record is None or plan_flags is None or number is None:
            return record
        plans = plans_from_flags(plan_flags, number)
        return record.model_copy(
            update={
                "indicators": indicators(plans, today, unread=unread_in_force(plan_flags, today)),
                "involvements": involvements(plans, today),
            }
        )

    async def _related(self, number: str, deadline: datetime) -> list[RelatedPerson]:
        bundle = await self._pds.search(
            f"Patient/{number}/RelatedPerson", (), deadline=deadline, none_found_ok=True
        )
        # Not checked against the child, as flags are: in PDS a RelatedPerson's `patient` is the
        # related person's own record (the carer's NHS number, or no reference at all), and the
        # request itself is about this child.
        return _resources(bundle, RelatedPerson, "PDS")

    async def _flags(self, number: str, deadline: datetime) -> list[Flag]:
        assert self._cpis is not None
        # No `none_found_ok`: CP-IS answers a child without plans with an empty Bundle, so a
        # 404 (a wrong base path, a proxy in front of it) is no answer, never "no plan".
        asked = (("patient", number), ("_count", str(FLAGS_PER_ANSWER)))
        bundle = await self._cpis.search("Flag", asked, deadline=deadline)
        flags = _resources(bundle, Flag, "CP-IS")
        _all_about(number, [flag.subject for flag in flags], "CP-IS")
        return flags


async def _nothing() -> None:
    return None


def _all_about(number: str, subjects: Sequence[Reference | None], service: str) -> None:
    """Fail the lookup unless every resource `service` answered about the child with NHS number
    `number` names that child as its subject. One about another patient, or naming no one, is a
    server that cannot be trusted for this child; skipping it would answer as if it had said
    nothing - no plan, no carer - which it did not."""
    if not all(refers_to(subject, number) for subject in subjects):
        raise ConnectorError(
            ErrorCode.INTERNAL,
            f"{service} answered about another patient than the one asked about; nothing in "
            "that answer can be taken as this child's.",
        )


def _scored_patients(bundle: Bundle | None) -> list[tuple[float, Patient]]:
    """(score, patient) for each patient in a search Bundle; a missing score counts as 0."""
    scored = []
    for entry in _entries(bundle, "PDS"):
        if isinstance(entry.resource, Patient):
            score = entry.search.score if entry.search and entry.search.score is not None else 0
            scored.append((float(score), entry.resource))
    return scored


_Resource = TypeVar("_Resource", RelatedPerson, Flag)


def _resources(bundle: Bundle | None, kind: type[_Resource], service: str) -> list[_Resource]:
    """The Bundle's resources, all of `kind`; anything else in it is an answer not understood."""
    found = []
    for entry in _entries(bundle, service):
        if not isinstance(entry.resource, kind):
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"{service} answered with resources the connector did not ask for.",
            )
        found.append(entry.resource)
    return found


def _entries(bundle: Bundle | None, service: str) -> Iterator[BundleEntry]:
    """The Bundle's entries holding a resource, less the search's own outcomes (`search.mode`
    "outcome": notes and warnings about the search, not results). One reporting an error or a
    fatal issue fails the lookup: the results beside it may be partial."""
    for entry in (bundle.entry or []) if bundle is not None else []:
        resource = entry.resource
        if resource is None:
            continue
        outcome = entry.search is not None and entry.search.mode == "outcome"
        if outcome and isinstance(resource, OperationOutcome):
            if any(issue.severity in _FAILED for issue in resource.issue or []):
                raise ConnectorError(
                    ErrorCode.INTERNAL, f"{service} reported an error with its answer."
                )
            continue
        yield entry


def _parsed(kind: type[Patient], body: object, service: str) -> Patient:
    try:
        return kind.model_validate(body)
    except ValidationError:
        raise ConnectorError(
            ErrorCode.INTERNAL, f"{service} answered in a form the connector cannot read."
        ) from None
