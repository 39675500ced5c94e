"""The gateway at national shape on loopback: `childlookup demo --national DIR`.

Thousands of agencies - local authorities, GP practices and schools of a national synthetic
population (`childlookup synth --national`) - served by a few `connector serve-agencies` shard
processes, each agency at its own path with its own keys; the two national identity sources
among them; the locator, to which every agency publishes its holdings under keyed pseudonyms; and
the gateway, asking the locator and the identity routes which few agencies to ask.

Everything is a `childlookup` process of its own, as deployed, so a benchmark's driver never shares
an interpreter with what it measures. `national_stack` starts it all and stops it all (tests and
`bench/` use it); no process outlives the launcher, however the launcher ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx

from connectors.agencies import STATUS_PATH, shard_of
from connectors.locator import load_pseudonym_keys, new_pseudonym_key, write_pseudonym_keys
from connectors.national import IDENTITY_SOURCES, NATIONAL_KINDS, NationalAgency, route_key
from connectors.reference import REFERENCE_AGENCIES
from connectors.serving import free_port
from connectors.trust import JWKS_PATH
from gateway.config import DEV_ISSUER, Asked, Settings, SourceConfig, SourcesFile
from gateway.demo import lookup_example, wrapped_lookup
from gateway.tokens import DEMO_USERS, PRIVATE_KEY_FILE, ensure_dev_keys, issue_dev_token

CONNECTOR_TIMEOUT_MS: Final = 1_000
SOURCES_FILE: Final = "national-sources.json"
LOCATOR_AGENCIES_FILE: Final = "locator-agencies.json"
PSEUDONYM_KEYS_FILE: Final = "pseudonym-keys.json"


@dataclass(frozen=True)
class NationalOptions:
    """What to start. `directory` holds the national population (written there when missing,
    with `seed` and `children`); `state_dir` the keys, config files, stores and logs."""

    directory: Path
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    """The gateway's port; 0 picks a free one."""
    shards: int = 2
    seed: int = 7
    children: int = 20_000
    publish_concurrency: int = 8
    gateway_env: Mapping[str, str] = field(default_factory=dict)
    """More environment for the gateway (a benchmark lifts the anti-harvesting limits)."""
    wait_published: bool = True
    """Yield only once every agency has published to the locator (until then, a child is found
    through the identity routes alone); the demo starts serving at once and reports it later."""
    start_timeout_s: float = 1_800.0


@dataclass(frozen=True)
class NationalStack:
    """A running national stack: where each part is, and the files it was configured with."""

    gateway_url: str
    locator_url: str
    shard_urls: tuple[str, ...]
    state_dir: Path
    directory: Path
    sources_file: Path
    pseudonym_keys_file: Path
    pids: Mapping[str, int]
    timings: Mapping[str, float]
    """Seconds from launch: `serving` (every process answering) and, when waited for,
    `published` (every agency's holdings at the locator)."""
    agencies: int
    _processes: _Processes = field(repr=False)

    @property
    def graphql_url(self) -> str:
        return self.gateway_url + "/graphql"

    def all_published(self) -> bool:
        """Whether every agency has published to the locator; raises RuntimeError naming a
        process of the stack that has stopped."""
        return _published(self._processes, self.shard_urls, float("inf"))

    def check_alive(self) -> None:
        """Raise RuntimeError naming a process of the stack that has stopped."""
        self._processes.check_alive()

    def token(self, role: str, organisation: str, name: str = "National Demo") -> str:
        """A dev bearer token for the gateway (dev mode, signed with the state dir's key)."""
        return issue_dev_token(
            (self.state_dir / PRIVATE_KEY_FILE).read_bytes(),
            role=role,
            organisation=organisation,
            name=name,
            issuer=DEV_ISSUER,
            audience=Settings.model_fields["audience"].default,
        )


