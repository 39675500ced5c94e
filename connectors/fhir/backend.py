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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, TypeVar

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.relatedperson import RelatedPerson
from pydantic import ValidationError

from connectors.backend import ConnectorError
from connectors.fhir.client import FhirClient
from connectors.fhir.outcomes import TooManyMatches
from connectors.fhir.patients import confidentiality, nhs_number, record_from_patient
from connectors.fhir.plans import indicators, involvements, plans_from_flags
from connectors.fhir.searches import PdsSearch, plan_searches
from connectors.fhir.terminology import PDS_MAX_RESULTS, Confidentiality
from connectors.protocol import ConnectorRecord, ErrorCode, FieldId, LookupRequest
from connectors.search import DEFAULT_LIMIT

CPIS_FIELDS: Final = frozenset(
    {FieldId.CHILD_PROTECTION_PLAN, FieldId.LOOKED_AFTER, FieldId.INVOLVEMENTS}
)


@dataclass(frozen=True)
class _Found:
    """A patient PDS returned, and whether it was found by the NHS number the lookup gave."""

    patient: Patient
    by_identifier: bool


class FhirBackend:
    """A `ConnectorBackend` over a PDS-shaped FHIR server and, optionally, a CP-IS one."""

    def __init__(
        self,
        pds: FhirClient,
        cpis: FhirClient | None = None,
        *,
        cpis_for_candidates: bool = False,
        today: Callable[[], date] = date.today,
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
                found.append(_Found(patient, by_identifier=True))
        if request.demographics is not None:
            seen = {str(f.patient.id) for f in found}
            candidates = await self._search(request)
            found += [_Found(p, False) for p in candidates if str(p.id) not in seen]
        fetched_at = datetime.now(UTC)
        records = await asyncio.gather(*(self._record(f, request, fetched_at) for f in found))
        return [record for record in records if record is not None]

    async def _read_patient(self, number: str, deadline: datetime) -> Patient | None:
        body = await self._pds.read(f"Patient/{number}", deadline=deadline)
        return None if body is None else _parsed(Patient, body, "PDS")

    async def _search(self, request: LookupRequest) -> list[Patient]:
        """Every planned search at once; the patients merged by NHS number at their best score.
        Demographics PDS cannot search with are refused, not answered "no record"."""
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
        for bundle in bundles:
            for score, patient in _scored_patients(bundle):
                key = str(patient.id)
                if key not in best or score > best[key][0]:
                    best[key] = (score, patient)
        ranked = sorted(best.values(), key=lambda entry: -entry[0])  # stable: ties keep order
        return [patient for _, patient in ranked[:DEFAULT_LIMIT]]

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
        fetched together; None for a redacted patient (answered as not found)."""
        today = self._today()
        fields = set(request.fields)
        level = confidentiality(found.patient)
        number = nhs_number(found.patient)
        if level == Confidentiality.REDACTED or number is None:
            return None
        wants_carers = FieldId.CARERS in fields and level == Confidentiality.UNRESTRICTED
        wants_plans = (
            self._cpis is not None
            and bool(fields & CPIS_FIELDS)
            and (found.by_identifier or self._cpis_for_candidates)
        )
        related, plan_flags = await asyncio.gather(
            self._related(number, request.deadline) if wants_carers else _nothing(),
            self._flags(number, request.deadline) if wants_plans else _nothing(),
        )
        record = record_from_patient(found.patient, related, today=today, fetched_at=fetched_at)
        if record is None or plan_flags is None:
            return record
        plans = plans_from_flags(plan_flags, number)
        return record.model_copy(
            update={
                "indicators": indicators(plans, today),
                "involvements": involvements(plans, today),
            }
        )

    async def _related(self, number: str, deadline: datetime) -> list[RelatedPerson]:
        bundle = await self._pds.search(
            f"Patient/{number}/RelatedPerson", (), deadline=deadline, none_found_ok=True
        )
        return _resources(bundle, RelatedPerson, "PDS")

    async def _flags(self, number: str, deadline: datetime) -> list[Flag]:
        assert self._cpis is not None
        bundle = await self._cpis.search(
            "Flag", (("patient", number),), deadline=deadline, none_found_ok=True
        )
        return _resources(bundle, Flag, "CP-IS")


async def _nothing() -> None:
    return None


def _scored_patients(bundle: Bundle | None) -> list[tuple[float, Patient]]:
    """(score, patient) for each patient in a search Bundle; a missing score counts as 0."""
    scored = []
    for entry in (bundle.entry or []) if bundle is not None else []:
        if isinstance(entry.resource, Patient):
            score = entry.search.score if entry.search and entry.search.score is not None else 0
            scored.append((float(score), entry.resource))
    return scored


_Resource = TypeVar("_Resource", RelatedPerson, Flag)


def _resources(bundle: Bundle | None, kind: type[_Resource], service: str) -> list[_Resource]:
    """The Bundle's resources, all of `kind`; anything else in it is an answer not understood."""
    found = []
    for entry in (bundle.entry or []) if bundle is not None else []:
        if entry.resource is None:
            continue
        if not isinstance(entry.resource, kind):
            raise ConnectorError(
                ErrorCode.INTERNAL,
                f"{service} answered with resources the connector did not ask for.",
            )
        found.append(entry.resource)
    return found


def _parsed(kind: type[Patient], body: object, service: str) -> Patient:
    try:
        return kind.model_validate(body)
    except ValidationError:
        raise ConnectorError(
            ErrorCode.INTERNAL, f"{service} answered in a form the connector cannot read."
        ) from None
