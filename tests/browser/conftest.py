"""Fixtures for the portal's browser tests: Debian's Chromium driven by Playwright, against the real
demo started as a process (as `./dev demo` runs it), one browser for the browser tests and a fresh
context and page per test, each test's page saved as a screenshot in `screenshots/`.

The browser and the demo are package-scoped, not session-scoped: Playwright's sync API leaves its
event loop running on the main thread until it stops, and any later test in the same process that
runs an event loop of its own (asyncio.run, anyio) would fail while it lives.

Without Chromium at /usr/bin/chromium or Playwright, the tests are skipped with one line saying
why - unless `CHILDLOOKUP_TEST_BROWSER=required` (`.ci/run` sets it), where that fails them.
Under pytest-xdist each worker running browser tests starts its own demo and browser; `./dev test`
keeps them all on one worker (see pytest_collection_modifyitems).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from connectors.serving import free_port
from tests.processes import CLI, stop

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
DEMO_CHILDREN = 600
BANNER_END = "More tokens"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (as `./dev test` runs pytest) every browser test goes to one
    worker, which starts one demo and one browser, however many cores the suite spreads over."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("browser"))


def _unavailable(message: str) -> None:
    if os.environ.get("CHILDLOOKUP_TEST_BROWSER") == "required":
        pytest.fail(f"{message}, and CI requires it", pytrace=False)
    pytest.skip(f"{message}: `./dev test` installs it when run as root")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browser download is not used)."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@dataclass(frozen=True)
class Demo:
    """The demo as its banner describes it."""

    url: str
    portal: str
    nhs: dict[str, str]
    """Showcase NHS numbers by label: shielded, child protection plan, sensitive service,
    education linked, ordinary."""
    demographics: dict[str, str]
    """The banner's demographic search, by DemographicsInput field: givenName, familyName,
    dateOfBirth, postcode."""
    upn: str
    """The UPN of the banner's search by UPN: the education-linked child's."""
    records: Path | None = None
    """The folder of the agencies' records the demo serves (`<agency>.jsonl`)."""


def _read_banner(state: Path, demo: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """The demo's banner (its stdout in `state`) once printed in full."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = (state / "demo.out").read_text()
        if BANNER_END in text:
            return text
        if demo.poll() is not None:
            errors = (state / "demo.err").read_text().strip().splitlines()[-5:]
            raise AssertionError(f"the demo exited ({demo.returncode}):\n" + "\n".join(errors))
        time.sleep(0.05)
    raise AssertionError(f"the demo printed no banner in {timeout_s} s")


def parse_banner(banner: str) -> Demo:
    graphiql = re.search(r"GraphiQL:\s+(\S+)/graphql", banner)
    portal = re.search(r"Portal:\s+(\S+)", banner)
    assert graphiql, f"no GraphiQL URL in the demo's banner:\n{banner}"
    assert portal, f"no `Portal:  <url>` line in the demo's banner:\n{banner}"
    section = banner.split("NHS numbers to try:", 1)[1].split("\n\n", 1)[0]
    nhs = dict(re.findall(r"^\s+(\S.*?)\s+(\d{10})$", section, re.M))
    search = re.search(r"child\(identify: \{demographics: \{(.*?)\}", banner)
    assert search, f"no demographic search in the demo's banner:\n{banner}"
    demographics = dict(re.findall(r'(\w+): "([^"]*)"', search.group(1)))
    upn = re.search(r'child\(identify: \{upn: "(\w+)"\}', banner)
    assert upn, f"no search by UPN in the demo's banner:\n{banner}"
    return Demo(graphiql.group(1), portal.group(1), nhs, demographics, upn.group(1))


@pytest.fixture(scope="package")
def demo(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`childlookup demo` as a process for the browser tests (asks for the browser first, so a
    missing browser skips before the demo starts)."""
    state = tmp_path_factory.mktemp("demo")
    with open(state / "demo.out", "w") as stdout, open(state / "demo.err", "w") as stderr:
        process = subprocess.Popen(
            [
                *(*CLI, "demo", "--port", str(free_port())),
                *("--children", str(DEMO_CHILDREN), "--state-dir", str(state)),
            ],
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
    try:
        demo = parse_banner(_read_banner(state, process))
        (records,) = state.glob("population-*")
        yield replace(demo, records=records)
    finally:
        if process.poll() is None:
            stop(process)


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context (`context_options` as Playwright's new_context
    takes them); every page opened is saved as a screenshot when the test ends."""
    contexts: list[Any] = []
    pages: list[Page] = []

    def open_page(**context_options: Any) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        pages.append(context.new_page())
        return pages[-1]

    yield open_page
    SCREENSHOTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for n, page in enumerate(pages):
        suffix = f"-{n + 1}" if len(pages) > 1 else ""
        page.screenshot(path=SCREENSHOTS / f"{name}{suffix}.png", full_page=True)
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A page in a fresh browser context: no session, no storage."""
    return new_page()
