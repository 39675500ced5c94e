"""The limits in Redis, against a real Redis: exact per-minute windows and daily cap across
several gateway processes (each simulated by its own RedisLimits and connection pool), the cap
read again from the audit log when Redis has lost it, and refusal when Redis cannot be asked."""

import asyncio
import contextlib
import dataclasses
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
import redis

from connectors.app import create_connector_app
from gateway import redis_limits
from gateway.audit import AuditField, SqliteAuditStore
from gateway.demo import reference_source
from gateway.limits import (
    DISTINCT_CHILDREN_CAP,
    LIMITS_UNAVAILABLE,
    ORGANISATION_RATE_LIMITED,
    RATE_LIMITED,
    LimitSettings,
)
from gateway.redis_limits import SEEDED, RedisLimits, redis_client
from gateway.types import Caller
from tests.factories import (
    CHECKPOINT_KEY,
    NHS,
    access,
    audit_record,
    health_record,
    school_record,
    synthetic_nhs,
)
from tests.limits_contract import (
    a_link_for_a_child_not_counted_today_counts_it,
    a_linked_pseudonym_is_the_child_already_counted,
    a_role_with_its_own_cap_is_held_to_it,
)
from tests.stack import reference_connectors, running_gateway, serving

HARVESTER = Caller("dev:ORG:Harvester", "Harvester", "gp", "ORG")


def _today() -> int:
    return int(time.time()) // redis_limits.DAY_S


class NoChildrenLogged:
    """An audit log holding no lookups, counting how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def children_seen(self, subject, since):
        self.reads += 1
        return {}


class UnreadableLog:
    def children_seen(self, subject, since):
        raise OSError("disk gone")


class StalledLog:
    """An audit log whose database has stalled: a read waits until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def children_seen(self, subject, since):
        self.release.wait(60)
        return {}


@pytest.fixture
def store(tmp_path):
    s = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    yield s
    s.close()


@pytest.fixture
async def processes(redis_prefix):
    """Make RedisLimits as separate gateway processes would: each over its own connection pool
    to the one Redis, under the test's key prefix."""
    url, prefix = redis_prefix
    clients = []

    def make(
        audit=None, *, per_user=1000, per_org=1_000_000, per_day=1000, by_role=None, url=url, **kw
    ):
        client = redis_client(url)
        clients.append(client)
        settings = LimitSettings(per_user, per_org, per_day, by_role or {})
        return RedisLimits(client, prefix, settings, audit or NoChildrenLogged(), **kw)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def direct(redis_prefix):
    """A plain client to look at (and tamper with) what the limits keep."""
    client = redis.Redis.from_url(redis_prefix[0])
    yield client
    client.close()


def _day_map(prefix, subject=HARVESTER.subject, day=None):
    return f"{{{prefix}}}:limits:children-by-ref:{_today() if day is None else day}:{subject}"


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_user_gets_exactly_the_per_minute_limit_across_processes(processes):
    one, two = processes(per_user=5), processes(per_user=5)
    results = [await (one if i % 2 else two).reserve(HARVESTER, "nhs:c") for i in range(8)]
    other_user = await one.reserve(Caller("dev:ORG:Other", "Other", "gp", "ORG"), "nhs:c")
    assert results == [None] * 5 + [RATE_LIMITED] * 3
    assert other_user is None


@pytest.mark.anyio
async def test_an_organisation_gets_exactly_its_limit_whoever_asks(processes):
    one, two = processes(per_org=3), processes(per_org=3)
    callers = [Caller(f"dev:ORGX:{n}", n, "gp", "ORGX") for n in "ABCD"]
    results = [await (one, two)[i % 2].reserve(c, "nhs:c") for i, c in enumerate(callers)]
    assert results == [None, None, None, ORGANISATION_RATE_LIMITED]


@pytest.mark.anyio
async def test_the_cap_refuses_new_children_but_not_ones_already_seen(processes):
    one, two = processes(per_day=2), processes(per_day=2)
    assert await one.reserve(HARVESTER, "nhs:c1") is None
    assert await two.reserve(HARVESTER, "nhs:c2") is None
    assert await one.reserve(HARVESTER, "nhs:c3") == DISTINCT_CHILDREN_CAP
    assert await two.reserve(HARVESTER, "nhs:c1") is None


