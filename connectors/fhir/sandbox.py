"""A FHIR test server shaped like NHS England's PDS and CP-IS APIs, loaded from connector records.

Written from the published specifications, not from the connector: it is what the connector is
tested against over real HTTP, and what the demo serves the synthetic population's health records
and social care plans from. It serves, under `PDS_PATH`:

- `GET Patient/{nhs number}`: the patient, as PDS releases it - a restricted (R) record without
  address, telecom, contacts and GP, a very restricted (V) one without names too; 404
  RESOURCE_NOT_FOUND for no such patient, INVALIDATED_RESOURCE for a redacted one, 400
  INVALID_RESOURCE_ID for a number that is not one.
- `GET Patient?...`: a searchset Bundle scored as `connectors.fhir.matching` describes; search
  results carry only usual, nickname and temporary names, as PDS's do.
- `GET Patient/{nhs number}/RelatedPerson`: the related people; an empty Bundle for a restricted
  patient, 404 RESOURCE_NOT_FOUND when there are none.

under `CPIS_PATH`, `GET Flag?patient={nhs number}`: a Bundle of the child's CP-IS plan flags, all
of them (a `_count` is taken, and no child here has more flags than the connector asks for); and
at `TOKEN_PATH`, an OAuth 2.0 token endpoint taking a client-credentials grant with a JWT client
assertion signed RS512 by a registered client (checked against its public key, its audience, a
five-minute expiry and a never-reused `jti`).

With `bearer_tokens` or `clients`, every FHIR call needs `Authorization: Bearer` with a token given
or issued (401 ACCESS_DENIED otherwise). Tests steer it through `FhirSandbox.fault` (every FHIR
call answers that OperationOutcome) and `delay_s`, and read `calls` to see what was asked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.check_digits import is_nhs_number
from connectors.fhir.auth import ASSERTION_ALGORITHM, ASSERTION_LIFETIME_S, ASSERTION_TYPE
from connectors.fhir.client import FHIR_JSON
from connectors.fhir.matching import Person, SearchRefused, parse_query, score
from connectors.fhir.outcomes import operation_outcome
from connectors.fhir.plans import CpisPlan, ResponsibleAuthority
from connectors.fhir.resources import (
    Json,
    flag_resource,
    patient_resource,
    plans_from_record,
    related_person_resources,
)
from connectors.fhir.terminology import Confidentiality, SpineError
from connectors.protocol import ConnectorRecord
from connectors.records import read_records

PDS_PATH: Final = "/personal-demographics/FHIR/R4"
CPIS_PATH: Final = "/cpis/FHIR/R4"
TOKEN_PATH: Final = "/oauth2/token"  # noqa: S105 - a path, not a secret
TOKEN_LIFETIME_S: Final = 599
"""What NHS England's token endpoint grants: a token good for just under ten minutes."""
_SEARCH_NAME_USES: Final = frozenset({"usual", "nickname", "temp"})
_LOCATION: Final = ("address", "telecom", "contact", "generalPractitioner")

DEMO_AUTHORITY: Final = ResponsibleAuthority(
    name="Leeds Children's Social Care",
    ods_code=None,
    office_hours_phone="0113 496 0100",
    emergency_duty_phone="0113 496 0199",
)
"""The local authority the demo's synthetic plans name (Ofcom drama-range numbers, no real ODS
code): synthetic data must never point at a real office."""


@dataclass(frozen=True)
class SandboxClient:
    """An application registered with the token endpoint: its API key and its public key."""

    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey = field(repr=False)


@dataclass(frozen=True)
class SandboxFault:
    """What every FHIR call answers while set: an OperationOutcome with this status and code."""

    status: int
    code: SpineError


@dataclass(frozen=True)
class _Stored:
    patient: Json
    related: list[Json]
    label: Confidentiality


