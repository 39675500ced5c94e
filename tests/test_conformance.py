"""The conformance kit, run over HTTP against real connectors on loopback: a reference connector
loaded with the conformance dataset passes every check, and connectors broken in one way each fail
exactly the checks that cover that way."""

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import connectors.app
from connectors.app import create_connector_app
from connectors.backend import ConnectorError
from connectors.check_digits import nhs_check_digit, upn_check_letter
from connectors.conformance import (
    CHECK_NAMES,
    ConformanceOptions,
    Flag,
    Outcome,
    Report,
    conformance_dataset,
    conformance_records,
    main,
    run_conformance,
)
from connectors.conformance.dataset import CROWD_SEARCH
from connectors.conformance.identity import KitIdentity, public_key_path
from connectors.minimisation import minimise
from connectors.protocol import (
    LOOKUP_PATH,
    ConnectorRecord,
    ErrorCode,
    FieldId,
    LookupRequest,
    RecordFlags,
)
from connectors.records import FileBackend
from connectors.reference import REFERENCE_AGENCIES, create_reference_app
from connectors.search import DEFAULT_LIMIT, CandidateIndex
from connectors.serving import BackgroundServer, free_port
from connectors.trust import (
    JWKS_PATH,
    AnswerSigner,
    PublishedKeys,
    RequestVerifier,
    StaticKey,
    load_public_key,
)

ISSUER = "childlookup-conformance"
TRUST_CHECKS = {
    "refuses_unsigned",
    "refuses_replayed",
    "refuses_expired",
    "refuses_wrong_audience",
    "refuses_wrong_issuer",
    "refuses_unknown_key",
    "refuses_tampered_body",
}
SKIPPED_CHECKS = {
    "health": {"carries_shielding_flag"},
    "education": {
        "carries_shielding_flag",
        "carries_restriction_flag",
        "withholds_sensitive_service_details",
    },
    "social_care": {"carries_restriction_flag", "withholds_sensitive_service_details"},
}
"""What each reference agency cannot be checked for: flags it never sets, and sensitive
services it does not hold."""

AppFactory = Callable[[str, RequestVerifier | None, AnswerSigner | None], ASGIApp]
"""Builds the connector for (agency, verifier of the kit's requests, answer signer)."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dataset")
    assert main(["--write-dataset", str(directory)]) == 0
    return directory


def _kit(
    tmp_path: Path,
    agency: str,
    build: AppFactory,
    *,
    verify: bool = True,
    sign: bool = True,
    **options: object,
) -> tuple[Report, str]:
    """Serve the connector `build` makes, trusting the kit's JWKS as served during the run, and
    run the kit against it; return the report and what it printed."""
    jwks_port = free_port()
    jwks_url = f"http://127.0.0.1:{jwks_port}{JWKS_PATH}"
    verifier = RequestVerifier(PublishedKeys(jwks_url), issuer=ISSUER) if verify else None
    signer = AnswerSigner(ec.generate_private_key(ec.SECP256R1())) if sign else None
    out = io.StringIO()
    with BackgroundServer(build(agency, verifier, signer)) as server:
        report = run_conformance(
            ConformanceOptions(
                url=server.url,
                agency=agency,
                key_file=tmp_path / "kit-key.pem",
                issuer=ISSUER,
                jwks_port=jwks_port,
                **options,  # type: ignore[arg-type]
            ),
            out,
        )
    return report, out.getvalue()


def _reference(dataset: Path, latency_ms: float = 0.0) -> AppFactory:
    def build(agency: str, verifier: RequestVerifier | None, signer: AnswerSigner | None):
        path = dataset / f"{agency}.jsonl"
        return create_reference_app(agency, path, latency_ms, verifier=verifier, signer=signer)

    return build


def _sdk(dataset: Path, backend_for: Callable[[list[ConnectorRecord]], object]) -> AppFactory:
    """A connector built with the SDK over a (misbehaving) backend of the agency's records."""

    def build(agency: str, verifier: RequestVerifier | None, signer: AnswerSigner | None):
        records = conformance_records(agency)
        return create_connector_app(
            backend_for(records), source=agency, verifier=verifier, signer=signer
        )

    return build