@contextlib.contextmanager
def national_stack(options: NationalOptions) -> Iterator[NationalStack]:
    """Start the national stack, wait until every agency has published to the locator, yield it;
    stop every process on exit."""
    launched = time.monotonic()
    state = options.state_dir
    state.mkdir(parents=True, exist_ok=True)
    ensure_population(options.directory, options.seed, options.children)
    ensure_dev_keys(state)
    keys_file = _pseudonym_keys(state / PSEUDONYM_KEYS_FILE)
    national = json.loads((options.directory / "national.json").read_text(encoding="utf-8"))
    gateway_url = f"http://{options.host}:{options.port or free_port(options.host)}"
    locator_url = f"http://{options.host}:{free_port(options.host)}"
    shard_urls = tuple(
        f"http://{options.host}:{free_port(options.host)}" for _ in range(options.shards)
    )
    sources = national_sources(national, shard_urls)
    sources_file = state / SOURCES_FILE
    sources_file.write_text(sources.model_dump_json(indent=1, exclude_none=True), "utf-8")
    agencies_file = state / LOCATOR_AGENCIES_FILE
    agencies_file.write_text(json.dumps(locator_agencies(sources), indent=1), "utf-8")
    with _Processes(state / "logs") as processes:
        processes.start(
            "locator",
            ["locator", "serve", "--host", options.host, "--port", _port(locator_url)],
            _locator_env(state, agencies_file, gateway_url),
        )
        for n, url in enumerate(shard_urls, start=1):
            processes.start(
                f"agencies-{n}",
                _shard_command(options, n, url, gateway_url, locator_url, keys_file),
                {},
            )
        processes.start(
            "gateway",
            ["serve", "--config", str(sources_file), "--host", options.host],
            _gateway_env(options, gateway_url, locator_url, keys_file),
        )
        deadline = launched + options.start_timeout_s
        processes.wait_ready(gateway_url + "/readyz", deadline)
        for url in shard_urls:
            processes.wait_ready(url + STATUS_PATH, deadline)
        timings = {"serving": round(time.monotonic() - launched, 2)}
        if options.wait_published:
            while not _published(processes, shard_urls, deadline):
                time.sleep(0.25)
            timings["published"] = round(time.monotonic() - launched, 2)
        yield NationalStack(
            gateway_url=gateway_url,
            locator_url=locator_url,
            shard_urls=shard_urls,
            state_dir=state,
            directory=options.directory,
            sources_file=sources_file,
            pseudonym_keys_file=keys_file,
            pids=processes.pids(),
            timings=timings,
            agencies=len(sources.sources),
            _processes=processes,
        )


def ensure_population(directory: Path, seed: int, children: int) -> None:
    """Write a national population to `directory` (`childlookup synth --national`) unless one is
    there already. Raises RuntimeError when the writer fails."""
    if (directory / "national.json").exists():
        return
    command = [
        *(sys.executable, "-m", "gateway.cli", "synth", "--national"),
        *("--seed", str(seed), "--children", str(children), "--out", str(directory)),
    ]
    print(f"writing a national population of {children} children to {directory} ...", flush=True)
    written = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if written.returncode != 0:
        raise RuntimeError(f"childlookup synth --national failed: {written.stderr.strip()}")


def national_sources(national: Mapping[str, Any], shard_urls: Sequence[str]) -> SourcesFile:
    """The gateway's sources for a population's `national.json`: the identity sources, asked
    always, and every agency, asked when routed; each at its shard's URL under its own path."""
    agencies = [NationalAgency.model_validate(agency) for agency in national["agencies"]]
    sources = [_source(name, name, shard_urls) for name in IDENTITY_SOURCES]
    sources += [
        _source(
            agency.name,
            agency.kind,
            shard_urls,
            routes=(route_key(agency.kind, agency.code),),
            organisations=(agency.organisation,),
        )
        for agency in agencies
    ]
    return SourcesFile(sources=sources, postcode_districts=national["postcode_districts"])