@pytest.mark.anyio
async def test_a_refused_lookup_is_not_counted(processes):
    limits = processes(per_user=2, per_day=1)
    assert await limits.reserve(HARVESTER, "nhs:c1") is None
    assert await limits.reserve(HARVESTER, "nhs:c2") == DISTINCT_CHILDREN_CAP
    assert await limits.reserve(HARVESTER, "nhs:c1") is None  # the refusal used no minute slot


@pytest.mark.anyio
async def test_the_window_slides_lookups_older_than_a_minute_no_longer_count(
    processes, direct, redis_prefix
):
    limits = processes(per_user=2)
    seconds, micros = direct.time()
    now_us = seconds * 1_000_000 + micros
    window = f"{{{redis_prefix[1]}}}:limits:user:{HARVESTER.subject}"
    direct.zadd(window, {"old": now_us - 61_000_000, "recent": now_us - 50_000_000})

    assert await limits.reserve(HARVESTER, "nhs:c") is None  # "old" has slid out
    assert await limits.reserve(HARVESTER, "nhs:c") == RATE_LIMITED  # "recent" still counts
    assert direct.zscore(window, "old") is None


# --- issue #10's attack, against two processes -------------------------------------------------


@pytest.mark.anyio
async def test_simultaneous_lookups_split_across_two_processes_cannot_beat_the_minute_limit(
    processes,
):
    one, two = processes(per_user=60), processes(per_user=60)
    results = await asyncio.gather(
        *((one, two)[i % 2].reserve(HARVESTER, f"nhs:c{i}") for i in range(200))
    )
    assert results.count(None) == 60
    assert results.count(RATE_LIMITED) == 140


@pytest.mark.anyio
async def test_simultaneous_lookups_split_across_two_processes_cannot_beat_the_cap(processes):
    one, two = processes(per_day=25), processes(per_day=25)
    results = await asyncio.gather(
        *((one, two)[i % 2].reserve(HARVESTER, f"nhs:c{i}") for i in range(200))
    )
    assert results.count(None) == 25
    assert results.count(DISTINCT_CHILDREN_CAP) == 175


# --- one child, counted once whatever it is looked up by -----------------------------------------


@pytest.mark.anyio
async def test_a_pseudonym_linked_to_a_child_counted_is_that_child_in_every_process(processes):
    one, two = processes(per_day=2), processes(per_day=2)
    await a_linked_pseudonym_is_the_child_already_counted(one, two, HARVESTER)


@pytest.mark.anyio
async def test_two_children_counted_apart_and_found_to_be_one_are_counted_once(
    processes, direct, redis_prefix
):
    limits = processes(per_day=2)
    for child in ("upn:y", "nhs:x"):
        assert await limits.reserve(HARVESTER, child) is None
    assert await limits.reserve(HARVESTER, "nhs:z") == DISTINCT_CHILDREN_CAP
    await limits.link(HARVESTER, "nhs:x", ["upn:y", "nhs:r"])
    assert await limits.reserve(HARVESTER, "nhs:z") is None
    assert await limits.reserve(HARVESTER, "nhs:r") is None
    assert await limits.reserve(HARVESTER, "nhs:w") == DISTINCT_CHILDREN_CAP
    assert direct.hgetall(_day_map(redis_prefix[1])) == {
        SEEDED.encode(): b"2",
        b"nhs:x": b"nhs:x",
        b"upn:y": b"nhs:x",
        b"nhs:r": b"nhs:x",
        b"nhs:z": b"nhs:z",
    }


@pytest.mark.anyio
async def test_a_link_for_a_child_the_day_map_lacks_counts_it_rather_than_losing_it(processes):
    await a_link_for_a_child_not_counted_today_counts_it(processes(per_day=2), HARVESTER)


@pytest.mark.anyio
async def test_links_go_to_the_day_redis_gave_whatever_the_process_clock_says(processes):
    limits = processes(per_day=1, clock=lambda: time.time() + redis_limits.DAY_S)  # a day fast
    assert await limits.reserve(HARVESTER, "nhs:x") is None
    await limits.link(HARVESTER, "nhs:x", ["upn:y"])
    assert await limits.reserve(HARVESTER, "upn:y") is None
    assert await limits.reserve(HARVESTER, "nhs:z") == DISTINCT_CHILDREN_CAP