def _failed(report: Report) -> set[str]:
    return report.named(Outcome.FAIL)


# --- the reference connector --------------------------------------------------------------------


@pytest.mark.parametrize("agency", sorted(REFERENCE_AGENCIES))
def test_a_reference_connector_loaded_with_the_dataset_passes_every_check(
    tmp_path, dataset, agency
):
    report, printed = _kit(tmp_path, agency, _reference(dataset))

    assert _failed(report) == set(), printed
    assert report.named(Outcome.SKIP) == SKIPPED_CHECKS[agency]
    lines = printed.splitlines()
    assert [line.split(" ")[1].rstrip(":") for line in lines[:-1]] == list(CHECK_NAMES)
    assert lines[-1] == f"{len(CHECK_NAMES) - len(SKIPPED_CHECKS[agency])} passed, 0 failed, " + (
        f"{len(SKIPPED_CHECKS[agency])} skipped"
    )
    assert report.exit_code == 0


def test_a_connector_given_the_kits_public_key_file_passes_without_a_served_jwks(tmp_path, dataset):
    key_file = tmp_path / "kit-key.pem"
    KitIdentity.from_key_file(key_file, ISSUER)  # as `--key-file` creates it on a first run
    verifier = RequestVerifier(StaticKey(load_public_key(public_key_path(key_file))), issuer=ISSUER)
    app = create_reference_app(
        "health", dataset / "health.jsonl", verifier=verifier, signer=_signer()
    )

    with BackgroundServer(app) as server:
        report = run_conformance(
            ConformanceOptions(
                url=server.url, agency="health", key_file=key_file, issuer=ISSUER, jwks_port=None
            ),
            None,
        )

    assert _failed(report) == set()


def test_fields_override_skips_the_checks_that_need_fields_not_provided(tmp_path, dataset):
    report, printed = _kit(tmp_path, "health", _reference(dataset), fields=(FieldId.NAME,))

    assert _failed(report) == set(), printed
    assert report.named(Outcome.SKIP) == {
        "returns_only_requested_fields",
        "withholds_sensitive_service_details",
        "finds_despite_slip",
        "caps_candidates",
        "carries_shielding_flag",
    }


def test_an_answer_key_file_is_used_instead_of_the_published_jwks(tmp_path, dataset):
    connector_key = ec.generate_private_key(ec.SECP256R1())
    other_key_file = tmp_path / "other.pem"
    KitIdentity.from_key_file(other_key_file, "unused")  # a key the connector does not sign with

    def build(agency: str, verifier: RequestVerifier | None, signer: AnswerSigner | None):
        return _reference(dataset)(agency, verifier, AnswerSigner(connector_key))

    report, printed = _kit(tmp_path, "education", build, answer_key=public_key_path(other_key_file))

    assert _failed(report) == {"signs_answers"}
    assert "the answer (HTTP 200)" in printed


# --- broken connectors -------------------------------------------------------------------------


def test_a_connector_that_does_not_verify_requests_fails_every_trust_check(tmp_path, dataset):
    report, printed = _kit(tmp_path, "health", _reference(dataset), verify=False)

    assert _failed(report) == TRUST_CHECKS
    assert "FAIL refuses_unsigned: answered a request with no Authorization header" in printed
    assert report.exit_code == 1


def test_a_connector_that_does_not_sign_answers_fails_the_signature_check(tmp_path, dataset):
    report, printed = _kit(tmp_path, "health", _reference(dataset), sign=False)

    assert _failed(report) == {"signs_answers"}
    assert "FAIL signs_answers: the answer (HTTP 200): The answer is not signed." in printed


def test_a_connector_that_does_not_minimise_fails_the_field_checks(tmp_path, dataset, monkeypatch):
    # The SDK minimises whatever a backend returns; a connector built without it might not.
    monkeypatch.setattr(connectors.app, "minimise", lambda record, fields: record)

    report, printed = _kit(tmp_path, "health", _reference(dataset))

    assert _failed(report) == {
        "returns_only_requested_fields",
        "withholds_sensitive_service_details",
    }, printed


