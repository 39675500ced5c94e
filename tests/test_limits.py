"""Anti-harvesting attacks: too many lookups, too many distinct children. Each is refused,
audited and alerted, and the refusal says nothing about the child."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import resolvers.query
from gateway import limits as limits_module
from gateway.audit import AuditField, SqliteAuditStore
from gateway.cli import main
from gateway.limits import DISTINCT_CHILDREN_CAP, ChildrenSeen, InProcessLimits, LimitSettings
from gateway.media_types import GRAPHQL_RESPONSE_JSON, JSON
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
from tests.stack import LOOKUP, eventually, reference_connectors, running_gateway


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    with reference_connectors(tmp, {"health": [health_record()]}) as sources:
        yield sources


SHORT = f'{{ child(nhsNumber: "{NHS}", purpose: DIRECT_CARE) {{ outcome }} }}'


def _code(body):
    assert body["data"] is None
    return body["errors"][0]["extensions"]["code"]


def _refused(gateway, nhs, name="Test User"):
    """A lookup a limit refuses: the whole request is 429 (tests below say more)."""
    response = gateway.post(
        {"query": LOOKUP, "variables": {"nhs": nhs, "purpose": "DIRECT_CARE"}},
        gateway.token("gp", name=name),
    )
    assert response.status_code == 429, response.text
    return response.json()


def test_a_user_over_the_per_minute_limit_is_refused_and_audited(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=3) as gateway:
        for _ in range(3):
            assert gateway.lookup("gp", NHS, "DIRECT_CARE")["data"]["child"]["outcome"] == "FOUND"
        refused = _refused(gateway, NHS)
        other_user = gateway.post(
            {"query": SHORT},
            gateway.token("gp", name="Someone Else"),
        ).json()
        audit = gateway.components.audit.records()
    assert _code(refused) == "RATE_LIMITED"
    assert "Amelia" not in str(refused)
    assert other_user["data"]["child"]["outcome"] == "FOUND"
    assert [r["outcome"] for r in audit][-2] == "REFUSED"
    assert audit[-2]["error_code"] == "RATE_LIMITED"


def test_refusals_at_a_limit_reach_the_alerts_feed_but_not_the_override_alerts(
    tmp_path, sources, capsys
):
    """Information governance reads possible trawling in `audit alerts`, beside the overrides,
    and auditors in GraphQL's limitAlerts; overrideAlerts still lists overrides only."""
    with running_gateway(
        tmp_path, sources, lookups_per_user_per_minute=2, distinct_children_per_user_per_day=1
    ) as gateway:
        for _ in range(2):
            gateway.lookup("gp", NHS, "DIRECT_CARE")
        minute = _refused(gateway, NHS)
        gateway.post({"query": SHORT}, gateway.token("gp", name="Second User"))
        cap = _refused(gateway, synthetic_nhs(11), name="Second User")
        overrides = gateway.post(
            {"query": "{ overrideAlerts { kind auditId } }"}, gateway.token("auditor")
        ).json()
        feed = "{ limitAlerts { kind auditId subject role organisation } }"
        limit_alerts = gateway.post({"query": feed}, gateway.token("auditor")).json()
        not_for_a_gp = gateway.post({"query": feed}, gateway.token("gp", name="Third User")).json()
        state = str(gateway.state_dir)
    assert (_code(minute), _code(cap)) == ("RATE_LIMITED", "LOOKUP_CAP_REACHED")
    assert main(["audit", "alerts", "--state-dir", state, "--kind", "RATE_LIMITED"]) == 0
    minutes = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["audit", "alerts", "--state-dir", state]) == 0
    every = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["kind"], a["subject"]) for a in minutes] == [("RATE_LIMITED", "dev:ORG1:Test User")]
    assert [(a["kind"], a["subject"]) for a in every] == [
        ("RATE_LIMITED", "dev:ORG1:Test User"),
        ("DISTINCT_CHILDREN_CAP", "dev:ORG1:Second User"),
    ]
    assert overrides["data"]["overrideAlerts"] == []
    in_graphql = limit_alerts["data"]["limitAlerts"]
    assert [(a["kind"], a["subject"], a["role"], a["auditId"]) for a in in_graphql] == [
        (a["kind"], a["subject"], a["role"], a["audit_id"]) for a in every
    ]
    assert _code(not_for_a_gp) == "FORBIDDEN"
    assert NHS not in str(every) + str(limit_alerts)