@pytest.mark.anyio
async def test_a_link_while_redis_holds_no_day_map_waits_for_the_seed(
    processes, store, direct, redis_prefix
):
    """A link never makes the map, which would stand for a log read and hold nothing else."""
    limits = processes(store, per_day=2)
    await limits.link(HARVESTER, "nhs:x", ["upn:y"])
    assert not direct.exists(_day_map(redis_prefix[1]))
    await _append_lookups(store, "nhs:x", "nhs:v")
    assert await limits.reserve(HARVESTER, "nhs:new") == DISTINCT_CHILDREN_CAP  # seeded: two


@pytest.mark.anyio
async def test_the_day_map_is_seeded_with_the_links_in_the_audit_log(processes, store):
    await _append_lookups(store, "nhs:x", "upn:y")
    await _append_lookups(store, "nhs:x", linked_refs=["upn:y", "upn:q"])
    limits = processes(store, per_day=2)
    assert await limits.reserve(HARVESTER, "upn:q") is None
    assert await limits.reserve(HARVESTER, "nhs:z") is None
    assert await limits.reserve(HARVESTER, "nhs:w") == DISTINCT_CHILDREN_CAP


@pytest.mark.anyio
async def test_a_link_redis_cannot_take_is_logged_and_let_go(processes, caplog):
    """The lookup was audited and answered already; its child may only be counted again."""
    limits = processes(url=_closed_port())
    with caplog.at_level(logging.WARNING, logger="childlookup.limits"):
        await limits.link(HARVESTER, "nhs:x", ["upn:y"])
    (logged,) = [r for r in caplog.records if getattr(r, "event", None) == "limits_link_failed"]
    assert logged.context["error"] in {"ConnectionError", "ConnectionRefusedError", "OSError"}
    assert "upn:y" not in logged.getMessage() + str(logged.context)


# --- the day map: seeded from the audit log, expiring after the day ------------------------------


async def _append_lookups(store, *children, linked_refs=()):
    """The audit log holding a found lookup of each child by the harvester, made just now, which
    showed the child's NHS number and whose records named the child by `linked_refs` too."""
    shown = [AuditField("health", "nhs_number")]
    for child in children:
        record = audit_record(
            uuid.uuid4().hex, child_ref=child, released=shown, linked_refs=linked_refs
        )
        made = access(at=datetime.now(UTC), subject=HARVESTER.subject, child_ref=child)
        await store.append(dataclasses.replace(record, access=made))


@pytest.mark.anyio
async def test_the_cap_is_read_from_the_audit_log_when_redis_holds_no_day_map(
    processes, store, direct, redis_prefix
):
    await _append_lookups(store, "nhs:logged1", "nhs:logged2")
    one, two = processes(store, per_day=3), processes(store, per_day=3)

    assert await one.reserve(HARVESTER, "nhs:new1") is None
    assert await two.reserve(HARVESTER, "nhs:new2") == DISTINCT_CHILDREN_CAP
    assert await two.reserve(HARVESTER, "nhs:logged1") is None
    assert direct.hgetall(_day_map(redis_prefix[1])) == {
        SEEDED.encode(): b"3",
        b"nhs:logged1": b"nhs:logged1",
        b"nhs:logged2": b"nhs:logged2",
        b"nhs:new1": b"nhs:new1",
    }


@pytest.mark.anyio
async def test_the_cap_survives_redis_losing_the_day_map(processes, store, direct, redis_prefix):
    """Redis here keeps nothing on disk: after a restart the map is read again from the log."""
    limits = processes(store, per_day=2)
    for child in ("nhs:c1", "nhs:c2"):
        assert await limits.reserve(HARVESTER, child) is None
    await _append_lookups(store, "nhs:c1", "nhs:c2")  # their lookups ran and were audited

    direct.delete(_day_map(redis_prefix[1]))  # as a Redis restart would,
    direct.script_flush()  # which also forgets the script (EVALSHA falls back to loading it)

    assert await limits.reserve(HARVESTER, "nhs:c3") == DISTINCT_CHILDREN_CAP
    assert await limits.reserve(HARVESTER, "nhs:c2") is None


@pytest.mark.anyio
async def test_concurrent_reservers_seed_the_day_map_once_and_stay_exact(
    processes, store, direct, redis_prefix
):
    await _append_lookups(store, "nhs:logged1", "nhs:logged2")
    one, two = processes(store, per_day=5), processes(store, per_day=5)
    results = await asyncio.gather(
        *((one, two)[i % 2].reserve(HARVESTER, f"nhs:new{i}") for i in range(40))
    )
    assert results.count(None) == 3  # 5 less the 2 the log already holds
    assert direct.hget(_day_map(redis_prefix[1]), SEEDED) == b"5"
    assert direct.hlen(_day_map(redis_prefix[1])) == 1 + 5


