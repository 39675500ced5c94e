"""The committed JSON Schemas of the policy entrypoints are the ones the code validates with."""

from __future__ import annotations

import json

from gateway.config import REPO_ROOT
from gateway.policy import entrypoint_schemas, load_bundle
from tests.factories import POLICY_DIR

COMMITTED = REPO_ROOT / "docs" / "policy-entrypoints.schema.json"


def test_committed_schemas_match_the_code():
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))

    assert committed == entrypoint_schemas(), (
        "docs/policy-entrypoints.schema.json is stale; regenerate it with "
        "`python -m gateway.policy.schemas > docs/policy-entrypoints.schema.json`"
    )


def test_there_is_one_schema_pair_per_entrypoint_the_bundle_defines():
    defined = {rule.ref for rule in load_bundle(POLICY_DIR).rules()}

    assert set(entrypoint_schemas()) <= defined
    assert set(entrypoint_schemas()) == {
        "data.childlookup.plan.decision",
        "data.childlookup.release.decision",
    }


def test_decision_schemas_forbid_keys_the_gateway_would_reject():
    schemas = entrypoint_schemas()

    for entrypoint in schemas.values():
        assert entrypoint["output"]["additionalProperties"] is False
        assert entrypoint["input"]["additionalProperties"] is False
