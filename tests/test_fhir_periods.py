"""Plans, names and addresses whose period FHIR gives only to the month or year ("2024",
"2026-11"): a span of days, not a day. Compared as a day - or failing, as comparing the text with
a date did (every lookup of the child INTERNAL) - the answer would be a guess; where today falls
inside the span, whether a plan is in force is unknown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.patient import Patient

from connectors.fhir import CpisPlan, PlanKind, ResponsibleAuthority
from connectors.fhir.patients import record_from_patient
from connectors.fhir.periods import ANY_DAY, day_span
from connectors.fhir.plans import indicators, involvements, plans_from_flags
from connectors.fhir.resources import flag_resource
from connectors.fhir.terminology import NHS_NUMBER_SYSTEM

NHS = "9434765919"
TODAY = date(2026, 11, 29)
AUTHORITY = ResponsibleAuthority("Leeds City Council", "E08000035", "0113 222 4401")


def _flag(kind: PlanKind = PlanKind.CHILD_PROTECTION, **period: str) -> Flag:
    resource = flag_resource(CpisPlan(NHS, kind, None, AUTHORITY), "f1")
    resource["status"] = "active"
    if period:
        resource["period"] = period
    return Flag.model_validate(resource)


@pytest.mark.parametrize(
    ("moment", "span"),
    [
        ("2024", (date(2024, 1, 1), date(2024, 12, 31))),
        ("2024-02", (date(2024, 2, 1), date(2024, 2, 29))),
        (date(2024, 5, 3), (date(2024, 5, 3), date(2024, 5, 3))),
        # A moment is the day it falls on in England: 23:00Z in summer is the next day there.
        (datetime(2024, 5, 3, 23, 0, tzinfo=UTC), (date(2024, 5, 4), date(2024, 5, 4))),
        (datetime(2024, 5, 4, 0, 30, tzinfo=timezone(timedelta(hours=1))), (date(2024, 5, 4),) * 2),
        (datetime(2024, 5, 3, 22, 30, tzinfo=UTC), (date(2024, 5, 3), date(2024, 5, 3))),
        (datetime(2024, 12, 3, 23, 30, tzinfo=UTC), (date(2024, 12, 3), date(2024, 12, 3))),
        ("2024-13", ANY_DAY),
        ("soon", ANY_DAY),
        (None, None),
    ],
)
def test_a_moment_is_the_days_it_may_mean(moment, span):
    assert day_span(moment) == span


@pytest.mark.parametrize(
    ("period", "on_plan"),
    [
        ({"start": "2024"}, True),  # started in a year gone by: surely started
        ({"start": "2026"}, None),  # this year: perhaps not yet
        ({"start": "2027"}, False),
        ({"start": "2024-05-01", "end": "2026-11"}, None),  # ends this month: perhaps over
        ({"start": "2024-05-01", "end": "2026-12"}, True),
        ({"start": "2024-05-01", "end": "2025"}, False),
    ],
)
def test_a_plan_given_to_the_month_or_year_is_in_force_yes_no_or_unknown(period, on_plan):
    plans = plans_from_flags([_flag(**period)], NHS)

    shown = indicators(plans, TODAY)

    assert shown.child_protection_plan is on_plan
    assert shown.looked_after is False
    # An authority that may hold a plan is one to reach.
    reached = [i.organisation for i in involvements(plans, TODAY)]
    assert reached == ([] if on_plan is False else [AUTHORITY.name])


def test_an_involvement_is_since_a_day_only_when_a_start_gives_one():
    partial = plans_from_flags([_flag(start="2024")], NHS)
    later_partial = plans_from_flags([_flag(start="2025"), _flag(start="2024-05-01")], NHS)

    earlier_partial = plans_from_flags([_flag(start="2020-05"), _flag(start="2024-01-10")], NHS)

    assert [i.since for i in involvements(partial, TODAY)] == [None]
    assert [i.since for i in involvements(later_partial, TODAY)] == [date(2024, 5, 1)]
    assert [i.since for i in involvements(earlier_partial, TODAY)] == [None]


def test_a_plan_surely_in_force_outweighs_one_that_may_be():
    plans = plans_from_flags([_flag(start="2026"), _flag(start="2020-01-01")], NHS)

    assert indicators(plans, TODAY).child_protection_plan is True


def test_a_name_or_address_that_ended_in_a_year_gone_by_is_not_current():
    patient = Patient.model_validate(
        {
            "resourceType": "Patient",
            "id": NHS,
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": NHS}],
            "name": [
                {"use": "usual", "given": ["Amelia"], "family": "Old", "period": {"end": "2024"}},
                {"use": "usual", "given": ["Amelia"], "family": "Hart", "period": {"end": "2026"}},
            ],
            "address": [
                {"use": "home", "postalCode": "M1 1AA", "period": {"end": "2025-06"}},
                {"use": "home", "postalCode": "LS6 2AB", "period": {"start": "2025"}},
            ],
        }
    )

    record = record_from_patient(
        patient, [], record_id=NHS, today=TODAY, fetched_at=datetime(2026, 11, 29, tzinfo=UTC)
    )

    assert record is not None
    assert record.name is not None
    assert record.name.family == "Hart"
    assert record.address is not None
    assert record.address.postcode == "LS6 2AB"
