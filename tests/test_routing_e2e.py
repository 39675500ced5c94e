"""National routing end to end, on loopback: the two identity sources asked on every lookup, a
shared server hosting agencies asked only when routed (two local authorities, two GP practices,
two schools), the real locator on SQLite, and the gateway.

Amelia moved from Manchester (E0800002) to Leeds (E0800001) and changed school: her old authority
and her old school still hold records that only the locator can point to; her new authority,
practice and school are where her identity records lead. Ben's registered practice holds no record
of him yet: asking it is an ask in vain, and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.agencies import AgencyHoldings, agencies_app, hosted_agencies, locator_publication
from connectors.locator import (
    DEFAULT_LOCATOR_ID,
    LOCATE_PATH,
    PseudonymKey,
    load_pseudonym_keys,
    new_pseudonym_key,
    pseudonym,
    write_pseudonym_keys,
)
from connectors.protocol import (
    Address,
    Contact,
    FieldId,
    GpPractice,
    Identifiers,
    Indicators,
    Involvement,
    PersonName,
    RecordFlags,
    School,
)
from connectors.serving import BackgroundServer, bind_socket, free_port, socket_url
from connectors.trust import JWKS_PATH, SIGNATURE_HEADER, AnswerSigner
from gateway.config import Asked, ClientTls, ServerTls, SourceConfig
from gateway.demo import reference_source
from gateway.tls import client_context, server_context
from locator.app import app_from_settings
from locator.settings import Settings as LocatorSettings
from tests.factories import health_record, school_record, social_care_record
from tests.stack import Stack, reference_apps, running_gateway, serving
from tests.test_mtls import SERVER, Authority

AMELIA_NHS = "9434765919"
AMELIA_UPN = "H801200001001"
BEN_NHS = "9000000009"
DISTRICTS = {"LS6": "E0800001", "M1": "E0800002"}

LOOKUP = """
query Lookup($identify: ChildIdentity!) {
  child(identify: $identify, purpose: SAFEGUARDING_ENQUIRY) {
    outcome complete auditId
    child {
      address { postcode }
      involvements { organisation practitioner { name } provenance { source } }
    }
    sources { source status failureCode recordsMatched askedWith askedBecause }
    withheld { field reason }
  }
}
"""

SOCIAL_CARE = (
    FieldId.NAME,
    FieldId.DATE_OF_BIRTH,
    FieldId.CARERS,
    FieldId.INVOLVEMENTS,
    FieldId.CHILD_PROTECTION_PLAN,
    FieldId.CHILD_IN_NEED,
)
PRACTICE = (FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.GP_PRACTICE, FieldId.INVOLVEMENTS)
SCHOOL = (FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SCHOOL, FieldId.INVOLVEMENTS)
KINDS = {"social_care": SOCIAL_CARE, "gp_practice": PRACTICE, "school": SCHOOL}


def _involvement(organisation: str, name: str, role: str) -> Involvement:
    return Involvement(
        service=role,
        organisation=organisation,
        practitioner=Contact(name=name, role=role, phone="07700 900100"),
    )


def _identity_records() -> dict[str, list[Any]]:
    amelia_health = health_record(
        AMELIA_NHS,
        address=Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
        gp_practice=GpPractice(ods_code="Y00001", name="Leeds Surgery"),
        involvements=None,
    )
    ben_health = health_record(
        BEN_NHS,
        record_id="H2",
        name=PersonName(given="Ben", family="Stone"),
        date_of_birth=date(2018, 6, 1),
        address=Address(lines=["9 Other Road", "Leeds"], postcode="LS6 3CD"),
        gp_practice=GpPractice(ods_code="Y00002", name="Other Surgery"),
        involvements=None,
    )
    amelia_pupil = school_record(
        AMELIA_NHS,
        identifiers=Identifiers(nhs_number=AMELIA_NHS, upn=AMELIA_UPN),
        name=PersonName(given="Amelia", family="Hart"),
        school=School(urn="100001", name="Leeds Primary"),
    )
    return {"health": [amelia_health, ben_health], "education": [amelia_pupil]}


def _agencies() -> list[AgencyHoldings]:
    closed_case = social_care_record(
        AMELIA_NHS,
        record_id="MCR-1",
        involvements=[_involvement("Manchester City Council", "Max Former", "social worker")],
        indicators=Indicators(child_in_need=False),
    )
    open_case = social_care_record(
        AMELIA_NHS,
        involvements=[_involvement("Leeds City Council", "Sam Social", "social worker")],
    )
    patient = health_record(
        AMELIA_NHS,
        record_id="GP-1",
        involvements=[_involvement("Leeds Surgery", "Dr Gee", "GP")],
    )
    pupil = school_record(
        AMELIA_NHS,
        identifiers=Identifiers(nhs_number=AMELIA_NHS, upn=AMELIA_UPN),
        involvements=[_involvement("Leeds Primary", "Dee Lead", "designated safeguarding lead")],
    )
    former_pupil = school_record(  # a file kept by UPN alone: only the locator leads here
        None,
        record_id="OLD-1",
        identifiers=Identifiers(upn=AMELIA_UPN),
        involvements=[
            _involvement("Manchester Primary", "Ola Dsl", "designated safeguarding lead")
        ],
    )
    held = {
        ("la_e0800001", "social_care"): [open_case],
        ("la_e0800002", "social_care"): [closed_case],
        ("gp_y00001", "gp_practice"): [patient],
        ("gp_y00002", "gp_practice"): [],  # Ben has registered; his record has not arrived
        ("school_100001", "school"): [pupil],
        ("school_100002", "school"): [former_pupil],
    }
    return [
        AgencyHoldings(name, kind, tuple(records), KINDS[kind])
        for (name, kind), records in held.items()
    ]


ROUTES = {
    "la_e0800001": ("la:E0800001",),
    "la_e0800002": ("la:E0800002",),
    "gp_y00001": ("ods:Y00001",),
    "gp_y00002": ("ods:Y00002",),
    "school_100001": ("urn:100001",),
    "school_100002": ("urn:100002",),
}


class Recorded:
    """An app, with the body of every request it received kept as it arrived."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.requests: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]

        async def recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.requests.append((path, message.get("body", b"")))
            return message

        await self._app(scope, recorded, send)