def _source(
    name: str,
    kind: str,
    shard_urls: Sequence[str],
    *,
    routes: tuple[str, ...] = (),
    organisations: tuple[str, ...] = (),
) -> SourceConfig:
    url = f"{shard_urls[shard_of(name, len(shard_urls)) - 1]}/{name}"
    profile = REFERENCE_AGENCIES.get(kind)
    return SourceConfig(
        name=name,
        kind=None if name == kind else kind,
        asked=Asked.WHEN_ROUTED if routes else Asked.ALWAYS,
        routes=routes,
        url=url,
        answer_jwks_url=url + JWKS_PATH,
        provides=NATIONAL_KINDS[kind],
        shield_authority=profile is not None and profile.shield_authority,
        holds_every_child=profile is not None and profile.holds_every_child,
        restriction_authority=profile is not None and profile.restriction_authority and not routes,
        organisations=organisations,
        timeout_ms=CONNECTOR_TIMEOUT_MS,
    )


def locator_agencies(sources: SourcesFile) -> dict[str, Any]:
    """The locator's agencies file: who may publish, and where its signing key is published
    (the identity sources, asked on every lookup, publish nothing)."""
    return {
        "agencies": [
            {"name": s.name, "jwks_url": str(s.answer_jwks_url)}
            for s in sources.sources
            if s.asked is Asked.WHEN_ROUTED
        ]
    }


def _pseudonym_keys(path: Path) -> Path:
    """The pseudonym key file the agencies and the gateway share (never the locator), made once:
    a new key would orphan every pseudonym already published."""
    if path.exists():
        load_pseudonym_keys(path)  # refuse a damaged file now, not in every process
    else:
        today = datetime.now(UTC)
        write_pseudonym_keys(path, [new_pseudonym_key(f"{today.year}-{today.month:02d}")])
    return path


def _shard_command(
    options: NationalOptions,
    shard: int,
    url: str,
    gateway_url: str,
    locator_url: str,
    keys_file: Path,
) -> list[str]:
    return [
        *("connector", "serve-agencies", "--national", str(options.directory)),
        *("--shard", f"{shard}/{options.shards}", "--host", options.host),
        *("--port", _port(url), "--gateway-jwks", gateway_url + JWKS_PATH),
        *("--locator", locator_url, "--pseudonym-keys", str(keys_file)),
        *("--publish-concurrency", str(options.publish_concurrency)),
    ]


def _gateway_env(
    options: NationalOptions, gateway_url: str, locator_url: str, keys_file: Path
) -> dict[str, str]:
    return {
        "CHILDLOOKUP_MODE": "dev",
        "CHILDLOOKUP_STATE_DIR": str(options.state_dir),
        "CHILDLOOKUP_PORT": _port(gateway_url),
        "CHILDLOOKUP_LOCATOR_URL": locator_url,
        "CHILDLOOKUP_PSEUDONYM_KEYS_FILE": str(keys_file),
        **options.gateway_env,
    }


def _locator_env(state: Path, agencies_file: Path, gateway_url: str) -> dict[str, str]:
    """The locator in dev mode: its store (SQLite) and answer-signing key in the state dir, the
    agencies allowed to publish, and the gateway's keys."""
    return {
        "CHILDLOOKUP_LOCATOR_MODE": "dev",
        "CHILDLOOKUP_LOCATOR_STATE_DIR": str(state / "locator"),
        "CHILDLOOKUP_LOCATOR_AGENCIES_FILE": str(agencies_file),
        "CHILDLOOKUP_LOCATOR_GATEWAY_JWKS_URLS": gateway_url + JWKS_PATH,
    }


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _published(processes: _Processes, shard_urls: Sequence[str], deadline: float) -> bool:
    """Whether every shard says all its agencies have published to the locator; raises
    RuntimeError past `deadline`, or when a process has stopped."""
    statuses = [httpx.get(url + STATUS_PATH, timeout=5).json() for url in shard_urls]
    if all(s["published"] == s["publishers"] for s in statuses):
        return True
    processes.check_alive()
    if time.monotonic() > deadline:
        published = sum(s["published"] for s in statuses)
        publishers = sum(s["publishers"] for s in statuses)
        raise RuntimeError(f"only {published} of {publishers} agencies published in time")
    return False


