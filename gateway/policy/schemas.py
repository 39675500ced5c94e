"""JSON Schemas of the two policy entrypoints, generated from the models the gateway validates with.

A policy officer writing Rego, or anyone running the bundle in their own OPA, needs the exact shape
of each input and answer. The schemas are generated, never written by hand, so they cannot drift
from `gateway.policy.decisions`; docs/policy-entrypoints.schema.json is the committed copy, and a
test fails when it is stale. Regenerate it with
`python -m gateway.policy.schemas > docs/policy-entrypoints.schema.json`.

Inputs are described as the gateway serialises them (what the policy receives); answers as the
gateway validates them (what the policy must return).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.policy.decisions import PlanDecision, PlanInput, ReleaseDecision, ReleaseInput
from gateway.policy.engine import PLAN_ENTRYPOINT, RELEASE_ENTRYPOINT

# The dialect pydantic generates.
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def entrypoint_schemas() -> dict[str, Any]:
    """One entry per entrypoint (`data.childlookup.plan.decision`, ...) with input and output."""
    return {
        f"data.{entrypoint.replace('/', '.')}": {
            "input": {"$schema": _DIALECT, **input_model.model_json_schema(mode="serialization")},
            "output": {"$schema": _DIALECT, **output_model.model_json_schema(mode="validation")},
        }
        for entrypoint, input_model, output_model in (
            (PLAN_ENTRYPOINT, PlanInput, PlanDecision),
            (RELEASE_ENTRYPOINT, ReleaseInput, ReleaseDecision),
        )
    }


if __name__ == "__main__":
    print(json.dumps(entrypoint_schemas(), indent=2))