def test_limit_alerts_in_graphql_stop_at_their_maximum_oldest_first_and_read_on_from_the_last(
    tmp_path, sources, monkeypatch
):
    monkeypatch.setattr(resolvers.query, "MAX_READ", 2)
    feed = "query($since: DateTime) { limitAlerts(since: $since) { auditId at } }"
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=1) as gateway:
        gateway.lookup("gp", NHS, "DIRECT_CARE")
        codes = [_code(_refused(gateway, NHS)) for _ in range(3)]
        auditor = gateway.token("auditor")
        first = gateway.post({"query": feed}, auditor).json()["data"]["limitAlerts"]
        since = {"since": first[-1]["at"]}
        then = gateway.post({"query": feed, "variables": since}, auditor).json()
        refused = [
            r["audit_id"] for r in gateway.components.audit.records() if r["outcome"] == "REFUSED"
        ]
    assert codes == ["RATE_LIMITED"] * 3
    assert len(refused) == 3
    assert [a["auditId"] for a in first] == refused[:2]
    assert [a["auditId"] for a in then["data"]["limitAlerts"]] == refused[1:]


def test_information_governance_reads_the_alerts_one_line_per_user(tmp_path, sources, capsys):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=1) as gateway:
        for name, refusals in (("Busy User", 3), ("Other User", 1)):
            gateway.post({"query": SHORT}, gateway.token("gp", name=name))
            for _ in range(refusals):
                _refused(gateway, NHS, name=name)
        alerts = gateway.components.audit.alerts()
        state = str(gateway.state_dir)
    assert main(["audit", "alerts", "--state-dir", state, "--by-user"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    busy = [a["at"] for a in alerts if a["subject"] == "dev:ORG1:Busy User"]
    assert lines == [
        {
            "subject": "dev:ORG1:Busy User",
            "organisation": "ORG1",
            "kind": "RATE_LIMITED",
            "alerts": 3,
            "first": busy[0],
            "last": busy[-1],
        },
        {
            "subject": "dev:ORG1:Other User",
            "organisation": "ORG1",
            "kind": "RATE_LIMITED",
            "alerts": 1,
            "first": alerts[-1]["at"],
            "last": alerts[-1]["at"],
        },
    ]


def test_an_organisation_over_its_limit_is_refused_whoever_asks(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_organisation_per_minute=2) as gateway:
        for name in ("A", "B"):
            gateway.post(
                {"query": SHORT},
                gateway.token("gp", org="ORGX", name=name),
            )
        third = gateway.post(
            {"query": SHORT},
            gateway.token("gp", org="ORGX", name="C"),
        ).json()
        [refused] = [r for r in gateway.components.audit.records() if r["outcome"] == "REFUSED"]
        [alert] = gateway.components.audit.alerts()
    assert _code(third) == "RATE_LIMITED"
    assert "from your organisation" in third["errors"][0]["message"]
    assert refused["error_code"] == alert["kind"] == "ORGANISATION_RATE_LIMITED"
    assert alert["subject"] == "dev:ORGX:C"


def test_the_distinct_children_cap_refuses_new_children_but_not_ones_already_seen(
    tmp_path, sources
):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=2) as gateway:
        first = gateway.lookup("gp", NHS, "DIRECT_CARE")
        second = gateway.lookup("gp", synthetic_nhs(11), "DIRECT_CARE")
        third = _refused(gateway, synthetic_nhs(12))
        again = gateway.lookup("gp", NHS, "DIRECT_CARE")
        audit = gateway.components.audit.records()
    assert first["data"]["child"]["outcome"] == "FOUND"
    assert second["data"]["child"]["outcome"] == "NOT_FOUND"
    assert _code(third) == "LOOKUP_CAP_REACHED"
    assert again["data"]["child"]["outcome"] == "FOUND"
    refused = [r for r in audit if r["outcome"] == "REFUSED"]
    assert [r["error_code"] for r in refused] == ["DISTINCT_CHILDREN_CAP"]


@pytest.fixture(scope="module")
def known_at_school(tmp_path_factory):
    """A child the GP practice knows by NHS number and whose school knows by both it and a UPN."""
    tmp = tmp_path_factory.mktemp("limits-school")
    with reference_connectors(
        tmp, {"health": [health_record()], "education": [school_record()]}
    ) as sources:
        yield sources


def test_one_child_looked_up_by_nhs_number_and_then_by_upn_counts_once(tmp_path, known_at_school):
    upn = school_record().identifiers.upn
    with running_gateway(tmp_path, known_at_school, distinct_children_per_user_per_day=1) as gw:
        first = gw.lookup("gp", NHS, "DIRECT_CARE")
        by_upn = gw.lookup_by_upn("gp", upn)
        another = _refused(gw, synthetic_nhs(15))
    # restarted: the links are read back from the audit log
    with running_gateway(tmp_path, known_at_school, distinct_children_per_user_per_day=1) as gw:
        again_by_upn = gw.lookup_by_upn("gp", upn)
        another_after = _refused(gw, synthetic_nhs(16))
    assert first["data"]["child"]["outcome"] == "FOUND"
    assert by_upn["data"]["child"]["outcome"] == "FOUND"
    assert again_by_upn["data"]["child"]["outcome"] == "FOUND"
    assert _code(another) == _code(another_after) == "LOOKUP_CAP_REACHED"


def test_the_cap_survives_a_gateway_restart(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway:
        gateway.lookup("gp", NHS, "DIRECT_CARE")
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway:
        assert _code(_refused(gateway, synthetic_nhs(13))) == "LOOKUP_CAP_REACHED"


def test_a_request_a_rate_limit_refuses_is_429_with_retry_after_in_either_media_type(
    tmp_path, sources
):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=1) as gateway:
        token = gateway.token("gp")
        assert gateway.post({"query": SHORT}, token).status_code == 200
        answers = {
            accept: httpx.post(
                f"{gateway.url}/graphql",
                json={"query": SHORT},
                headers={"authorization": f"Bearer {token}", "accept": accept},
            )
            for accept in (GRAPHQL_RESPONSE_JSON, JSON)
        }
    for accept, response in answers.items():
        assert response.status_code == 429
        assert response.headers["retry-after"] == "60"  # the per-minute window, at the latest
        assert response.headers["content-type"].startswith(accept)
        assert _code(response.json()) == "RATE_LIMITED"


def test_a_request_the_daily_cap_refuses_is_429_until_the_next_utc_midnight(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=1) as gateway:
        gateway.lookup("gp", NHS, "DIRECT_CARE")
        asked = datetime.now(UTC)
        refused = gateway.post(
            {"query": LOOKUP, "variables": {"nhs": synthetic_nhs(14), "purpose": "DIRECT_CARE"}},
            gateway.token("gp"),
        )
    midnight = (asked + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert refused.status_code == 429
    assert abs(int(refused.headers["retry-after"]) - (midnight - asked).total_seconds()) < 5
    assert _code(refused.json()) == "LOOKUP_CAP_REACHED"


def _aliased(nhs_numbers):
    lookups = " ".join(
        f'c{i}: child(nhsNumber: "{nhs}", purpose: DIRECT_CARE) {{ outcome }}'
        for i, nhs in enumerate(nhs_numbers)
    )
    return f"{{ {lookups} }}"


async def _burst(gateway, token, batches):
    """Send every batch at once, each as one request of aliased lookups."""
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(
            *(
                client.post(
                    f"{gateway.url}/graphql",
                    json={"query": _aliased(batch)},
                    headers={"authorization": f"Bearer {token}"},
                )
                for batch in batches
            )
        )


def _admitted_and_refused(gateway, lookups):
    """From the audit log, once all `lookups` are in it: a request whose aliases failed answers
    with the first error while its other aliases are still running, but every lookup, admitted or
    refused, is audited."""
    audit = eventually(
        lambda: (r := gateway.components.audit.records(limit=100_000)) and len(r) >= lookups and r
    )
    admitted = [r for r in audit if r["outcome"] != "REFUSED"]
    refused = [r["error_code"] for r in audit if r["outcome"] == "REFUSED"]
    return admitted, refused


CHILDREN = [synthetic_nhs(100 + i) for i in range(120)]


def test_simultaneous_aliased_requests_cannot_beat_the_per_minute_limit(tmp_path, sources):
    with running_gateway(tmp_path, sources, lookups_per_user_per_minute=20) as gateway:
        token = gateway.token("gp", name="Harvester")
        asyncio.run(_burst(gateway, token, [CHILDREN[i * 10 : (i + 1) * 10] for i in range(6)]))
        admitted, refused = _admitted_and_refused(gateway, 60)
    assert len(admitted) == 20
    assert refused == ["RATE_LIMITED"] * 40


def test_simultaneous_aliased_requests_cannot_beat_the_distinct_children_cap(tmp_path, sources):
    with running_gateway(tmp_path, sources, distinct_children_per_user_per_day=25) as gateway:
        token = gateway.token("gp", name="Harvester")
        for burst in range(2):
            start = burst * 60
            batches = [CHILDREN[start + i * 15 : start + (i + 1) * 15] for i in range(4)]
            asyncio.run(_burst(gateway, token, batches))
        admitted, refused = _admitted_and_refused(gateway, 120)
    assert len({r["access"]["child_ref"] for r in admitted}) == 25
    assert refused == ["DISTINCT_CHILDREN_CAP"] * 95


# --- the in-process limits alone, on a real audit store and a clock the test moves -------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    yield s
    s.close()


def _limits(store, clock, *, per_minute=1000, per_day=1000):
    return InProcessLimits(LimitSettings(per_minute, 1_000_000, per_day), store, clock=clock)


def _caller(name):
    return Caller(f"dev:ORG:{name}", name, "gp", "ORG")


@pytest.mark.anyio
async def test_children_reserved_but_not_yet_audited_still_count_after_the_log_is_reread(store):
    clock = Clock()
    limits = _limits(store, clock, per_day=3)
    harvester = _caller("Harvester")
    for child in ("c1", "c2", "c3"):
        assert await limits.reserve(harvester, child) is None

    clock.now += limits_module.CHILDREN_REFRESH_S + 1  # the set is re-read from the audit log,
    # which holds none of the three yet: their lookups are still running

    assert await limits.reserve(harvester, "c4") == DISTINCT_CHILDREN_CAP
    assert await limits.reserve(harvester, "c2") is None


@pytest.mark.anyio
async def test_state_for_users_no_longer_active_is_let_go(store):
    clock = Clock()
    limits = _limits(store, clock)
    for i in range(500):
        assert await limits.reserve(_caller(f"user {i}"), f"child {i}") is None
    assert limits.tracked() >= 500

    clock.now += limits_module.IDLE_S + limits_module.SWEEP_EVERY_S
    assert await limits.reserve(_caller("late"), "child x") is None

    assert limits.tracked() <= 3  # the late user (window and children) and the organisation


@pytest.mark.anyio
async def test_a_child_linked_to_another_pseudonym_is_not_counted_again_by_it(store):
    limits = _limits(store, Clock(), per_day=2)
    await a_linked_pseudonym_is_the_child_already_counted(limits, limits, _caller("Harvester"))


@pytest.mark.anyio
async def test_the_links_in_the_audit_log_count_one_child_once(store):
    made = access(at=datetime.now(UTC), subject=_caller("Harvester").subject, child_ref="nhs:x")
    shown = [AuditField("health", "nhs_number")]
    await store.append(audit_record("a1", access=made, released=shown, linked_refs=["upn:y"]))
    limits = _limits(store, Clock(), per_day=2)
    harvester = _caller("Harvester")
    assert await limits.reserve(harvester, "upn:y") is None
    assert await limits.reserve(harvester, "nhs:z") is None
    assert await limits.reserve(harvester, "nhs:w") == DISTINCT_CHILDREN_CAP


def test_children_seen_counts_children_not_pseudonyms():
    seen = ChildrenSeen()
    seen.add("nhs:x")
    seen.link("nhs:x", ["upn:y", "nhs:x"])
    assert len(seen) == 1
    assert "upn:y" in seen
    assert "upn:q" not in seen
    seen.add("upn:q")
    seen.add("search:s")
    seen.link("search:s", ["nhs:r"])
    assert len(seen) == 3
    seen.link("upn:q", ["upn:y", "nhs:r"])  # three lookups, found to be one child
    assert len(seen) == 1
    groups = seen.children()
    assert len(set(groups.values())) == 1
    assert set(groups) == {
        "nhs:x",
        "upn:y",
        "upn:q",
        "search:s",
        "nhs:r",
    }
    seen.link("nhs:new", ["upn:new"])  # a pseudonym not seen before is a child counted
    assert len(seen) == 2


def test_children_seen_from_the_log_never_loses_a_child_counted_here():
    seen = ChildrenSeen()
    seen.add("nhs:reserved")
    seen.update({"nhs:x": {"upn:y"}, "upn:y": set(), "nhs:z": set()})
    assert len(seen) == 3
    assert ChildrenSeen.of({"nhs:x": {"upn:y"}, "upn:y": {"nhs:x"}}).children() == {
        "nhs:x": "nhs:x",
        "upn:y": "nhs:x",
    }


@pytest.mark.anyio
async def test_a_link_to_a_child_not_counted_today_counts_it_today(store):
    limits = _limits(store, Clock(), per_day=2)
    await a_link_for_a_child_not_counted_today_counts_it(limits, _caller("Harvester"))


@pytest.mark.anyio
async def test_a_role_given_its_own_daily_cap_is_held_to_it(store):
    settings = LimitSettings(1000, 1_000_000, 2, distinct_children_per_day_by_role={"auditor": 4})
    limits = InProcessLimits(settings, store, clock=Clock())
    auditor = Caller("dev:ORG:Audrey", "Audrey", "auditor", "ORG")
    await a_role_with_its_own_cap_is_held_to_it(limits, _caller("Pat"), auditor)
