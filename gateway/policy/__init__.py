"""Per-field policy at run time: which sources to ask before fan-out, and what leaves the gateway
after it.

The Rego bundle in `policies/` decides; this package loads it (in-process or from an OPA server),
asks it the two questions of docs/policy-decisions.md, logs every decision, reloads a vetted new
version live, and turns every failure into `PolicyError`, so the gateway fails closed. The policy
officers' tools (explain, diff, bundle archives) are in gateway.workbench and use this package
through the names below.
"""

from gateway.policy.bundle import (
    DATA_FILE,
    MANIFEST_FILE,
    PolicyBundle,
    RuleRef,
    load_bundle,
    package_of,
)
from gateway.policy.decision_log import DecisionLog, LoggedPolicy, rotated_decision_logs
from gateway.policy.decisions import (
    DenialCode,
    PlanDecision,
    PlanInput,
    PlanJustification,
    PlanSource,
    ReleaseChild,
    ReleaseDecision,
    ReleasedField,
    ReleaseInput,
    ReleaseRecord,
    WithheldField,
    WithholdingReason,
    parse_decision,
)
from gateway.policy.engine import (
    PLAN_ENTRYPOINT,
    RELEASE_ENTRYPOINT,
    PolicyEngine,
    RegoPolicyEngine,
    RemotePolicyEngine,
    policy_ready,
)
from gateway.policy.errors import PolicyError
from gateway.policy.loading import load_engine, policy_engine_from_settings
from gateway.policy.memo import MemoisedPolicyEngine
from gateway.policy.opa import OpaServerPolicyEngine
from gateway.policy.reload import PolicyReloader
from gateway.policy.schemas import entrypoint_schemas
from gateway.policy.snapshot import fingerprint, read_policy_files
from gateway.policy.testing import (
    PolicyTestOutcome,
    PolicyTestReport,
    PolicyTestResult,
    policy_test_main,
    run_policy_tests,
)
from gateway.policy.vetting import hand_down_passes, tested_version

__all__ = [
    "DATA_FILE",
    "MANIFEST_FILE",
    "PLAN_ENTRYPOINT",
    "RELEASE_ENTRYPOINT",
    "DecisionLog",
    "DenialCode",
    "LoggedPolicy",
    "MemoisedPolicyEngine",
    "OpaServerPolicyEngine",
    "PlanDecision",
    "PlanInput",
    "PlanJustification",
    "PlanSource",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "PolicyReloader",
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
    "entrypoint_schemas",
    "fingerprint",
    "hand_down_passes",
    "load_bundle",
    "load_engine",
    "package_of",
    "parse_decision",
    "policy_engine_from_settings",
    "policy_ready",
    "policy_test_main",
    "read_policy_files",
    "rotated_decision_logs",
    "run_policy_tests",
    "tested_version",
]
