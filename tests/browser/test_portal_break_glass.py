"""Break-glass in the portal: a separate, deliberate step, warned that it will be investigated,
sent as an EMERGENCY_OVERRIDE lookup with its justification, which sets a shielded child's
shielding aside for that one lookup."""

import re

from tests.browser.portal import Portal

JUSTIFICATION = "Child brought to ED unconscious at 2am, no carer present, police requesting checks"


def test_break_glass_warns_asks_why_and_sets_shielding_aside(page, demo):
    portal = Portal(page, demo.portal)
    portal.open()
    portal.sign_in("social_worker")

    warning = portal.break_glass(demo.nhs["shielded"], JUSTIFICATION)

    assert re.search(r"investigat", warning, re.I), warning
    assert portal.last_request["variables"]["purpose"] == "EMERGENCY_OVERRIDE"
    assert portal.last_request["variables"]["justification"] == JUSTIFICATION
    assert portal.outcome == "FOUND"
    assert not page.locator("#break-glass-dialog").is_visible()
    assert re.search(r"investigat|override|break.glass", portal.text("#result"), re.I)
    assert page.locator('#withheld li[data-reason="SHIELDED"]').count() == 0
