"""Per-field policy: which sources to ask before fan-out, and what leaves the gateway after it.

The Rego bundle in `policies/` decides; this package loads it, asks it the two questions of
docs/policy-decisions.md and turns every failure into `PolicyError`, so the gateway fails closed.
"""

from gateway.policy.bundle import PolicyBundle, RuleRef, load_bundle
from gateway.policy.decisions import (
    DenialCode,
    PlanDecision,
    PlanInput,
    PlanSource,
    ReleaseChild,
    ReleaseDecision,
    ReleasedField,
    ReleaseInput,
    ReleaseRecord,
    WithheldField,
    WithholdingReason,
)
from gateway.policy.engine import PolicyEngine, RegoPolicyEngine, RemotePolicyEngine
from gateway.policy.errors import PolicyError
from gateway.policy.testing import (
    PolicyTestOutcome,
    PolicyTestReport,
    PolicyTestResult,
    policy_test_main,
    run_policy_tests,
)

__all__ = [
    "DenialCode",
    "PlanDecision",
    "PlanInput",
    "PlanSource",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "PolicyTestOutcome",
    "PolicyTestReport",
    "PolicyTestResult",
    "RegoPolicyEngine",
    "ReleaseChild",
    "ReleaseDecision",
    "ReleaseInput",
    "ReleaseRecord",
    "ReleasedField",
    "RemotePolicyEngine",
    "RuleRef",
    "WithheldField",
    "WithholdingReason",
    "load_bundle",
    "policy_test_main",
    "run_policy_tests",
]