class _Uncapped:
    """Identifier matches, then every candidate the search finds, however many."""

    def __init__(self, records: list[ConnectorRecord]) -> None:
        self._records = FileBackend(records)
        self._candidates = CandidateIndex(records)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        found = await self._records.lookup(request.model_copy(update={"demographics": None}))
        if request.demographics is not None:
            found += self._candidates.search(request.demographics, limit=1_000)
        return found


def test_a_connector_that_ignores_the_cap_fails_only_the_cap_check(tmp_path, dataset):
    report, printed = _kit(tmp_path, "education", _sdk(dataset, _Uncapped))

    assert _failed(report) == {"caps_candidates"}
    assert f"returned {DEFAULT_LIMIT + 5} candidates" in printed


class _FlagDropping:
    def __init__(self, records: list[ConnectorRecord]) -> None:
        self._records = FileBackend(records)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        records = await self._records.lookup(request)
        return [record.model_copy(update={"flags": RecordFlags()}) for record in records]


@pytest.mark.parametrize(
    ("agency", "check"),
    [("social_care", "carries_shielding_flag"), ("health", "carries_restriction_flag")],
)
def test_a_connector_that_drops_flags_fails_the_flag_check(tmp_path, dataset, agency, check):
    report, printed = _kit(tmp_path, agency, _sdk(dataset, _FlagDropping))

    assert _failed(report) == {check}, printed


class _ExactMatching:
    """Identifier matches, and candidates agreeing exactly on two details: no slip forgiven."""

    def __init__(self, records: list[ConnectorRecord]) -> None:
        self._records = FileBackend(records)
        self._all = records

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        found = await self._records.lookup(request.model_copy(update={"demographics": None}))
        wanted = request.demographics
        if wanted is None:
            return found
        for record in self._all:
            assert record.name is not None
            assert record.address is not None
            agreements = (
                wanted.given == record.name.given,
                wanted.family == record.name.family,
                wanted.date_of_birth == record.date_of_birth,
                wanted.postcode == record.address.postcode,
            )
            if sum(agreements) >= 2 and record not in found:
                found.append(record)
        return found[:DEFAULT_LIMIT]


def test_a_connector_that_matches_names_exactly_fails_the_slip_check(tmp_path, dataset):
    report, printed = _kit(tmp_path, "social_care", _sdk(dataset, _ExactMatching))

    assert _failed(report) == {"finds_despite_slip"}, printed


class _NotFoundIsAnError:
    def __init__(self, records: list[ConnectorRecord]) -> None:
        self._records = FileBackend(records)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        records = await self._records.lookup(request)
        if not records:
            raise ConnectorError(ErrorCode.BAD_REQUEST, "No such child.")
        return records


def test_a_connector_that_refuses_an_unknown_identifier_fails_the_empty_answer_check(
    tmp_path, dataset
):
    report, printed = _kit(tmp_path, "health", _sdk(dataset, _NotFoundIsAnError))

    assert _failed(report) == {"unknown_identifier_is_empty"}
    assert "expected an answer, got HTTP 400 BAD_REQUEST" in printed


class _StatusRewriting:
    """Sends a 504 (DEADLINE_EXCEEDED) as a 500, body and signature untouched."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def rewriting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 504:
                message = message | {"status": 500}
            await send(message)

        await self._app(scope, receive, rewriting)


def test_a_connector_sending_the_wrong_status_for_an_error_fails_the_mapping_checks(
    tmp_path, dataset
):
    def build(agency: str, verifier: RequestVerifier | None, signer: AnswerSigner | None):
        return _StatusRewriting(_reference(dataset)(agency, verifier, signer))

    report, printed = _kit(tmp_path, "health", build)

    assert _failed(report) == {"refuses_passed_deadline", "maps_failures_to_error_codes"}
    assert "DEADLINE_EXCEEDED was sent with HTTP 500, not 504" in printed


def test_a_slow_connector_fails_only_the_timing_check(tmp_path, dataset):
    report, printed = _kit(
        tmp_path, "education", _reference(dataset, latency_ms=60), max_ms=30, lookups=5
    )

    assert _failed(report) == {"answers_within_time"}
    assert "over 5 lookups, above 30 ms" in printed


class _DrippingFirstAnswer:
    """The connector, but its first lookup is answered a byte every 0.2 s for up to 30 s: each
    read within any per-read timeout, the whole never."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._dripped = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOOKUP_PATH or self._dripped:
            await self._app(scope, receive, send)
            return
        self._dripped = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(150):
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})


