"""The national benchmark's pure parts (bench.national): how a GraphQL answer is scored against the
truth, how lookups are summarised and the locator's size worked out. No stack, no timing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from bench.national import (
    Measured,
    by_kind_and_stratum,
    identify,
    locator_footprint,
    measure,
    percentile,
    sample_children,
    summarise,
)
from connectors.protocol import Sex
from connectors.synthetic.national import ChildTruth


def _child(
    holders: tuple[str, ...] = ("gp_y00001", "la_e0800002", "school_100003"),
    *,
    upn: str | None = "A123456789012",
    moved_authority: bool = False,
    moved_school: bool = False,
    child: str = "child-1",
) -> ChildTruth:
    return ChildTruth(
        child=child,
        nhs_number="9434765919",
        upn=upn,
        holders=holders,
        moved_authority=moved_authority,
        moved_school=moved_school,
        given="Amelia",
        family="Hart",
        date_of_birth=date(2016, 4, 2),
        sex=Sex.FEMALE,
        postcode="LS6 2AB",
    )


def _source(name: str, status: str, matched: int = 0, *why: str) -> dict[str, Any]:
    return {"source": name, "status": status, "recordsMatched": matched, "askedBecause": list(why)}


def _answer(*sources: dict[str, Any], complete: bool = True) -> dict[str, Any]:
    return {"data": {"child": {"outcome": "FOUND", "complete": complete, "sources": sources}}}


ANSWER = _answer(
    _source("health", "ANSWERED", 1, "CONFIGURED"),
    _source("education", "ANSWERED", 1, "CONFIGURED"),
    _source("gp_y00001", "ANSWERED", 1, "LOCATED", "ROUTED_BY_GP"),
    _source("la_e0800002", "NO_RECORD", 0, "ROUTED_BY_ADDRESS"),
    _source("la_e0800009", "NO_RECORD", 0, "ROUTED_BY_ADDRESS"),
    _source("school_100003", "ANSWERED", 2, "LOCATED"),
    _source("school_100004", "NOT_ASKED"),
    _source("locator", "ANSWERED", 0, "CONFIGURED"),
)


def test_a_lookup_counts_the_sources_asked_with_and_without_identity_sources_and_locator() -> None:
    measured = measure(ANSWER, _child(), "nhs_number", 12.5)

    assert measured.asked == 7  # NOT_ASKED is not asked
    assert measured.asked_agencies == 4
    assert measured.in_vain == 2


def test_recall_counts_holders_that_answered_with_a_matched_record() -> None:
    measured = measure(ANSWER, _child(), "nhs_number", 12.5)

    assert (measured.holders, measured.found) == (3, 2)
    assert measured.recall == pytest.approx(2 / 3)
    assert measured.missed == ("la_e0800002:NO_RECORD:ROUTED_BY_ADDRESS",)


def test_a_holder_the_answer_does_not_name_is_missed_as_not_asked() -> None:
    measured = measure(ANSWER, _child(("gp_y00001", "gp_y00077")), "upn", 1.0)

    assert measured.recall == 0.5
    assert measured.missed == ("gp_y00077:not asked",)
    assert measured.locator == "ANSWERED"


def test_sources_that_gave_no_usable_answer_are_counted_by_kind() -> None:
    answer = _answer(
        _source("health", "ANSWERED", 1, "CONFIGURED"),
        {**_source("gp_y00001", "TIMED_OUT", 0, "ROUTED_BY_GP"), "failureCode": "TIMEOUT"},
        {**_source("locator", "FAILED", 0, "CONFIGURED"), "failureCode": "ANSWER_NOT_TRUSTED"},
        complete=False,
    )

    measured = measure(answer, _child(("gp_y00001",)), "nhs_number", 1.0)

    assert measured.failed == (
        "gp_y00001:TIMED_OUT:TIMEOUT",
        "locator:FAILED:ANSWER_NOT_TRUSTED",
    )
    assert measured.locator == "FAILED"
    assert summarise([measured])["sources_failed"] == {
        "gp:TIMED_OUT:TIMEOUT": 1,
        "locator:FAILED:ANSWER_NOT_TRUSTED": 1,
    }


def test_a_child_no_agency_holds_is_not_scored() -> None:
    measured = measure(ANSWER, _child(()), "demographics", 1.0)

    assert measured.recall is None
    assert summarise([measured])["no_holder"] == 1
    assert summarise([measured])["recall"] is None


def test_an_answer_with_errors_is_an_incomplete_error_that_finds_nobody() -> None:
    errors = {"errors": [{"message": "no", "extensions": {"code": "RATE_LIMITED"}}], "data": None}

    measured = measure(errors, _child(), "nhs_number", 3.0)

    assert (measured.outcome, measured.complete, measured.asked) == ("ERROR:RATE_LIMITED", False, 0)
    assert measured.recall == 0


def _measured(
    *, found: int, holders: int = 2, complete: bool = True, asked: int = 6, ms: float = 10.0
) -> Measured:
    return Measured(
        child="c",
        nhs_number="9434765919",
        kind="nhs_number",
        stratum="stayed",
        latency_ms=ms,
        outcome="FOUND",
        complete=complete,
        asked=asked,
        asked_agencies=asked - 3,
        in_vain=1,
        holders=holders,
        found=found,
        missed=(),
        locator="ANSWERED",
    )


def test_recall_is_pooled_over_holders_and_separated_where_every_agency_answered() -> None:
    lookups = [
        _measured(found=2),
        _measured(found=1, holders=4, complete=False),
        _measured(found=0, holders=0),
    ]

    summary = summarise(lookups)

    assert summary["recall"] == pytest.approx(3 / 6, abs=1e-4)
    assert summary["recall_when_complete"] == 1.0
    assert summary["lookups_recall_below_1"] == 1
    assert summary["no_holder"] == 1
    assert summary["complete_rate"] == pytest.approx(2 / 3, abs=1e-4)


def test_the_summary_gives_the_median_sources_asked_and_latency_percentiles() -> None:
    lookups = [_measured(found=2, asked=a, ms=float(a)) for a in (5, 6, 6, 9)]

    summary = summarise(lookups)

    assert summary["asked_median"] == 6
    assert summary["agencies_asked_median"] == 3
    assert summary["asked_max"] == 9
    assert (summary["p50_ms"], summary["p99_ms"]) == (6.0, 9.0)


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 50) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


def test_lookups_are_reported_per_kind_and_per_stratum() -> None:
    stayed = _measured(found=2)
    moved = replace(stayed, stratum="moved_authority", kind="upn")

    report = by_kind_and_stratum([stayed, moved])

    assert set(report) == {"nhs_number", "upn"}
    assert set(report["upn"]) == {"all", "moved_authority"}


def test_the_sample_over_samples_movers_and_is_repeatable() -> None:
    truth = [_child(child=f"s{i}") for i in range(80)]
    truth += [_child(child=f"a{i}", moved_authority=True) for i in range(10)]
    truth += [_child(child=f"m{i}", moved_school=True) for i in range(10)]

    chosen = sample_children(truth, 20, seed=3)

    assert [c.child for c in chosen] == [c.child for c in sample_children(truth, 20, seed=3)]
    assert sum(c.moved_authority for c in chosen) == 5
    assert sum(c.moved_school and not c.moved_authority for c in chosen) == 5
    assert len({c.child for c in chosen}) == 20


def test_a_child_is_identified_as_a_practitioner_would() -> None:
    child = _child(upn=None)

    assert identify("nhs_number", child) == {"nhsNumber": "9434765919"}
    assert identify("upn", child) is None
    assert identify("demographics", child) == {
        "demographics": {
            "givenName": "Amelia",
            "familyName": "Hart",
            "dateOfBirth": "2016-04-02",
            "postcode": "LS6 2AB",
            "sex": "FEMALE",
        }
    }


def test_the_locator_footprint_is_per_holding_per_child_and_per_million_children() -> None:
    footprint = locator_footprint(
        store_bytes=1_200_000, holdings_bytes=1_000_000, holdings=10_000, children=4_000
    )

    assert footprint["bytes_per_holding"] == 120.0
    assert footprint["holdings_bytes_per_holding"] == 100.0
    assert footprint["holdings_per_child"] == 2.5
    assert footprint["store_mb_per_million_children"] == 300.0