@pytest.mark.anyio
async def test_the_log_is_read_only_while_redis_has_no_day_map(processes):
    log = NoChildrenLogged()
    limits = processes(log)
    for i in range(5):
        assert await limits.reserve(HARVESTER, f"nhs:c{i}") is None
    assert log.reads == 1


@pytest.mark.anyio
async def test_the_day_map_expires_an_hour_after_its_day_and_windows_after_a_minute(
    processes, direct, redis_prefix
):
    limits = processes()
    assert await limits.reserve(HARVESTER, "nhs:c") is None
    prefix = redis_prefix[1]
    day = _today()
    expires_at = direct.execute_command("EXPIRETIME", _day_map(prefix, day=day))
    assert expires_at == (day + 1) * 86_400 + redis_limits.DAY_SET_GRACE_S
    for window in (f"{{{prefix}}}:limits:user:{HARVESTER.subject}", f"{{{prefix}}}:limits:org:ORG"):
        assert 0 < direct.pttl(window) <= 61_000


@pytest.mark.anyio
async def test_redis_decides_the_day_not_the_process_clock(processes, direct, redis_prefix):
    limits = processes(clock=lambda: time.time() + redis_limits.DAY_S)  # a day fast
    assert await limits.reserve(HARVESTER, "nhs:c") is None
    assert direct.hexists(_day_map(redis_prefix[1]), "nhs:c")


# --- fails closed ----------------------------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


@pytest.mark.anyio
async def test_redis_unreachable_refuses_the_lookup(processes):
    limits = processes(url=_closed_port())
    assert await limits.reserve(HARVESTER, "nhs:c") == LIMITS_UNAVAILABLE


@pytest.mark.anyio
async def test_an_unreadable_audit_log_while_seeding_refuses_the_lookup(processes):
    limits = processes(UnreadableLog())
    assert await limits.reserve(HARVESTER, "nhs:c") == LIMITS_UNAVAILABLE


@pytest.mark.anyio
async def test_a_stalled_audit_log_while_seeding_refuses_the_lookup_in_bounded_time(processes):
    """Not held for as long as the database stalls (20-30 s seen), past the lookup's deadline."""
    log = StalledLog()
    limits = processes(log)
    started = time.monotonic()
    try:
        refusal = await limits.reserve(HARVESTER, "nhs:c")
    finally:
        log.release.set()
    assert refusal == LIMITS_UNAVAILABLE
    assert time.monotonic() - started < redis_limits.SEED_TIMEOUT_S + 3


# --- two real gateways sharing one Redis -------------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A child the GP practice knows by NHS number, and its school by both it and a UPN."""
    tmp = tmp_path_factory.mktemp("redis-limits")
    agencies = {"health": [health_record()], "education": [school_record()]}
    with reference_connectors(tmp, agencies) as sources:
        yield sources


@contextlib.contextmanager
def two_gateways(tmp, sources, redis_prefix, **limits):
    """Two gateways as two processes of one deployment would be: one audit log, one Redis."""
    url, prefix = redis_prefix
    shared = {"redis_url": url, "redis_prefix": prefix} | limits
    with (
        running_gateway(tmp, sources, **shared) as one,
        running_gateway(tmp, sources, **shared) as two,
    ):
        yield one, two


def _at_once(gateways, nhs_numbers):
    """Each lookup on the next gateway in turn, all sent at the same time; their error codes
    (None when admitted)."""
    with ThreadPoolExecutor(len(nhs_numbers)) as pool:
        bodies = pool.map(
            lambda job: gateways[job[0] % len(gateways)].lookup("gp", job[1], "DIRECT_CARE"),
            enumerate(nhs_numbers),
        )
        return [b["errors"][0]["extensions"]["code"] if b.get("errors") else None for b in bodies]


def test_two_gateways_admit_exactly_the_per_minute_limit_between_them(
    tmp_path, sources, redis_prefix
):
    with two_gateways(tmp_path, sources, redis_prefix, lookups_per_user_per_minute=3) as gateways:
        codes = _at_once(gateways, [NHS] * 6)
    assert Counter(codes) == {None: 3, "RATE_LIMITED": 3}