@contextlib.contextmanager
def national(
    tmp: Path,
    *,
    locator_up: bool = True,
    federation: Authority | None = None,
    identity: dict[str, list[Any]] | None = None,
    gateway_keys: Sequence[PseudonymKey] | None = None,
    answers: Callable[[ASGIApp, AnswerSigner], ASGIApp] | None = None,
    **gateway_settings: Any,
) -> Iterator[tuple[Stack, Recorded]]:
    """The national stack; with `federation`, the locator serves https with a certificate from
    that CA, which the gateway and the publishers trust; `identity`, the identity sources'
    records (else `_identity_records()`); `gateway_keys`, the pseudonym keys the gateway holds
    (else the publishers'); `answers`, what the locator's app becomes, given its answer signer
    (a locator misbehaving with its own key)."""
    keys_file = tmp / "pseudonym-keys.json"
    keys = [new_pseudonym_key("k1")]
    write_pseudonym_keys(keys_file, keys)
    gateway_keys_file = keys_file
    if gateway_keys is not None:
        gateway_keys_file = tmp / "gateway-pseudonym-keys.json"
        write_pseudonym_keys(gateway_keys_file, list(gateway_keys))
    gateway_sock = bind_socket("127.0.0.1", 0)
    gateway_jwks = socket_url(gateway_sock) + JWKS_PATH
    hosted = hosted_agencies(_agencies())
    with contextlib.ExitStack() as stack:
        shared = stack.enter_context(BackgroundServer(agencies_app(hosted, None))).url
        agencies_file = tmp / "locator-agencies.json"
        agencies_file.write_text(
            json.dumps(
                {
                    "agencies": [
                        {"name": a.name, "jwks_url": f"{shared}/{a.name}{JWKS_PATH}"}
                        for a in hosted
                    ]
                }
            )
        )
        locator_settings = LocatorSettings(
            state_dir=tmp / "locator",
            agencies_file=agencies_file,
            gateway_jwks_urls=[gateway_jwks],
        )
        served: ASGIApp = app_from_settings(locator_settings)
        if answers is not None:
            served = answers(served, AnswerSigner.from_pem_file(locator_settings.answer_key_file))
        locator = Recorded(served)
        locator_tls = trusted = None
        if federation is not None:
            certified = federation.issue("locator", SERVER)
            locator_tls = server_context(
                ServerTls(cert_file=certified.cert, key_file=certified.key)
            )
            trusted = ClientTls(ca_file=federation.ca_file)
        locator_url = stack.enter_context(BackgroundServer(locator, tls=locator_tls)).url
        publication = locator_publication(
            hosted,
            locator_url=locator_url,
            pseudonym_keys=keys,
            tls=None if trusted is None else client_context(trusted),
        )
        asyncio.run(publication.round())
        assert publication.status()["failing"] == 0
        records = _identity_records() if identity is None else identity
        identity_urls = stack.enter_context(serving(reference_apps(tmp, records)))
        sources = [reference_source(name, url) for name, url in identity_urls.items()]
        sources += [
            SourceConfig(
                name=agency.name,
                url=f"{shared}/{agency.name}",
                provides=agency.provides,
                kind=agency.kind,
                asked=Asked.WHEN_ROUTED,
                routes=ROUTES[agency.name],
                shield_authority=agency.kind == "social_care",
                answer_jwks_url=f"{shared}/{agency.name}{JWKS_PATH}",
            )
            for agency in _agencies()
        ]
        url = locator_url if locator_up else f"http://127.0.0.1:{free_port()}"
        gateway = stack.enter_context(
            running_gateway(
                tmp,
                sources,
                gateway_sock,
                locator_url=url,
                pseudonym_keys_file=gateway_keys_file,
                postcode_districts=DISTRICTS,
                **({} if trusted is None else {"connector_tls": trusted}),
                **gateway_settings,
            )
        )
        yield gateway, locator


