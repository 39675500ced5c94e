"""What the latest fixes broke: SDK answers built from database rows refused by strict checks,
and a practitioner unable to sign back in after a sign-out with a provider leaving out auth_time.

Each test drives real components (a real connector app over a real socket), as the existing tests
of the same modules do.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.app import create_connector_app
from connectors.protocol import (
    LOOKUP_PATH,
    Caller,
    ConnectorRecord,
    FieldId,
    Identifiers,
    LookupRequest,
    LookupResponse,
    PersonName,
    RecordFlags,
    Sex,
)
from connectors.serving import BackgroundServer

NHS_NUMBER = "9434765919"
FORMER_UPN = "A123456789012"


@dataclass
class RowBackend:
    """An agency's backend written as the SDK's own docstring allows: records built fast from
    database rows with `model_construct`. SQLite gives a DATE column back as ISO text, an enum
    column as its plain string, and a backend naturally collects former UPNs in a list."""

    db: sqlite3.Connection
    requests: list[LookupRequest] = field(default_factory=list)

    async def lookup(self, request: LookupRequest) -> list[ConnectorRecord]:
        self.requests.append(request)
        rows = self.db.execute(
            "SELECT id, nhs, given, family, dob, sex, former, as_of FROM child WHERE nhs = ?",
            (request.identifiers.nhs_number,),
        ).fetchall()
        return [
            ConnectorRecord.model_construct(
                record_id=row[0],
                identifiers=Identifiers.model_construct(
                    nhs_number=row[1], upn=None, local_id=None, former_upns=[row[6]]
                ),
                name=PersonName(given=row[2], family=row[3]),
                date_of_birth=row[4],
                sex=row[5],
                flags=RecordFlags(),
                as_of=row[7],
            )
            for row in rows
        ]


@pytest.fixture(scope="module")
def row_connector() -> Iterator[httpx.Client]:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute(
        "CREATE TABLE child (id TEXT, nhs TEXT, given TEXT, family TEXT, dob DATE, sex TEXT,"
        " former TEXT, as_of TIMESTAMP)"
    )
    db.execute(
        "INSERT INTO child VALUES ('LA-7', ?, 'Amelia', 'Hart', '2015-03-02', 'female', ?,"
        " '2025-07-01T09:00:00+00:00')",
        (NHS_NUMBER, FORMER_UPN),
    )
    app = create_connector_app(RowBackend(db), source="social_care")
    with BackgroundServer(app) as running, httpx.Client(base_url=running.url, timeout=10) as client:
        yield client


def _body(fields: list[FieldId]) -> dict[str, Any]:
    return LookupRequest(
        request_id="req-second-look",
        deadline=datetime.now(UTC) + timedelta(seconds=5),
        purpose="SAFEGUARDING_ENQUIRY",
        caller=Caller(role="health_visitor", organisation="RX1"),
        identifiers=Identifiers(nhs_number=NHS_NUMBER),
        fields=fields,
    ).model_dump(mode="json")


def test_sdk_strict_serialisation_still_answers_records_built_from_database_rows(row_connector):
    """fd80dd5 serialises answers with warnings="error" to stop a dict's extra members leaving.
    But a record built from a row (model_construct, as connectors/app.py's own docstring says a
    backend may) with the row's ISO date text, the sex as its plain string and former UPNs in a
    list - values the protocol's JSON writes exactly as it would the typed ones, and which were
    answered before the fix - now fails the whole source INTERNAL: a legitimate connector that
    worked yesterday goes dark for every lookup."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be quoted into a warning either
        response = row_connector.post(
            LOOKUP_PATH, json=_body([FieldId.NAME, FieldId.DATE_OF_BIRTH, FieldId.SEX])
        )

    assert response.status_code == 200, response.text
    answer = LookupResponse.model_validate_json(response.content)
    (record,) = answer.records
    assert record.date_of_birth is not None
    assert record.date_of_birth.isoformat() == "2015-03-02"
    assert record.sex is Sex.FEMALE
    assert record.identifiers.former_upns == (FORMER_UPN,)
    assert record.as_of == datetime(2025, 7, 1, 9, tzinfo=UTC)


