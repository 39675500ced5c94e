"""axe-core (tests/contract/axe, from npm) in the browser finds no WCAG 2.2 AA violation on the
portal signed out, at the lookup form, showing a result, in the break-glass dialog and in the
auditor's view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.portal import Portal
from tests.node import node_project

if TYPE_CHECKING:
    from playwright.sync_api import Page

AXE_PROJECT = Path(__file__).parents[1] / "contract" / "axe"
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.fixture(scope="module")
def axe_script() -> Path:
    return node_project(AXE_PROJECT) / "node_modules" / "axe-core" / "axe.min.js"


def _violations(page: Page, axe_script: Path) -> list[str]:
    """axe's WCAG 2.2 AA violations on the page as it is now, one readable line per element."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script))
    found = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))",
        WCAG_22_AA,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in found
    ]


def test_axe_finds_no_wcag_22_aa_violation_in_any_state_of_the_page(new_page, demo, axe_script):
    # axe goes in as a script element, which the portal's CSP (no inline script) would refuse.
    page = new_page(bypass_csp=True)
    portal = Portal(page, demo.portal)
    portal.open()
    signed_out = _violations(page, axe_script)

    portal.sign_in("social_worker")
    form = _violations(page, axe_script)

    portal.look_up(demo.nhs["child protection plan"])
    result = _violations(page, axe_script)
    portal.look_up(demo.nhs["shielded"])
    withheld = _violations(page, axe_script)
    page.click("#break-glass")
    page.locator("#break-glass-dialog").wait_for(state="visible")
    dialog = _violations(page, axe_script)
    page.keyboard.press("Escape")

    portal.sign_out()
    portal.sign_in("auditor")
    portal.audit_trail(demo.nhs["shielded"])
    trail = _violations(page, axe_script)

    report = {
        "signed out": signed_out,
        "lookup form": form,
        "result": result,
        "result with withheld fields": withheld,
        "break-glass dialog": dialog,
        "audit trail": trail,
    }
    assert not any(report.values()), "\n".join(
        f"{state}:\n  " + "\n  ".join(found) for state, found in report.items() if found
    )


def test_axe_finds_no_wcag_22_aa_violation_in_the_history_and_the_auditors_feeds(
    new_page, demo, axe_script
):
    page = new_page(bypass_csp=True)
    portal = Portal(page, demo.portal)
    portal.open()
    nhs = demo.nhs["child protection plan"]

    portal.sign_in("school_dsl")
    portal.access_history(nhs)
    refused = _violations(page, axe_script)
    portal.sign_out()

    portal.sign_in("social_worker")
    portal.look_up(nhs)
    portal.access_history()
    history = _violations(page, axe_script)
    portal.access_history(demo.nhs["ordinary"])
    empty = _violations(page, axe_script)
    portal.sign_out()

    portal.sign_in("auditor")
    portal.alerts()
    alerts = _violations(page, axe_script)
    portal.limit_alerts()
    limit_alerts = _violations(page, axe_script)
    portal.user_trail("dev:LA-LEEDS:Sam Social", since="2000-01-01T00:00")
    by_user = _violations(page, axe_script)

    report = {
        "history refused": refused,
        "access history": history,
        "empty history": empty,
        "override alerts": alerts,
        "limit alerts": limit_alerts,
        "trail by user": by_user,
    }
    assert not any(report.values()), "\n".join(
        f"{state}:\n  " + "\n  ".join(found) for state, found in report.items() if found
    )