def _lookup(stack: Stack, identify: dict[str, Any]) -> dict[str, Any]:
    response = stack.post(
        {"query": LOOKUP, "variables": {"identify": identify}}, stack.token("social_worker")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    child: dict[str, Any] = body["data"]["child"]
    # Who was asked, as the audit names them: the caller may be shown routed agencies by kind.
    audited = stack.audited(child["auditId"])["sources"] if child.get("auditId") else []
    child["_asked"] = {s["source"]: s for s in audited}
    return child


def _sources(child: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["source"]: s for s in child["sources"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Recorded]]:
    with national(tmp_path_factory.mktemp("national")) as running:
        yield running


def test_a_child_who_moved_authority_is_found_through_the_locator(stack):
    gateway, _ = stack
    child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    sources = _sources(child)
    assert child["outcome"] == "FOUND"
    assert child["complete"] is True
    assert sources["locator"]["status"] == "ANSWERED"
    assert sources["la_e0800002"]["askedBecause"] == ["LOCATED"]
    assert sources["la_e0800002"]["recordsMatched"] == 1
    assert set(sources["la_e0800001"]["askedBecause"]) == {"LOCATED", "ROUTED_BY_ADDRESS"}
    assert set(sources["gp_y00001"]["askedBecause"]) == {"LOCATED", "ROUTED_BY_GP"}
    assert set(sources["school_100001"]["askedBecause"]) == {"LOCATED", "ROUTED_BY_SCHOOL"}
    # The old school keeps its file under the UPN alone, and is asked with it.
    assert sources["school_100002"]["askedWith"] == ["UPN"]
    assert sources["school_100002"]["recordsMatched"] == 1
    assert "gp_y00002" not in sources  # neither located nor routed: never asked
    practitioners = {i["practitioner"]["name"] for i in child["child"]["involvements"]}
    assert {"Max Former", "Sam Social", "Dr Gee", "Dee Lead", "Ola Dsl"} <= practitioners
    # The audit record says why each was asked, as the answer does.
    audited = gateway.audited(child["auditId"])
    assert {s["source"]: s["asked_because"] for s in audited["sources"]} == {
        name: source["askedBecause"] for name, source in sources.items()
    }


@pytest.mark.parametrize(
    "identify",
    [
        {"upn": AMELIA_UPN},
        {
            "demographics": {
                "givenName": "Amelia",
                "familyName": "Hart",
                "dateOfBirth": "2019-03-04",
                "postcode": "LS6 2AB",
            }
        },
    ],
    ids=["upn", "demographics"],
)
def test_a_lookup_by_upn_or_demographics_reaches_the_same_agencies(stack, identify):
    gateway, _ = stack
    by_nhs = _sources(_lookup(gateway, {"nhsNumber": AMELIA_NHS}))
    child = _lookup(gateway, identify)

    sources = _sources(child)
    assert child["outcome"] == "FOUND"
    assert child["complete"] is True
    matched = {name for name, s in sources.items() if s["recordsMatched"]}
    assert matched == {name for name, s in by_nhs.items() if s["recordsMatched"]}
    assert "la_e0800002" in matched


def test_an_agency_asked_for_a_child_it_does_not_hold_is_counted(stack):
    gateway, _ = stack
    labels = {"kind": "gp_practice", "reason": "ROUTED_BY_GP", "outcome": "not_held"}
    before = REGISTRY.get_sample_value("childlookup_routed_asks_total", labels) or 0.0

    child = _lookup(gateway, {"nhsNumber": BEN_NHS})

    sources = _sources(child)
    assert sources["gp_y00002"]["status"] == "NO_RECORD"
    assert sources["gp_y00002"]["askedBecause"] == ["ROUTED_BY_GP"]
    assert sources["locator"]["status"] == "NO_RECORD"  # nobody published Ben
    assert REGISTRY.get_sample_value("childlookup_routed_asks_total", labels) == before + 1


def test_the_locator_is_asked_with_pseudonyms_only(stack):
    gateway, locator = stack
    _lookup(gateway, {"upn": AMELIA_UPN})

    asked = [body for path, body in locator.requests if path == LOCATE_PATH]
    assert asked
    for body in asked:
        text = body.decode()
        request = json.loads(text)
        assert set(request) == {"protocol_version", "request_id", "pseudonyms"}
        # Each pseudonym is a keyed digest of 43 base64url characters, which no identifier is...
        values = [p["value"] for p in request["pseudonyms"]]
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", value) for value in values)
        # ...and nothing else in the request holds personal data. (The digests are left out of
        # that search: random-looking, one held "ls6" by chance in a CI run.)
        for value in values:
            text = text.replace(value, "")
        for personal in (AMELIA_NHS, AMELIA_UPN, "Amelia", "Hart", "2019-03-04", "LS6"):
            assert personal.lower() not in text.lower()


def test_a_locator_certified_by_the_federations_ca_is_asked_and_its_answers_trusted(tmp_path):
    """Reached over CHILDLOOKUP_CONNECTOR_TLS like any party, its answer keys fetched the same
    way: the public CAs would refuse its certificate, and every answer with it."""
    with national(tmp_path, federation=Authority(tmp_path, "federation")) as (gateway, locator):
        child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    sources = _sources(child)
    assert gateway.url.startswith("http://")  # only the locator is https here
    assert sources["locator"]["status"] == "ANSWERED"
    assert sources["la_e0800002"]["askedBecause"] == ["LOCATED"]
    assert any(path == LOCATE_PATH for path, _ in locator.requests)


def test_a_down_locator_makes_the_answer_incomplete(tmp_path):
    with national(tmp_path, locator_up=False) as (gateway, _):
        child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    sources = _sources(child)
    assert sources["locator"]["status"] == "FAILED"
    assert sources["locator"]["failureCode"] == "CONNECTION_FAILED"
    assert child["complete"] is False
    # The routes still lead to the authority of her home, not to the one she left.
    assert child["_asked"]["la_e0800001"]["asked_because"] == ["ROUTED_BY_ADDRESS"]
    assert "la_e0800002" not in child["_asked"]
    # A local authority only the locator knows of may shield her: where she lives is withheld,
    # and so are the names of the agencies asked because of where she is.
    assert child["child"]["address"] is None
    assert any(w["field"] == "address" for w in child["withheld"])
    assert "la_e0800001" not in sources
    assert "social_care" in sources


def _located_nowhere_else(child: dict[str, Any]) -> None:
    """The answer of a lookup whose locator was not followed: incomplete, the routes still asked
    (the authority of her home), the authority she left - found only through the locator - not,
    and where she lives withheld (that authority might shield her)."""
    asked = child["_asked"]
    assert child["complete"] is False
    assert asked["la_e0800001"]["asked_because"] == ["ROUTED_BY_ADDRESS"]
    assert "la_e0800002" not in asked
    assert "school_100002" not in asked
    assert child["child"]["address"] is None
    # Where she lives withheld, the agencies asked because of it are shown by kind alone.
    assert not {"la_e0800001", "gp_y00001", "school_100001"} & set(_sources(child))


def test_a_locator_naming_more_agencies_than_a_lookup_follows_is_not_followed(tmp_path):
    """Five agencies hold Amelia; with a lookup following at most two, none of them is asked
    because the locator named it: a broken or hostile locator naming hundreds would otherwise
    have her identifiers sent to every one."""
    with national(tmp_path, locator_agencies_max=2) as (gateway, _):
        child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    locator = _sources(child)["locator"]
    assert (locator["status"], locator["failureCode"]) == ("FAILED", "TOO_MANY_AGENCIES")
    _located_nowhere_else(child)


def test_a_gateway_asking_under_a_key_no_one_publishes_under_is_refused_not_told_nobody(
    tmp_path,
):
    """A gateway whose pseudonym key the locator does not search (a rotation step missed) hears
    a refusal, not "nobody holds her", which would have called the lookup complete."""
    with national(tmp_path, gateway_keys=[new_pseudonym_key("k9")]) as (gateway, _):
        child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    locator = _sources(child)["locator"]
    assert (locator["status"], locator["failureCode"]) == ("FAILED", "BAD_REQUEST")
    _located_nowhere_else(child)


@pytest.mark.parametrize(
    ("health_holds_ben", "health_says"),
    [(True, ("FAILED", "RECORD_MISMATCH")), (False, ("NO_RECORD", None))],
    ids=["health sends Ben's record", "health has no record"],
)
def test_an_nhs_number_no_source_confirms_is_not_located(tmp_path, health_holds_ben, health_says):
    """The census holds Ben's NHS number on Amelia's record, found by her UPN. Asked with it,
    health sends Ben's record (born on another day: RECORD_MISMATCH) or has none: nothing
    confirms the number is hers, so the locator is asked about her UPN alone, never about Ben,
    whose authority and practice would otherwise be told of an enquiry about him."""
    census = school_record(
        BEN_NHS,
        identifiers=Identifiers(nhs_number=BEN_NHS, upn=AMELIA_UPN),
        name=PersonName(given="Amelia", family="Hart"),
        school=School(urn="100001", name="Leeds Primary"),
    )
    identity = {**_identity_records(), "education": [census]}
    if not health_holds_ben:
        identity["health"] = [r for r in identity["health"] if r.identifiers.nhs_number != BEN_NHS]
    with national(tmp_path, identity=identity) as (gateway, locator):
        child = _lookup(gateway, {"upn": AMELIA_UPN})
        (key,) = load_pseudonym_keys(tmp_path / "pseudonym-keys.json")

    sources = _sources(child)
    assert (sources["health"]["status"], sources["health"]["failureCode"]) == health_says
    asked = [json.loads(body) for path, body in locator.requests if path == LOCATE_PATH]
    pseudonyms = {p["value"] for request in asked for p in request["pseudonyms"]}
    assert pseudonym(key, "upn", AMELIA_UPN) in pseudonyms
    assert pseudonym(key, "nhs_number", BEN_NHS) not in pseudonyms
    # Health sending another child's record cannot say whether she is restricted: her location
    # is withheld, and the agencies asked only when routed are shown by their kind.
    school = "school" if health_holds_ben else "school_100002"
    assert sources[school]["askedWith"] == ["UPN"]  # her old school, by her UPN
    assert child["complete"] is False  # her school's own record contradicts the census


def test_a_search_finding_a_child_by_no_confirmed_identifier_is_hidden_as_shielding_is_unknown(
    tmp_path,
):
    """Found by demographics in the school census alone (health has no record of her): the
    numbers the census record carries are not confirmed, so the locator cannot be asked, and an
    authority only it would name may shield her. The search is then answered as shield-safe
    search answers one that may find a shielded child: as if nobody were found. A locator left
    out of the answers had read as one with nothing to say - her address released."""
    census = school_record(
        AMELIA_NHS,
        identifiers=Identifiers(nhs_number=AMELIA_NHS, upn=AMELIA_UPN),
        name=PersonName(given="Amelia", family="Hart"),
        school=School(urn="100001", name="Leeds Primary"),
        address=Address(lines=["1 Test Street", "Leeds"], postcode="LS6 2AB"),
    )
    identity = {
        "health": [r for r in _identity_records()["health"] if r.identifiers.nhs_number == BEN_NHS],
        "education": [census],
    }
    demographics = {
        "givenName": "Amelia",
        "familyName": "Hart",
        "dateOfBirth": "2019-03-04",
        "postcode": "LS6 2AB",
    }
    with national(tmp_path, identity=identity) as (gateway, locator):
        child = _lookup(gateway, {"demographics": demographics})

    assert child["outcome"] == "NOT_FOUND"
    assert child["child"] is None
    assert not [body for path, body in locator.requests if path == LOCATE_PATH]


NAMED = """
query($nhs: String!) {
  child(identify: {nhsNumber: $nhs}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome auditId
    child { address { postcode } name { provenance { source } } }
    sources { source } records { source } withheld { source }
  }
}
"""


def test_a_shielded_childs_practice_school_and_authority_are_named_nowhere_in_the_answer(
    tmp_path, monkeypatch
):
    """Her location withheld, the agencies asked because of where she is - her practice, her
    school, her authority, each named with its code - are shown by kind: their names had said
    what the withheld fields hide. The audit keeps them."""
    held = _agencies()

    def shielding() -> list[AgencyHoldings]:
        return [
            AgencyHoldings(
                a.name,
                a.kind,
                tuple(
                    r.model_copy(update={"flags": RecordFlags(shielded=True)})
                    if a.name == "la_e0800002"
                    else r
                    for r in a.records
                ),
                a.provides,
            )
            for a in held
        ]

    monkeypatch.setattr(sys.modules[__name__], "_agencies", shielding)
    with national(tmp_path) as (gateway, _):
        answer = gateway.post(
            {"query": NAMED, "variables": {"nhs": AMELIA_NHS}}, gateway.token("social_worker")
        ).json()["data"]["child"]
        audited = {s["source"] for s in gateway.audited(answer["auditId"])["sources"]}

    shown = (
        {s["source"] for s in answer["sources"]}
        | {r["source"] for r in answer["records"]}
        | {w["source"] for w in answer["withheld"]}
        | {answer["child"]["name"]["provenance"]["source"]}
    )
    agencies = {a.name for a in held}
    assert answer["outcome"] == "FOUND"
    assert answer["child"]["address"] is None
    assert not shown & agencies
    assert {"social_care", "gp_practice", "school"} <= shown
    assert {"la_e0800002", "gp_y00001", "school_100001"} <= audited


NEAR_MISS = """
query($d: DemographicsInput!) {
  child(identify: {demographics: $d}, purpose: SAFEGUARDING_ENQUIRY) {
    outcome sources { source recordsPossible }
  }
}
"""


def test_a_national_search_that_only_came_near_a_child_shows_no_possible_records(tmp_path):
    """Linking no one, the search never reaches the locator, nor the authorities that may shield
    the child: a count of possible records, at the right postcode only, would show where a
    shielded child lives. It is answered as a search that found nobody."""
    near = {
        "givenName": "Amelia",
        "familyName": "Harte",
        "dateOfBirth": "2018-03-04",
        "postcode": "LS6 2AB",
    }
    with national(tmp_path) as (gateway, _):
        answer = gateway.post(
            {"query": NEAR_MISS, "variables": {"d": near}}, gateway.token("social_worker")
        ).json()["data"]["child"]

    assert answer["outcome"] == "NOT_FOUND"
    assert {s["source"]: s["recordsPossible"] for s in answer["sources"]} == {
        "health": 0,
        "education": 0,
    }


class _AnsweringAnotherQuestion:
    """The locator, its located answers rewritten to name holders under a key version nobody
    asked about, and signed again with its own key: a locator answering some other question."""

    def __init__(self, app: ASGIApp, signer: AnswerSigner) -> None:
        self._app = app
        self._signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LOCATE_PATH:
            await self._app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self._app(scope, receive, hold)
        start, *bodies = held
        answer = json.loads(b"".join(m.get("body", b"") for m in bodies))
        for holder in answer.get("holders", []):
            holder["key_version"] = "k0"
        body = json.dumps(answer).encode()
        headers = [
            (name, value)
            for name, value in start["headers"]
            if name.lower() not in (b"content-length", SIGNATURE_HEADER.encode())
        ]
        signature = self._signer.sign(body, source=DEFAULT_LOCATOR_ID)
        headers += [
            (b"content-length", str(len(body)).encode()),
            (SIGNATURE_HEADER.encode(), signature.encode()),
        ]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def test_a_locator_answer_about_pseudonyms_not_asked_is_malformed_not_nobody(tmp_path):
    """Answering about holders under a key version the gateway did not ask under, the locator
    did not answer the gateway's question: "nobody holds her" would be a guess."""
    with national(tmp_path, answers=_AnsweringAnotherQuestion) as (gateway, _):
        child = _lookup(gateway, {"nhsNumber": AMELIA_NHS})

    locator = _sources(child)["locator"]
    assert (locator["status"], locator["failureCode"]) == ("FAILED", "MALFORMED_RESPONSE")
    _located_nowhere_else(child)