class FhirSandbox:
    """The sandbox's data, switches and app. Build it, serve `.app`, and change `fault` or
    `delay_s` between calls to make it misbehave."""

    def __init__(
        self,
        patients: Sequence[ConnectorRecord],
        plans: Sequence[CpisPlan] = (),
        *,
        labels: Mapping[str, Confidentiality] | None = None,
        bearer_tokens: Collection[str] = (),
        clients: Sequence[SandboxClient] = (),
        token_lifetime_s: int = TOKEN_LIFETIME_S,
    ) -> None:
        """Hold `patients` (each needs an NHS number; ValueError otherwise, or for two with the
        same one) and `plans`. `labels` gives a patient (by NHS number) a security label other
        than its flags say (U, or R when restricted): V or REDACTED. Issued tokens last
        `token_lifetime_s`."""
        labels = labels or {}
        self._patients: dict[str, _Stored] = {}
        self._people: list[Person] = []
        for record in patients:
            patient = patient_resource(record, labels.get(str(record.identifiers.nhs_number)))
            number = str(patient["id"])
            if number in self._patients:
                raise ValueError(f"two sandbox patients share the NHS number of {record.record_id}")
            level = _level(record, labels.get(number))
            self._patients[number] = _Stored(patient, related_person_resources(record), level)
            self._people.append(_person(record, level))
        self._flags: dict[str, list[Json]] = {}
        for position, plan in enumerate(plans, start=1):
            self._flags.setdefault(plan.nhs_number, []).append(
                flag_resource(plan, f"cpis-{position}")
            )
        self._tokens: dict[str, float] = {token: float("inf") for token in bearer_tokens}
        self._clients = {client.key_id: client for client in clients}
        self._used_jti: set[str] = set()
        self._token_lifetime_s = token_lifetime_s
        self._require_token = bool(bearer_tokens) or bool(clients)
        self.fault: SandboxFault | None = None
        self.delay_s = 0.0
        self.calls: list[str] = []
        """Every call as "METHOD path?query", in order (token requests too)."""
        self.app = self._build_app()

    @classmethod
    def from_files(
        cls,
        health: Path,
        social_care: Path | None = None,
        *,
        authority: ResponsibleAuthority = DEMO_AUTHORITY,
        **options: Any,
    ) -> FhirSandbox:
        """Load the health records `childlookup synth` writes (health.jsonl) as PDS patients and,
        from social care records (social_care.jsonl), CP-IS plans for every child whose record
        says child protection plan or looked after, naming `authority`. Records without an NHS
        number are left out: neither service holds them. Raises RecordFileError for a bad file."""
        patients = [r for r in read_records(health) if r.identifiers.nhs_number]
        plans = [
            plan
            for record in (read_records(social_care) if social_care is not None else [])
            for plan in plans_from_record(record, authority)
        ]
        return cls(patients, plans, **options)

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{PDS_PATH}/Patient", self._search_patients, methods=["GET"]),
                Route(f"{PDS_PATH}/Patient/{{number}}", self._read_patient, methods=["GET"]),
                Route(
                    f"{PDS_PATH}/Patient/{{number}}/RelatedPerson",
                    self._related_people,
                    methods=["GET"],
                ),
                Route(f"{CPIS_PATH}/Flag", self._search_flags, methods=["GET"]),
                Route(TOKEN_PATH, self._token, methods=["POST"]),
            ]
        )

    async def _guard(self, request: Request) -> Response | None:
        """What a FHIR call is answered with before its own work: a refused token or a fault."""
        query = f"?{request.url.query}" if request.url.query else ""
        self.calls.append(f"{request.method} {request.url.path}{query}")
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        if self._require_token and not self._authorised(request.headers.get("authorization")):
            return _outcome(
                401, SpineError.ACCESS_DENIED, "Access token missing, invalid or expired"
            )
        if self.fault is not None:
            return _outcome(self.fault.status, self.fault.code, "Sandbox fault")
        return None

    def _authorised(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self._tokens.get(token, 0.0) > time.time()

    async def _read_patient(self, request: Request) -> Response:
        stored = await self._patient_for(request)
        if isinstance(stored, Response):
            return stored
        return _fhir(_released(stored.patient, stored.label, search=False))

    async def _related_people(self, request: Request) -> Response:
        stored = await self._patient_for(request)
        if isinstance(stored, Response):
            return stored
        if stored.label != Confidentiality.UNRESTRICTED:
            return _fhir(_bundle([]))  # PDS returns no related people of a restricted patient
        if not stored.related:
            return _outcome(404, SpineError.RESOURCE_NOT_FOUND, "No related people exist")
        return _fhir(_bundle([(str(request.url), None, person) for person in stored.related]))

    async def _search_patients(self, request: Request) -> Response:
        refused = await self._guard(request)
        if refused is not None:
            return refused
        try:
            query = parse_query(request.query_params.multi_items())
        except SearchRefused as error:
            return _outcome(400, error.code, error.diagnostics)
        matches = []
        for person in self._people:
            if self._patients[person.nhs_number].label == Confidentiality.REDACTED:
                continue  # an invalidated record is never returned by a search
            found = score(query, person)
            if found is not None and not (query.exact and found < 1.0):
                matches.append((found, person.nhs_number))
        if len(matches) > query.max_results:
            # PDS answers a search it will not list with 200 and this outcome, never a short list.
            return _outcome(200, SpineError.TOO_MANY_MATCHES, "Too many matches were found")
        matches.sort(key=lambda match: (-match[0], match[1]))
        base = str(request.url).split("?", 1)[0]
        entries = []
        for found, number in matches:
            stored = self._patients[number]
            entries.append(
                (f"{base}/{number}", found, _released(stored.patient, stored.label, search=True))
            )
        return _fhir(_bundle(entries))

    async def _search_flags(self, request: Request) -> Response:
        refused = await self._guard(request)
        if refused is not None:
            return refused
        params = request.query_params.multi_items()
        unknown = sorted({name for name, _ in params} - {"patient", "_count"})
        if unknown:
            return _outcome(
                400, SpineError.ADDITIONAL_PROPERTIES, f"Unrecognised parameter {unknown[0]}"
            )
        numbers = [value for name, value in params if name == "patient"]
        if len(numbers) != 1 or not is_nhs_number(numbers[0]):
            return _outcome(400, SpineError.INVALID_SEARCH_DATA, "Give one patient NHS number")
        base = str(request.url).split("?", 1)[0]
        flags = self._flags.get(numbers[0], [])
        return _fhir(_bundle([(f"{base}/{flag['id']}", None, flag) for flag in flags]))

    async def _patient_for(self, request: Request) -> _Stored | Response:
        """The patient the path names, or the answer instead: a refusal, or that there is none."""
        refused = await self._guard(request)
        if refused is not None:
            return refused
        number = request.path_params["number"]
        if not is_nhs_number(number):
            return _outcome(400, SpineError.INVALID_RESOURCE_ID, "Invalid NHS number")
        stored = self._patients.get(number)
        if stored is None:
            return _outcome(404, SpineError.RESOURCE_NOT_FOUND, "Patient does not exist")
        if stored.label == Confidentiality.REDACTED:
            return _outcome(404, SpineError.INVALIDATED_RESOURCE, "Patient record invalidated")
        return stored

    def revoke_tokens(self) -> None:
        """Forget every token issued so far, as a token service restarted or rotated would."""
        self._tokens = {t: expiry for t, expiry in self._tokens.items() if expiry == float("inf")}

    async def _token(self, request: Request) -> Response:
        self.calls.append(f"{request.method} {request.url.path}")
        # The form is read by hand: Starlette's form parser needs python-multipart, and a token
        # request is only ever application/x-www-form-urlencoded.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400, "unsupported_grant_type", "grant_type must be client_credentials"
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _oauth_error(400, "invalid_request", "client_assertion_type is not jwt-bearer")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str):
            return _oauth_error(400, "invalid_request", "client_assertion is missing")
        problem = self._check_assertion(assertion, str(request.url).split("?", 1)[0])
        if problem is not None:
            return _oauth_error(401, "invalid_client", problem)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.time() + self._token_lifetime_s
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": str(self._token_lifetime_s),
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
            }
        )

    def _check_assertion(self, assertion: str, audience: str) -> str | None:
        """Why the assertion is refused, or None: it must name a registered key, be signed RS512
        by it, be for this endpoint, come from the client it names, expire within five minutes
        and never have been used before."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "client_assertion is not a JWT"
        client = self._clients.get(str(header.get("kid")))
        if client is None or header.get("alg") != ASSERTION_ALGORITHM:
            return "unknown kid, or not signed RS512"
        try:
            claims = jwt.decode(
                assertion,
                client.public_key,
                algorithms=[ASSERTION_ALGORITHM],
                audience=audience,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.PyJWTError as error:
            return f"client_assertion refused: {type(error).__name__}"
        if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
            return "iss and sub must be the client's API key"
        if float(claims["exp"]) > time.time() + ASSERTION_LIFETIME_S + 5:
            return "client_assertion expires more than five minutes ahead"
        if claims["jti"] in self._used_jti:
            return "client_assertion jti was used before"
        self._used_jti.add(str(claims["jti"]))
        return None


def create_fhir_sandbox_app(
    patients: Sequence[ConnectorRecord],
    plans: Sequence[CpisPlan] = (),
    *,
    labels: Mapping[str, Confidentiality] | None = None,
    bearer_tokens: Collection[str] = (),
    clients: Sequence[SandboxClient] = (),
) -> Starlette:
    """The sandbox app over `patients` and `plans` (see `FhirSandbox`); PDS is served at
    `PDS_PATH`, CP-IS at `CPIS_PATH`, tokens at `TOKEN_PATH`."""
    return FhirSandbox(
        patients, plans, labels=labels, bearer_tokens=bearer_tokens, clients=clients
    ).app


def _released(patient: Json, label: Confidentiality, *, search: bool) -> Json:
    """The patient as PDS releases it under its label; on a search, with only the names a search
    returns."""
    shown = {
        key: value
        for key, value in patient.items()
        if key not in _LOCATION or label == Confidentiality.UNRESTRICTED
    }
    if label == Confidentiality.VERY_RESTRICTED:
        shown.pop("name", None)
    elif search and "name" in shown:
        shown["name"] = [name for name in shown["name"] if name.get("use") in _SEARCH_NAME_USES]
    return shown


def _bundle(entries: Sequence[tuple[str, float | None, Json]]) -> Json:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": datetime.now(UTC).isoformat(),
        "total": len(entries),
        "entry": [
            {"fullUrl": url, "resource": resource}
            | ({"search": {"score": found}} if found is not None else {})
            for url, found, resource in entries
        ],
    }


def _level(record: ConnectorRecord, label: Confidentiality | None) -> Confidentiality:
    if label is not None:
        return label
    return Confidentiality.RESTRICTED if record.flags.restricted else Confidentiality.UNRESTRICTED


def _person(record: ConnectorRecord, label: Confidentiality) -> Person:
    name = record.name
    return Person(
        nhs_number=record.identifiers.nhs_number or "",
        given=tuple(name.given.split() + [k for k in name.known_as]) if name else (),
        family=name.family if name else None,
        old_family=tuple(name.former_family) if name else (),
        gender=record.sex.value if record.sex else None,
        born=record.date_of_birth,
        postcode=record.address.postcode if record.address else None,
        gp=record.gp_practice.ods_code if record.gp_practice else None,
        restricted=label != Confidentiality.UNRESTRICTED,
    )


def _fhir(resource: Json, status: int = 200) -> Response:
    return Response(json.dumps(resource), status_code=status, media_type=FHIR_JSON)


def _outcome(status: int, code: SpineError, diagnostics: str) -> Response:
    return _fhir(operation_outcome(code, diagnostics), status)


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