# --- the portal's sign-in after a sign-out (6254e33) ---------------------------------------------

from tests.browser.conftest import CHROMIUM, _unavailable, new_page, page  # noqa: E402, F401
from tests.factories import health_record, social_care_record  # noqa: E402
from tests.oidc_provider import production_portal  # noqa: E402
from tests.stack import reference_connectors  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    """tests/browser's Chromium, but this module's own: that one is package-scoped to
    tests/browser, and two at once in one session trip Playwright's sync API."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


SAM = "#signed-in-as:has-text('Sam Social Worker')"
ALEX = "#signed-in-as:has-text('Alex Auditor')"
LOGIN_FORM = "button[value=auditor]"


def sam_signed_in_and_out(tab: Any, portal_url: str) -> None:
    """Sam, a social worker, signs in at the portal and signs out again, as the next person at
    the tab then finds it."""
    tab.goto(portal_url)
    tab.click("#oidc-sign-in-button")
    tab.click("button[value=social_worker]")
    tab.wait_for_selector(SAM)
    tab.click("#sign-out")
    tab.wait_for_selector("#notice:has-text('You are signed out')")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    records = {"health": [health_record()], "social_care": [social_care_record()]}
    with reference_connectors(tmp_path_factory.mktemp("second-look"), records) as configured:
        yield configured


@pytest.fixture
def provider_without_auth_time(browser, tmp_path, sources, production_settings):
    """The test provider, keeping its sign-in session in the browser and honouring
    prompt=login, whose ID tokens carry no `auth_time` - an optional claim some providers leave
    out unless configured (Microsoft Entra ID lists it among its optional claims)."""
    with production_portal(tmp_path, sources, production_settings(tmp_path)) as running:
        provider, _ = running
        provider.keeps_sign_in = True
        tokens = provider._tokens

        def without_auth_time(grant: Any) -> dict[str, Any]:
            import jwt as pyjwt

            answer = tokens(grant)
            claims = pyjwt.decode(answer["id_token"], options={"verify_signature": False})
            del claims["auth_time"]
            return answer | {"id_token": provider.sign(claims)}

        provider._tokens = without_auth_time
        yield running


def test_after_a_sign_out_the_next_person_who_did_sign_in_at_the_provider_gets_in(
    page,  # noqa: F811
    provider_without_auth_time,
):
    """After a sign-out the page asks for a fresh sign-in (prompt=login, max_age=0) and then
    demands `auth_time`. A provider that does ask who is there (here it shows its sign-in form,
    and the next person signs in) but leaves `auth_time` out of the ID token is refused
    "not-fresh": nobody can sign in from that tab again, and the page tells them the provider
    "signed you in without asking who you are" - which it did ask. docs/deployment.md does not
    say the ID token must carry auth_time."""
    provider, gateway = provider_without_auth_time
    portal_url = f"{gateway.url}/portal/"
    sam_signed_in_and_out(page, portal_url)

    page.click("#oidc-sign-in-button")
    page.wait_for_selector(LOGIN_FORM)  # the provider asks who is there, as asked
    assert provider.authorize_requests[-1]["prompt"] == "login"
    page.click(LOGIN_FORM)
    page.wait_for_selector(f"{ALEX}, #notice:has-text('without asking who you are')")

    assert page.is_visible(ALEX), page.inner_text("#notice")


def test_without_auth_time_the_last_practitioner_s_kept_session_is_still_refused(
    page,  # noqa: F811
    provider_without_auth_time,
):
    """The other side of the test above: a provider leaving out auth_time and ignoring
    prompt=login answers from the session it kept - the practitioner who signed out - and that
    answer stays refused."""
    provider, gateway = provider_without_auth_time
    provider.ignores_prompt = True
    sam_signed_in_and_out(page, f"{gateway.url}/portal/")

    page.click("#oidc-sign-in-button")

    page.wait_for_selector("#notice:has-text('signed you in without asking who you are')")
    assert page.is_hidden("#session")
