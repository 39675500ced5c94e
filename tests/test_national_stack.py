"""The national stack on loopback (gateway.national): a synthetic national population served by
agency shards, the locator and the gateway, all real `childlookup` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.agencies import STATUS_PATH
from connectors.national import IDENTITY_SOURCES
from gateway.national import NationalOptions, NationalStack, national_stack

CHILDREN = 300


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small national population (few agencies, so that publishing takes seconds), written by
    `childlookup synth --national`."""
    out = tmp_path_factory.mktemp("national") / "population"
    subprocess.run(
        [
            *(sys.executable, "-m", "gateway.cli", "synth", "--national", "--seed", "7"),
            *("--children", str(CHILDREN), "--out", str(out), "--local-authorities", "6"),
            *("--practices", "12", "--schools", "24"),
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def stack(population: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NationalStack]:
    options = NationalOptions(
        directory=population,
        state_dir=tmp_path_factory.mktemp("state"),
        children=CHILDREN,
        gateway_env={"CHILDLOOKUP_CACHE_TTL_S": "0"},
    )
    with national_stack(options) as running:
        yield running


def _truth(population: Path) -> list[dict[str, Any]]:
    lines = (population / "truth.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_every_agency_is_served_and_has_published(stack: NationalStack) -> None:
    statuses = [httpx.get(url + STATUS_PATH).json() for url in stack.shard_urls]

    assert sum(s["agencies"] for s in statuses) == stack.agencies
    assert sum(s["publishers"] for s in statuses) == stack.agencies - len(IDENTITY_SOURCES)
    assert sum(s["published"] for s in statuses) == stack.agencies - len(IDENTITY_SOURCES)
    assert stack.timings["published"] >= stack.timings["serving"] > 0


def test_the_sources_file_reaches_every_agency_at_its_own_path(stack: NationalStack) -> None:
    sources = json.loads(stack.sources_file.read_text(encoding="utf-8"))["sources"]
    routed = [s for s in sources if s.get("asked") == "when_routed"]

    assert {s["name"] for s in sources} - {s["name"] for s in routed} == set(IDENTITY_SOURCES)
    for source in routed[:: max(1, len(routed) // 40)]:
        assert httpx.get(source["answer_jwks_url"]).json()["keys"]
        assert source["routes"]
        assert source["url"].endswith("/" + source["name"])


def test_a_lookup_asks_the_agencies_holding_the_child(
    stack: NationalStack, population: Path
) -> None:
    child = max(_truth(population), key=lambda c: len(c["holders"]))
    query = (
        f'{{ child(nhsNumber: "{child["nhs_number"]}", purpose: SAFEGUARDING_ENQUIRY)'
        " { outcome complete sources { source status } } }"
    )
    answer = httpx.post(
        stack.graphql_url,
        json={"query": query},
        headers={"authorization": f"Bearer {stack.token('social_worker', 'LA-E0800001')}"},
        timeout=30,
    ).json()
    asked = {s["source"]: s["status"] for s in answer["data"]["child"]["sources"]}

    assert set(child["holders"]) <= set(asked)
    assert all(asked[holder] == "ANSWERED" for holder in child["holders"])


def test_the_stack_stops_every_process_it_started(population: Path, tmp_path: Path) -> None:
    options = NationalOptions(directory=population, state_dir=tmp_path, shards=1)
    with national_stack(options) as running:
        pids = list(running.pids.values())

    assert not [pid for pid in pids if _alive(pid)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_process_outlives_the_demo_launcher(
    population: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "gateway.cli", "demo", "--port", "0"),
            *("--national", str(population), "--shards", "1", "--state-dir", str(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    banner = []
    for line in demo.stdout:
        banner.append(line)
        if "Example query" in line:
            break
    children = _children_of(demo.pid)

    demo.send_signal(sig)
    demo.wait(timeout=30)

    assert "GraphiQL" in "".join(banner)
    assert len(children) == 3  # the locator, one shard, the gateway
    deadline = time.monotonic() + 20
    while [pid for pid in children if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to read its exit."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
