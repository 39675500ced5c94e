"""A sensitive service that came with no broker, from a source configured with none, still leaves
the practitioner someone to ask: the portal names the agency that recorded it as the route, and
shows nothing of the provider. Real gateway, reference connectors, the portal in Chromium."""

from __future__ import annotations

import pytest

from connectors.protocol import Contact, Involvement
from tests.browser.portal import Portal
from tests.factories import NHS, health_record
from tests.stack import reference_connectors, running_gateway

CAMHS = Involvement(
    service="CAMHS",
    organisation="Leeds CAMHS",
    practitioner=Contact(name="Dr Mind", phone="07700 900002"),
    sensitive=True,
)


@pytest.fixture(scope="module")
def unbrokered(browser, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unbrokered")
    records = {"health": [health_record(involvements=[CAMHS])], "education": [], "social_care": []}
    with (
        reference_connectors(tmp, records) as sources,
        running_gateway(tmp, sources) as gateway,
    ):
        assert all(s.sensitive_broker is None for s in sources)
        yield gateway


def test_a_sensitive_service_with_no_broker_names_the_agency_to_ask(page, unbrokered):
    portal = Portal(page, f"{unbrokered.url}/portal/")
    portal.open()
    portal.sign_in("social_worker")
    portal.look_up(NHS)

    assert portal.outcome == "FOUND"
    involvement = page.locator("#involvements li.involvement")
    assert involvement.count() == 1
    shown = involvement.first.inner_text()
    assert "Sensitive service" in shown
    assert "No broker is named: contact health to be put in touch with this service." in shown
    for provider in ("Dr Mind", "07700 900002", "Leeds CAMHS"):
        assert provider not in page.content()
