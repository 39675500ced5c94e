"""Parity: the policies give the same answers under regopy (rego-cpp) and under real OPA.

The gateway evaluates with rego-cpp in-process and with OPA when CHILDLOOKUP_OPA_URL is set;
rego-cpp departs from OPA in known places (see gateway.policy.interpreter). So every Rego test must
pass under OPA too, and a large generated set of plan and release inputs - every role x purpose x
child flag combination over several record shapes, plus hypothesis-generated ones - must get
identical decisions from `RegoPolicyEngine` and from OPA (opa-golib-python-bindings, which embeds
OPA v1.20). OPA is loaded from the tarball `childlookup policy bundle` writes, so this also proves
the shipped bundle is the policy that was tested.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.protocol import Caller, FieldId
from gateway.policy import (
    PlanDecision,
    PlanInput,
    PlanJustification,
    PlanSource,
    RegoPolicyEngine,
    ReleaseChild,
    ReleaseDecision,
    ReleaseInput,
    ReleaseRecord,
    RuleRef,
    load_bundle,
    package_of,
    parse_decision,
)
from tests.factories import POLICY_DIR
from tests.stack import RealOpa

opa_bindings = pytest.importorskip(
    "opa_bindings",
    reason="real OPA (opa-golib-python-bindings) is not installed; `./dev test` installs it",
)

ROLES = (*load_bundle(POLICY_DIR).data["childlookup"]["roles"], "ghost", "")
PURPOSES = (*load_bundle(POLICY_DIR).data["childlookup"]["purposes"], "BULK_EXPORT")
ALL_FIELDS = tuple(FieldId)
RECORD_SHAPES: tuple[tuple[ReleaseRecord, ...], ...] = (
    (),
    (ReleaseRecord(id="0", source="health", fields=ALL_FIELDS),),
    (
        ReleaseRecord(
            id="0",
            source="health",
            fields=(FieldId.NHS_NUMBER, FieldId.NAME, FieldId.ADDRESS, FieldId.GP_PRACTICE),
        ),
        ReleaseRecord(
            id="1",
            source="education",
            fields=(FieldId.NAME, FieldId.SCHOOL, FieldId.SENSITIVE_SERVICE_DETAILS),
        ),
        ReleaseRecord(
            id="2", source="social_care", fields=(FieldId.CARERS, FieldId.CHILD_PROTECTION_PLAN)
        ),
    ),
)
# None; one long word; each purpose's minimum in data.json; one word short of break-glass's.
JUSTIFICATIONS = tuple(
    PlanJustification(words=words, letters=letters)
    for words, letters in ((0, 0), (1, 20), (2, 8), (4, 20), (3, 40))
)
SOURCE_SHAPES: tuple[tuple[PlanSource, ...], ...] = (
    (),
    (PlanSource(name="health", provides=ALL_FIELDS, shield_authority=False),),
    (
        PlanSource(name="health", provides=(FieldId.NAME, FieldId.ADDRESS), shield_authority=False),
        PlanSource(name="education", provides=(FieldId.SCHOOL,), shield_authority=False),
        PlanSource(name="social_care", provides=(FieldId.NAME,), shield_authority=True),
    ),
)


@pytest.fixture(scope="module")
def opa(real_opa: RealOpa) -> RealOpa:
    """Real OPA holding the shipped bundle, loaded from its tarball."""
    return real_opa


@pytest.fixture(scope="module")
def rego() -> RegoPolicyEngine:
    return RegoPolicyEngine.from_directory(POLICY_DIR)


def opa_plan(opa: RealOpa, request: PlanInput) -> PlanDecision:
    return _opa_decide(opa, "childlookup/plan/decision", request, PlanDecision)


def opa_release(opa: RealOpa, request: ReleaseInput) -> ReleaseDecision:
    return _opa_decide(opa, "childlookup/release/decision", request, ReleaseDecision)


def _opa_decide(opa: RealOpa, path: str, request: Any, decision_type: Any) -> Any:
    answer = opa.document(path, request.model_dump(mode="json"))
    return parse_decision(json.dumps(answer), decision_type)


def diverging(inputs: list[Any], under_rego: Any, under_opa: Any) -> list[dict[str, Any]]:
    """The inputs the two engines decide differently, as JSON for a readable failure."""
    return [
        request.model_dump(mode="json")
        for request in inputs
        if anyio.run(under_rego, request) != under_opa(request)
    ]


def plan_inputs() -> list[PlanInput]:
    return [
        PlanInput(
            caller=Caller(role=role, organisation="X1"),
            purpose=purpose,
            justification=justification,
            sources=sources,
        )
        for role, purpose, justification, sources in itertools.product(
            ROLES, PURPOSES, JUSTIFICATIONS, SOURCE_SHAPES
        )
    ]


def release_inputs() -> list[ReleaseInput]:
    return [
        ReleaseInput(
            caller=Caller(role=role, organisation="X1"),
            purpose=purpose,
            child=ReleaseChild(
                shielded=shielded,
                restricted=restricted,
                shield_status_known=known,
                restriction_status_known=restriction_known,
            ),
            records=records,
        )
        for role, purpose, shielded, restricted, known, restriction_known, records in (
            itertools.product(
                ROLES,
                PURPOSES,
                (False, True),
                (False, True),
                (False, True),
                (False, True),
                RECORD_SHAPES,
            )
        )
    ]


# --- the bundle as OPA loads it ------------------------------------------------------------------


def test_the_shipped_bundle_holds_the_policy_modules_and_stays_within_its_roots(opa):
    assert set(opa.modules) == set(load_bundle(POLICY_DIR).policy_modules)
    for source in opa.modules.values():
        package = package_of(source)
        assert package is not None
        assert any(package.replace(".", "/").startswith(root) for root in opa.manifest["roots"])


def opa_with_tests(extra: dict[str, str] | None = None) -> tuple[Any, list[RuleRef]]:
    """Every module of the bundle, tests included (plus `extra`), in a fresh OPA."""
    bundle = load_bundle(POLICY_DIR)
    modules = {**bundle.modules, **(extra or {})}
    opa = opa_bindings.OpaEngine()
    opa.add_data(bundle.data)
    for path, source in modules.items():
        opa.add_policy(path, source)
    rules = replace(bundle, modules=modules).rules()
    return opa, [rule for rule in rules if rule.name.startswith("test_")]


def run_under_opa(opa: Any, test: RuleRef) -> Any:
    """OPA's test semantics: a test passes only when its rule evaluates to true. The bindings
    have no test runner, so each test rule is evaluated as a document."""
    try:
        return opa.eval_document(test.ref.removeprefix("data."))
    except opa_bindings.OpaUndefinedError:
        return "undefined"
    except opa_bindings.OpaError as error:
        return f"error: {error}"


def test_every_rego_test_passes_under_real_opa():
    opa, tests = opa_with_tests()

    results = {test.ref: run_under_opa(opa, test) for test in tests}

    assert len(tests) > 50
    assert {ref: value for ref, value in results.items() if value is not True} == {}


def test_a_deliberately_failing_rego_test_fails_under_real_opa_too():
    """The check above would be worthless if OPA called a false or undefined test a pass."""
    probe = (
        "package childlookup.parity_probe_test\n\n"
        "import rego.v1\n\n"
        'test_identity_is_address if data.childlookup.catalogue.identity_fields == {"address"}\n'
    )
    opa, tests = opa_with_tests({"parity_probe_test.rego": probe})

    [probe_test] = [test for test in tests if test.package == "childlookup.parity_probe_test"]

    assert run_under_opa(opa, probe_test) == "undefined"


# --- generated inputs: regopy and OPA decide alike -----------------------------------------------


def test_every_plan_input_is_decided_alike(opa, rego):
    inputs = plan_inputs()

    assert len(inputs) == len(ROLES) * len(PURPOSES) * len(JUSTIFICATIONS) * len(SOURCE_SHAPES)
    assert diverging(inputs, rego.plan, lambda request: opa_plan(opa, request)) == []


def test_every_release_input_is_decided_alike(opa, rego):
    inputs = release_inputs()

    assert len(inputs) == len(ROLES) * len(PURPOSES) * 16 * len(RECORD_SHAPES)
    assert diverging(inputs, rego.release, lambda request: opa_release(opa, request)) == []


_TEXT = st.text(max_size=12)
_ROLE = st.one_of(st.sampled_from(ROLES), _TEXT)
_PURPOSE = st.one_of(st.sampled_from(PURPOSES), _TEXT)
_FIELDS = st.lists(st.sampled_from(ALL_FIELDS), max_size=len(ALL_FIELDS), unique=True).map(tuple)
# Source names are validated by the gateway's config ([a-z][a-z0-9_]*), so only those are made.
_SOURCE_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)


@st.composite
def _plans(draw: st.DrawFn) -> PlanInput:
    return PlanInput(
        caller=Caller(role=draw(_ROLE), organisation=draw(_TEXT)),
        purpose=draw(_PURPOSE),
        justification=PlanJustification(
            letters=draw(st.integers(min_value=0, max_value=2_000)),
            words=draw(st.integers(min_value=0, max_value=400)),
        ),
        sources=tuple(
            PlanSource(name=name, provides=draw(_FIELDS), shield_authority=draw(st.booleans()))
            for name in draw(st.lists(_SOURCE_NAME, max_size=4, unique=True))
        ),
    )


@st.composite
def _releases(draw: st.DrawFn) -> ReleaseInput:
    count = draw(st.integers(min_value=0, max_value=4))
    return ReleaseInput(
        caller=Caller(role=draw(_ROLE), organisation=draw(_TEXT)),
        purpose=draw(_PURPOSE),
        child=ReleaseChild(
            shielded=draw(st.booleans()),
            restricted=draw(st.booleans()),
            shield_status_known=draw(st.booleans()),
            restriction_status_known=draw(st.booleans()),
        ),
        records=tuple(
            ReleaseRecord(id=str(index), source=draw(_SOURCE_NAME), fields=draw(_FIELDS))
            for index in range(count)
        ),
    )


_BOUNDED = settings(max_examples=200, deadline=None)


@_BOUNDED
@given(request=_plans())
def test_generated_plans_are_decided_alike(opa, rego, request):
    assert anyio.run(rego.plan, request) == opa_plan(opa, request)


@_BOUNDED
@given(request=_releases())
def test_generated_releases_are_decided_alike(opa, rego, request):
    assert anyio.run(rego.release, request) == opa_release(opa, request)