def test_a_connector_dripping_its_answer_fails_that_check_and_the_run_goes_on(tmp_path, dataset):
    """Bounded per exchange, not per read: the kit had waited as long as the connector dripped."""
    reference = _reference(dataset)

    def build(agency: str, verifier: RequestVerifier | None, signer: AnswerSigner | None):
        return _DrippingFirstAnswer(reference(agency, verifier, signer))

    started = time.monotonic()
    report, printed = _kit(tmp_path, "education", build, timeout_s=1.0)
    took_s = time.monotonic() - started

    first = next(line for line in printed.splitlines() if "FAIL" in line)
    assert "no answer from the connector (ReadTimeout" in first
    assert len(_failed(report)) == 1
    assert took_s < 20  # the drip alone lasts 30 s


def test_an_unreachable_connector_fails_rather_than_crashing(tmp_path):
    report = run_conformance(
        ConformanceOptions(
            url=f"http://127.0.0.1:{free_port()}",
            agency="health",
            key_file=tmp_path / "kit-key.pem",
            jwks_port=None,
        ),
        None,
    )

    assert report.named(Outcome.PASS) == set()
    assert report.exit_code == 1


# --- the dataset and the kit's key ---------------------------------------------------------------


def _all_records() -> Iterator[tuple[str, ConnectorRecord]]:
    for agency in REFERENCE_AGENCIES:
        for record in conformance_records(agency):
            yield agency, record


def test_dataset_identifiers_are_synthetic_valid_and_unique_per_agency():
    for agency in REFERENCE_AGENCIES:
        records = conformance_records(agency)
        nhs = [r.identifiers.nhs_number for r in records if r.identifiers.nhs_number]
        upns = [r.identifiers.upn for r in records if r.identifiers.upn]
        assert len(set(nhs)) == len(nhs)
        assert len(set(upns)) == len(upns)
        assert nhs or upns
        for number in nhs:
            assert number.startswith("999")
            assert nhs_check_digit(number[:9]) == int(number[9])
        for upn in upns:
            assert upn_check_letter(upn[1:]) == upn[0]


def test_dataset_records_hold_only_what_their_agency_provides():
    for agency, record in _all_records():
        assert minimise(record, REFERENCE_AGENCIES[agency].provides) == record


def test_dataset_crowd_outnumbers_the_cap_and_all_agree_with_the_crowd_search():
    crowd = conformance_dataset("health").crowd
    index = CandidateIndex(list(crowd))

    assert len(crowd) > DEFAULT_LIMIT
    assert len(index.search(CROWD_SEARCH, limit=100)) == len(crowd)


def test_dataset_flags_follow_the_agency_and_can_be_overridden():
    social_care = conformance_dataset("social_care")
    overridden = conformance_dataset("education", flags=[Flag.SHIELDED, Flag.RESTRICTED])

    assert social_care.shielded.flags.shielded
    assert not social_care.restricted.flags.restricted
    assert overridden.shielded.flags.shielded
    assert overridden.restricted.flags.restricted
    assert not any(r.flags.shielded or r.flags.restricted for r in social_care.crowd)


def test_an_agency_outside_the_profiles_must_name_its_fields():
    with pytest.raises(ValueError, match="say which fields it provides"):
        conformance_records("youth_justice")

    records = conformance_records("youth_justice", fields=[FieldId.NAME, FieldId.DATE_OF_BIRTH])
    assert all(r.address is None and r.name is not None for r in records)


def test_the_kits_key_is_created_once_and_kept(tmp_path):
    key_file = tmp_path / "kit.pem"
    first = KitIdentity.from_key_file(key_file, ISSUER).jwks()
    public_key_path(key_file).unlink()

    again = KitIdentity.from_key_file(key_file, ISSUER).jwks()

    assert again == first
    assert public_key_path(key_file).exists()


def _signer() -> AnswerSigner:
    return AnswerSigner(ec.generate_private_key(ec.SECP256R1()))
