"""An ambiguous lookup by NHS number or UPN tells the practitioner why in words that fit it: the
agencies' records under the number disagree on who the child is (a UPN, a date of birth), which
more details cannot settle - not "more than one child fits the details you gave", which is a
search's. Real gateway, reference connectors, the portal in Chromium."""

from __future__ import annotations

import pytest

from connectors.check_digits import upn_check_letter
from connectors.protocol import Identifiers
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import reference_connectors, running_gateway

OTHER_UPN = upn_check_letter("801200001002") + "801200001002"


@pytest.fixture(scope="module")
def disagreeing(browser, tmp_path_factory):
    """Health holds the child; under her NHS number the school's record and social care's carry
    different UPNs: two children's records, one keyed with the other's NHS number."""
    tmp = tmp_path_factory.mktemp("ambiguous")
    other = Identifiers(nhs_number=NHS, upn=OTHER_UPN, local_id="LA-000001")
    records = {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record(identifiers=other)],
    }
    assert records["education"][0].identifiers.upn not in (None, OTHER_UPN)
    with (
        reference_connectors(tmp, records) as sources,
        running_gateway(tmp, sources) as gateway,
    ):
        yield gateway


def test_an_nhs_lookup_whose_records_disagree_says_the_agencies_must_check_them(page, disagreeing):
    portal = Portal(page, f"{disagreeing.url}/portal/")
    portal.open()
    portal.sign_in("social_worker")
    portal.look_up(NHS)

    assert portal.outcome == "AMBIGUOUS"
    said = page.inner_text("#outcome")
    assert "Ask the agencies to check their records" in said
    assert "details you gave" not in said
