"""The incomplete banner names a source not asked for a reason it states - the locator, when no
identifier of the child was confirmed (NOT_ASKED, UNCONFIRMED_IDENTIFIER) - as it names one that
did not answer: it had said the answer was incomplete and named no source, nor why.

The gateway's answer is the demo's own for a child on a plan, with the locator's status as the
routing stage adds it (gateway/routing.py) and `complete` as gateway.types computes it; the
national routing that gives it is tested without a browser (tests/test_routing_e2e.py).
"""

import json

from tests.browser.portal import Portal


def test_the_incomplete_banner_names_the_locator_that_could_not_be_asked(page, demo):
    def answer(route):
        if "ChildLookup" not in (route.request.post_data or ""):
            route.continue_()
            return
        response = route.fetch()
        body = response.json()
        lookup = body["data"]["child"]
        lookup["sources"].append(
            {
                "source": "locator",
                "status": "NOT_ASKED",
                "failureCode": "UNCONFIRMED_IDENTIFIER",
                "recordsMatched": 0,
                "recordsPossible": 0,
                "askedWith": [],
            }
        )
        lookup["complete"] = False  # as LookupResult.complete says since 69b6e4b
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/graphql", answer)
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")
    portal.look_up(demo.nhs["child protection plan"])
    assert portal.outcome == "FOUND"

    banner = page.locator("#incomplete-banner")
    assert banner.is_visible()
    assert "locator" in banner.inner_text(), (
        "the incomplete banner names no source, nor why:\n" + banner.inner_text()
    )
