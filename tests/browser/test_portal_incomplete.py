"""An agency's connector stops while practitioners work: the portal's next answer says it is
incomplete and what the source did. The demo runs its connectors in one process, so this test runs
a stack of its own (reference connectors and a gateway serving the portal) and stops one."""

from collections.abc import Sequence

from connectors.protocol import ConnectorRecord
from connectors.serving import BackgroundServer
from gateway.demo import reference_source
from tests.browser.portal import Portal
from tests.factories import NHS, health_record, school_record, social_care_record
from tests.stack import reference_apps, running_gateway


def test_a_stopped_connector_makes_the_next_answer_incomplete_and_says_which(page, tmp_path):
    records: dict[str, Sequence[ConnectorRecord]] = {
        "health": [health_record()],
        "education": [school_record()],
        "social_care": [social_care_record()],
    }
    servers = {
        name: BackgroundServer(app).start()
        for name, app in reference_apps(tmp_path, records).items()
    }
    try:
        sources = [reference_source(name, server.url) for name, server in servers.items()]
        with running_gateway(tmp_path, sources) as gateway:
            portal = Portal(page, f"{gateway.url}/portal/")
            portal.open()
            portal.sign_in("social_worker")
            portal.look_up(NHS)
            assert portal.source_status("social_care") == "ANSWERED"
            assert page.locator("#incomplete-banner").count() == 0

            servers.pop("social_care").stop()
            portal.look_up(NHS)

            assert portal.outcome == "FOUND"
            assert portal.last_answer["data"]["child"]["complete"] is False
            assert portal.source_status("social_care") == "FAILED"
            assert portal.source_status("health") == "ANSWERED"
            banner = page.locator("#incomplete-banner")
            assert banner.is_visible()
            assert "social care" in banner.inner_text().lower().replace("_", " ")
            # Social care holds the plans and did not answer: no indicator may read as "no".
            plan = page.locator('#indicators [data-indicator="childProtectionPlan"]').inner_text()
            assert "Not known" in plan
            assert "No agency" not in page.locator("#indicators").inner_text()
    finally:
        for server in servers.values():
            server.stop()
