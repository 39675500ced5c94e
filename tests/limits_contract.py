"""What every `gateway.limits.AccessLimits` does with a lookup's links, run against the one
process's limits (test_limits) and those shared through Redis (test_redis_limits). Each scenario
takes limits whose daily cap is 2 children, unless it says otherwise; `first` and `second` share
one count (one process twice, or two processes on one Redis)."""

from gateway.limits import DISTINCT_CHILDREN_CAP, RATE_LIMITED, AccessLimits
from gateway.types import Caller


async def a_linked_pseudonym_is_the_child_already_counted(
    first: AccessLimits, second: AccessLimits, caller: Caller
) -> None:
    assert await first.reserve(caller, "nhs:x") is None
    await first.link(caller, "nhs:x", ["upn:y"])
    assert await second.reserve(caller, "upn:y") is None  # the same child
    assert await second.reserve(caller, "nhs:z") is None
    assert await first.reserve(caller, "nhs:w") == DISTINCT_CHILDREN_CAP


async def a_link_for_a_child_not_counted_today_counts_it(
    limits: AccessLimits, caller: Caller
) -> None:
    """A lookup admitted before midnight and audited after it, or one whose day Redis lost and
    read again from the log while it ran: its child is counted, one more than it should be rather
    than one less."""
    assert await limits.reserve(caller, "nhs:a") is None
    await limits.link(caller, "nhs:b", ["upn:b"])
    assert await limits.reserve(caller, "nhs:c") == DISTINCT_CHILDREN_CAP  # a and b counted
    assert await limits.reserve(caller, "upn:b") is None  # b's child


async def a_role_with_its_own_cap_is_held_to_it(
    limits: AccessLimits, practitioner: Caller, auditor: Caller
) -> None:
    """Limits whose daily cap is 2, and 4 for the auditor's role: each is held to their own."""
    for child in ("nhs:a", "nhs:b"):
        assert await limits.reserve(practitioner, child) is None
    assert await limits.reserve(practitioner, "nhs:c") == DISTINCT_CHILDREN_CAP
    for child in ("nhs:a", "nhs:b", "nhs:c", "nhs:d"):
        assert await limits.reserve(auditor, child) is None
    assert await limits.reserve(auditor, "nhs:e") == DISTINCT_CHILDREN_CAP


async def a_role_with_its_own_per_minute_limit_is_held_to_it(
    limits: AccessLimits, practitioner: Caller, auditor: Caller, other: Caller
) -> None:
    """Limits of 2 lookups a user a minute, 1 for the practitioner's role and 4 for the
    auditor's: each is held to their role's own, tighter or looser, and `other`, of a role not
    named, to the 2. One child throughout, so no daily cap refuses."""
    assert await limits.reserve(practitioner, "nhs:a") is None
    assert await limits.reserve(practitioner, "nhs:a") == RATE_LIMITED
    for _ in range(4):
        assert await limits.reserve(auditor, "nhs:a") is None
    assert await limits.reserve(auditor, "nhs:a") == RATE_LIMITED
    for _ in range(2):
        assert await limits.reserve(other, "nhs:a") is None
    assert await limits.reserve(other, "nhs:a") == RATE_LIMITED