class _Processes:
    """`childlookup` subprocesses, each logging to its own file (an unread pipe would fill and
    stall it), all terminated when the block ends - and killed by the kernel should the launcher
    itself die first (Linux: PR_SET_PDEATHSIG)."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> _Processes:
        self._logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in self._running.values():
            process.terminate()
        for process in self._running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        with (self._logs / f"{name}.log").open("ab") as log:
            self._running[name] = subprocess.Popen(  # noqa: S603 - our own command
                [sys.executable, "-m", "gateway.cli", *args],
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self._running.items()}

    def check_alive(self) -> None:
        """Raise RuntimeError naming any process that has stopped, and where its log is."""
        for name, process in self._running.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} stopped (exit {process.returncode}); see {self._logs / name}.log"
                )

    def wait_ready(self, url: str, deadline: float) -> None:
        while True:
            self.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not become ready")
            time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child, between fork and exec: be sent SIGTERM when the launcher dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _prctl() -> Any:
    """libc's prctl, found now: loading a library between fork and exec could deadlock."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG: Final = 1
_PRCTL: Final = _prctl()


# --- the demo ------------------------------------------------------------------------------------


def run_national_demo(options: NationalOptions) -> None:
    """`childlookup demo --national DIR`: start the stack, say how to use it, run until Ctrl-C or
    SIGTERM (or until a process of it stops), then stop everything."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    try:
        waiting = replace(options, wait_published=False)
        with contextlib.suppress(KeyboardInterrupt), national_stack(waiting) as stack:
            print(_banner(stack), flush=True)
            while not stack.all_published():
                time.sleep(1)
            print(
                f"every agency has published its holdings to the locator"
                f" ({time.monotonic() - started:.0f} s after launch)",
                flush=True,
            )
            while True:
                time.sleep(1)
                stack.check_alive()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("childlookup national demo stopped.")


def _banner(stack: NationalStack) -> str:
    truth = _examples(stack.directory)
    lines = [
        "",
        f"childlookup national demo is running: {stack.agencies} agencies (synthetic data only;"
        " Ctrl-C stops everything).",
        f"  serving {stack.timings['serving']} s after launch; agencies are publishing their"
        " holdings to the locator (until they have, children are found by identity routes)",
        "",
        f"  GraphiQL:  {stack.graphql_url}",
        f"  Portal:    {stack.gateway_url}/portal/",
        f"  Locator:   {stack.locator_url}",
        *(f"  Agencies:  {url}/<agency>/  ({url}{STATUS_PATH})" for url in stack.shard_urls),
        f"  Config:    {stack.sources_file}",
        f"  Logs:      {stack.state_dir / 'logs'}",
        "",
        'Bearer tokens (GraphiQL\'s Headers tab: {"Authorization": "Bearer <token>"}):',
    ]
    for user in DEMO_USERS:
        lines += [
            f"  {user.role} ({user.organisation}):",
            f"    {stack.token(user.role, user.organisation, user.name)}",
        ]
    lines += ["", "NHS numbers to try:"]
    lines += [f"  {label:34} {nhs}" for label, nhs in truth.items()]
    lines += ["", "Example query:", *wrapped_lookup(lookup_example(next(iter(truth.values()))))]
    return "\n".join([*lines, ""])


def _examples(directory: Path) -> dict[str, str]:
    """A few children worth looking up, from the population's ground truth: one who moved local
    authority and whose old authority still holds a record (reachable only through the locator),
    one who moved school, and one known to several agencies."""
    chosen: dict[str, str] = {}
    with (directory / "truth.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            child = json.loads(line)
            chosen.setdefault("any child", child["nhs_number"])
            authorities = sum(holder.startswith("la_") for holder in child["holders"])
            if child["moved_authority"] and authorities >= 2:  # the old one kept its case
                chosen.setdefault("moved authority (via the locator)", child["nhs_number"])
            if child["moved_school"]:
                chosen.setdefault("moved school", child["nhs_number"])
            if len(child["holders"]) >= 4:
                chosen.setdefault("known to 4 or more agencies", child["nhs_number"])
            if len(chosen) == 4:
                break
    return chosen