def test_two_gateways_admit_exactly_the_distinct_children_cap_between_them(
    tmp_path, sources, redis_prefix
):
    children = [synthetic_nhs(200 + i) for i in range(6)]
    with two_gateways(
        tmp_path, sources, redis_prefix, distinct_children_per_user_per_day=2
    ) as gateways:
        codes = _at_once(gateways, children)
    assert Counter(codes) == {None: 2, "LOOKUP_CAP_REACHED": 4}


def test_one_child_looked_up_by_nhs_number_on_one_gateway_is_counted_once_by_upn_on_another(
    tmp_path, sources, redis_prefix
):
    upn = school_record().identifiers.upn
    with two_gateways(tmp_path, sources, redis_prefix, distinct_children_per_user_per_day=1) as (
        one,
        two,
    ):
        first = one.lookup("gp", NHS, "DIRECT_CARE")
        by_upn = two.lookup_by_upn("gp", upn)
        another = one.lookup("gp", synthetic_nhs(18), "DIRECT_CARE")
    assert first["data"]["child"]["outcome"] == by_upn["data"]["child"]["outcome"] == "FOUND"
    assert another["errors"][0]["extensions"]["code"] == "LOOKUP_CAP_REACHED"


def test_the_cap_holds_across_a_redis_restart_and_redis_never_holds_child_data(
    tmp_path, sources, redis_prefix, direct
):
    prefix = redis_prefix[1]
    with two_gateways(tmp_path, sources, redis_prefix, distinct_children_per_user_per_day=2) as (
        one,
        two,
    ):
        one.lookup("gp", NHS, "DIRECT_CARE")
        two.lookup("gp", synthetic_nhs(11), "DIRECT_CARE")
        kept = {key: _members(direct, key) for key in direct.scan_iter(match=f"*{prefix}*")}
        for key in kept:
            direct.delete(key)  # what Redis holds after a restart: nothing

        refused = two.lookup("gp", synthetic_nhs(12), "DIRECT_CARE")
        again = one.lookup("gp", synthetic_nhs(11), "DIRECT_CARE")
    assert refused["errors"][0]["extensions"]["code"] == "LOOKUP_CAP_REACHED"
    assert again["data"]["child"]["outcome"] == "NOT_FOUND"
    assert _day_map(prefix, subject="dev:ORG1:Test User").encode() in kept
    held = str(kept)
    assert NHS not in held
    assert school_record().identifiers.upn not in held
    assert synthetic_nhs(11) not in held
    assert all(key.startswith(f"{{{prefix}}}:limits:".encode()) for key in kept)


def _members(client, key):
    kind = client.type(key)
    return client.hgetall(key) if kind == b"hash" else client.zrange(key, 0, -1)


class CountedAgency:
    """A connector's records, counting how often it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def lookup(self, request):
        self.asked += 1
        return []


def test_redis_unreachable_refuses_lookups_asks_no_agency_and_is_not_ready(tmp_path):
    agency = CountedAgency()
    with serving({"health": create_connector_app(agency, source="health")}) as urls:
        source = reference_source("health", urls["health"])
        with running_gateway(tmp_path, [source], redis_url=_closed_port()) as gateway:
            refused = gateway.lookup("gp", NHS, "DIRECT_CARE")
            ready = httpx.get(f"{gateway.url}/readyz")
            audit = gateway.components.audit.records()
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "LIMITS_UNAVAILABLE"
    assert agency.asked == 0
    assert [(r["outcome"], r["error_code"]) for r in audit] == [("REFUSED", "LIMITS_UNAVAILABLE")]
    assert ready.status_code == 503
    assert ready.json()["checks"]["limits"] is False


def test_a_gateway_on_redis_is_ready_when_redis_answers(tmp_path, sources, redis_prefix):
    url, prefix = redis_prefix
    with running_gateway(tmp_path, sources, redis_url=url, redis_prefix=prefix) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["limits"] is True


@pytest.mark.anyio
async def test_a_role_given_its_own_daily_cap_is_held_to_it_in_every_process(processes):
    limits = processes(per_day=2, by_role={"auditor": 4})
    auditor = Caller("dev:ORG:Audrey", "Audrey", "auditor", "ORG")
    await a_role_with_its_own_cap_is_held_to_it(limits, HARVESTER, auditor)
