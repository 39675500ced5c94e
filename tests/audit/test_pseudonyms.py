"""Pseudonyms: a child's reference in the audit log, stable under one key and useless without it."""

import pytest

from gateway.audit import Pseudonymiser
from tests.factories import AUDIT_KEY, NHS


def test_pseudonyms_are_stable_per_key_and_differ_across_keys():
    a, b = Pseudonymiser(AUDIT_KEY), Pseudonymiser(b"x" * 32)
    assert a.ref("nhs", NHS) == a.ref("nhs", NHS)
    assert a.ref("nhs", NHS) != b.ref("nhs", NHS)
    assert a.ref("nhs", NHS) != a.ref("record", NHS)
    assert NHS not in a.ref("nhs", NHS)


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymiser(b"short")
