"""Limits a role may have of its own: each per-role map names only roles the system knows (the
policy's catalogue and the auditor roles), else the gateway refuses to start - a misspelt role
would leave that role on the general limit while the operator believes a tighter one holds; and
a role's own per-minute limit holds in one process and across processes on Redis alike."""

import json
import shutil

import pytest
from pydantic import ValidationError

from gateway.audit import SqliteAuditStore
from gateway.cli import main
from gateway.config import DEFAULT_POLICY_DIR, Settings
from gateway.limits import InProcessLimits, LimitSettings
from gateway.redis_limits import RedisLimits, redis_client
from gateway.types import Caller
from tests.factories import CHECKPOINT_KEY, NHS, health_record
from tests.limits_contract import a_role_with_its_own_per_minute_limit_is_held_to_it
from tests.stack import LOOKUP, reference_connectors, running_gateway

BY_ROLE_SETTINGS = (
    "distinct_children_per_user_per_day_by_role",
    "lookups_per_user_per_minute_by_role",
)


# --- start-up: only known roles ----------------------------------------------------------------


@pytest.mark.parametrize("setting", BY_ROLE_SETTINGS)
@pytest.mark.parametrize("role", ["social-worker", "Social_Worker", "auditors"])
def test_a_per_role_limit_naming_no_known_role_stops_start_up(setting, role):
    with pytest.raises(ValidationError) as refused:
        Settings(**{setting: {"social_worker": 10, role: 10}})
    message = str(refused.value)
    assert f"CHILDLOOKUP_{setting.upper()}" in message
    assert repr(role) in message
    for known in ("auditor", "gp", "health_visitor", "social_worker"):
        assert known in message


@pytest.mark.parametrize("setting", BY_ROLE_SETTINGS)
def test_per_role_limits_of_catalogued_and_auditor_roles_are_accepted(setting):
    settings = Settings(**{setting: {"social_worker": 10, "auditor": 2000}})
    assert getattr(settings, setting) == {"social_worker": 10, "auditor": 2000}


def test_the_auditor_roles_configured_are_the_auditor_roles_known():
    Settings(auditor_roles=("ig_lead",), lookups_per_user_per_minute_by_role={"ig_lead": 5})
    with pytest.raises(ValidationError, match="'auditor'"):
        Settings(auditor_roles=("ig_lead",), lookups_per_user_per_minute_by_role={"auditor": 5})


def test_the_roles_known_are_those_the_configured_policy_catalogues(tmp_path):
    policy = tmp_path / "policy"
    shutil.copytree(DEFAULT_POLICY_DIR, policy)
    data = json.loads((policy / "data.json").read_text(encoding="utf-8"))
    data["childlookup"]["roles"]["youth_worker"] = {"description": "Youth worker.", "grants": {}}
    (policy / "data.json").write_text(json.dumps(data), encoding="utf-8")
    Settings(policy_dir=policy, distinct_children_per_user_per_day_by_role={"youth_worker": 20})
    with pytest.raises(ValidationError, match="'youth_worker'"):
        Settings(distinct_children_per_user_per_day_by_role={"youth_worker": 20})


def test_per_role_limits_are_refused_when_the_policy_catalogue_cannot_be_read(tmp_path):
    with pytest.raises(ValidationError, match=r"cannot be checked against roles.*data\.json"):
        Settings(policy_dir=tmp_path, lookups_per_user_per_minute_by_role={"gp": 5})


def test_serve_refuses_to_start_with_a_misspelt_role_naming_it(monkeypatch, capsys):
    monkeypatch.setenv(
        "CHILDLOOKUP_DISTINCT_CHILDREN_PER_USER_PER_DAY_BY_ROLE", '{"social-worker": 50}'
    )
    assert main(["serve", "--config", "sources.toml"]) == 2
    error = capsys.readouterr().err
    assert "CHILDLOOKUP_DISTINCT_CHILDREN_PER_USER_PER_DAY_BY_ROLE" in error
    assert "'social-worker'" in error
    assert "social_worker" in error.split("'social-worker'", 1)[1]  # among the roles known


# --- a role's own per-minute limit ---------------------------------------------------------------


@pytest.fixture(params=["one process", "redis"])
async def limits(request, tmp_path):
    """The contract's limits, kept by one process or shared through Redis."""
    settings = LimitSettings(
        per_user_per_minute=2,
        per_organisation_per_minute=1_000_000,
        distinct_children_per_day=1000,
        per_user_per_minute_by_role={"gp": 1, "auditor": 4},
    )
    store = SqliteAuditStore(tmp_path / "audit.sqlite3", checkpoint_key=CHECKPOINT_KEY)
    if request.param == "one process":
        yield InProcessLimits(settings, store)
    else:
        url, prefix = request.getfixturevalue("redis_prefix")
        client = redis_client(url)
        yield RedisLimits(client, prefix, settings, store)
        await client.aclose()
    store.close()


@pytest.mark.anyio
async def test_a_role_given_its_own_per_minute_limit_is_held_to_it(limits):
    await a_role_with_its_own_per_minute_limit_is_held_to_it(
        limits,
        Caller("dev:ORG:Pat", "Pat", "gp", "ORG"),
        Caller("dev:ORG:Audrey", "Audrey", "auditor", "ORG"),
        Caller("dev:ORG:Sam", "Sam", "social_worker", "ORG"),
    )


def test_a_gateway_holds_a_role_to_its_per_minute_limit_from_the_settings(tmp_path):
    with (
        reference_connectors(tmp_path, {"health": [health_record()]}) as sources,
        running_gateway(
            tmp_path,
            sources,
            lookups_per_user_per_minute=2,
            lookups_per_user_per_minute_by_role={"gp": 1},
        ) as gateway,
    ):
        gp, visitor = gateway.token("gp", name="Pat"), gateway.token("health_visitor", name="Vi")
        lookup = {"query": LOOKUP, "variables": {"nhs": NHS, "purpose": "DIRECT_CARE"}}
        gps = [gateway.post(lookup, gp) for _ in range(2)]
        visitors = [gateway.post(lookup, visitor) for _ in range(2)]
    assert [r.status_code for r in gps] == [200, 429]
    assert gps[1].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert [r.json()["data"]["child"]["outcome"] for r in visitors] == ["FOUND", "FOUND"]
