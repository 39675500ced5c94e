import itertools
import math
import random

import pytest

from gateway.linkage.estimate import (
    MISSING,
    Estimate,
    LevelEstimate,
    combine_sessions,
    count_vectors,
    estimate_u_by_sampling,
    expectation_maximisation,
    level_shares,
)

# A small known model: four fields, matches 5% of the pairs.
LEVELS = {
    "given": ("EXACT", "CLOSE", "DIFFERENT"),
    "family": ("EXACT", "DIFFERENT"),
    "born": ("EXACT", "ONE_OFF", "DIFFERENT"),
    "sex": ("SAME", "DIFFERENT"),
}
M = {
    "given": {"EXACT": 0.85, "CLOSE": 0.10, "DIFFERENT": 0.05},
    "family": {"EXACT": 0.90, "DIFFERENT": 0.10},
    "born": {"EXACT": 0.80, "ONE_OFF": 0.15, "DIFFERENT": 0.05},
    "sex": {"SAME": 0.97, "DIFFERENT": 0.03},
}
U = {
    "given": {"EXACT": 0.02, "CLOSE": 0.08, "DIFFERENT": 0.90},
    "family": {"EXACT": 0.05, "DIFFERENT": 0.95},
    "born": {"EXACT": 0.01, "ONE_OFF": 0.10, "DIFFERENT": 0.89},
    "sex": {"SAME": 0.50, "DIFFERENT": 0.50},
}
LAMBDA = 0.05


def expected_counts(pairs: float = 1e6, missing: dict[str, float] | None = None):
    """Every vector with the number of pairs the known model expects for it; a field listed in
    `missing` is MISSING in that share of pairs, matches and non-matches alike."""
    missing = missing or {}
    counts: dict[tuple[str, ...], float] = {}
    choices = [(*LEVELS[f], MISSING) if f in missing else LEVELS[f] for f in LEVELS]
    for vector in itertools.product(*choices):
        match, non_match = LAMBDA * pairs, (1 - LAMBDA) * pairs
        for name, level in zip(LEVELS, vector, strict=True):
            gone = missing.get(name, 0.0)
            if level == MISSING:
                match, non_match = match * gone, non_match * gone
            else:
                match *= M[name][level] * (1 - gone)
                non_match *= U[name][level] * (1 - gone)
        counts[vector] = match + non_match
    return counts


def sampled_vectors(pairs: int, rng: random.Random):
    for _ in range(pairs):
        truth = M if rng.random() < LAMBDA else U
        yield [rng.choices(LEVELS[f], [truth[f][lv] for lv in LEVELS[f]])[0] for f in LEVELS]


def assert_close(estimate: Estimate, tolerance: float) -> None:
    for name, levels in LEVELS.items():
        for level in levels:
            found = estimate.levels[name][level]
            assert found.m == pytest.approx(M[name][level], abs=tolerance), (name, level, "m")
            assert found.u == pytest.approx(U[name][level], abs=tolerance), (name, level, "u")


def test_em_recovers_m_u_and_lambda_from_the_counts_a_known_model_expects():
    estimate = expectation_maximisation(
        expected_counts(), LEVELS, smoothing=0.0, tolerance=1e-10, max_iterations=1000
    )
    assert estimate.converged
    assert estimate.match_share == pytest.approx(LAMBDA, abs=1e-6)
    assert_close(estimate, 1e-6)


def test_em_recovers_m_and_u_from_vectors_sampled_from_a_known_model():
    counts = count_vectors(sampled_vectors(100_000, random.Random(7)))
    estimate = expectation_maximisation(counts, LEVELS)
    assert estimate.pairs == 100_000
    assert estimate.match_share == pytest.approx(LAMBDA, abs=0.005)
    assert_close(estimate, 0.02)


def test_em_with_u_fixed_estimates_only_m_and_lambda():
    start_far_off = {f: {lv: 1 / len(levels) for lv in levels} for f, levels in LEVELS.items()}
    estimate = expectation_maximisation(
        expected_counts(), LEVELS, fixed_u=U, start_m=start_far_off, match_share=0.3
    )
    assert estimate.u() == U
    assert estimate.match_share == pytest.approx(LAMBDA, abs=1e-4)
    assert_close(estimate, 1e-4)


def test_missing_values_are_left_out_of_their_field_and_change_no_estimate():
    counts = expected_counts(missing={"born": 0.3, "sex": 0.5})
    estimate = expectation_maximisation(counts, LEVELS, smoothing=0.0, tolerance=1e-10)
    assert set(estimate.levels["born"]) == set(LEVELS["born"])  # MISSING is not a level
    assert_close(estimate, 1e-5)


def test_a_field_left_out_of_a_session_keeps_its_starting_m():
    start = {f: {lv: 1 / len(levels) for lv in levels} for f, levels in LEVELS.items()}
    estimate = expectation_maximisation(
        expected_counts(), LEVELS, fixed_u=U, start_m=start, ignore={"born"}
    )
    assert estimate.estimated == {"given", "family", "sex"}
    assert estimate.m()["born"] == start["born"]
    assert estimate.levels["family"]["EXACT"].m == pytest.approx(0.9, abs=1e-3)


def test_a_level_no_pair_falls_in_still_has_a_finite_weight():
    counts = {vector: count for vector, count in expected_counts().items() if vector[0] != "CLOSE"}
    estimate = expectation_maximisation(counts, LEVELS)
    close = estimate.levels["given"]["CLOSE"]
    assert close.m > 0
    assert close.u > 0
    assert math.isfinite(close.weight)
    with pytest.raises(ValueError, match=r"given\.CLOSE: no pair is in this level"):
        expectation_maximisation(counts, LEVELS, smoothing=0.0)


def test_a_level_the_fields_do_not_have_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match=r"field 'family': level 'SWAPPED' is not one of"):
        expectation_maximisation({("EXACT", "SWAPPED", "EXACT", "SAME"): 1}, LEVELS)
    with pytest.raises(ValueError, match="has 2 levels for 4 fields"):
        expectation_maximisation({("EXACT", "EXACT"): 1}, LEVELS)


def test_the_posterior_of_a_vector_follows_the_estimate():
    estimate = expectation_maximisation(expected_counts(), LEVELS, fixed_u=U)
    strong = estimate.match_probability(("EXACT", "EXACT", "EXACT", "SAME"))
    weak = estimate.match_probability(("DIFFERENT", "DIFFERENT", "DIFFERENT", "SAME"))
    unknown = estimate.match_probability((MISSING, MISSING, MISSING, MISSING))
    assert strong > 0.99 > 0.001 > weak
    assert unknown == pytest.approx(estimate.match_share)


def test_u_from_random_pairs_is_the_share_of_chance_agreement():
    def compare(a: int, b: int) -> tuple[str]:
        assert a != b  # one set of records: never a record with itself
        return ("EXACT" if a % 10 == b % 10 else "DIFFERENT",)

    records = list(range(1000))
    u = estimate_u_by_sampling(
        records,
        records,
        compare,
        {"digit": ("EXACT", "DIFFERENT")},
        pairs=50_000,
        rng=random.Random(3),
    )
    # 99 of the 999 other records share a record's last digit.
    assert u["digit"]["EXACT"] == pytest.approx(99 / 999, abs=0.005)


def test_level_shares_count_each_distinct_vector_once_per_pair():
    counts = count_vectors([("A",), ("A",), ("B",), (MISSING,)])
    assert counts == {("A",): 2, ("B",): 1, (MISSING,): 1}
    assert level_shares(counts, {"f": ("A", "B")}, smoothing=0.0) == {"f": {"A": 2 / 3, "B": 1 / 3}}


def test_sessions_combine_by_averaging_each_field_over_the_sessions_that_estimated_it():
    def session(m_exact: float, estimated: set[str]) -> Estimate:
        levels = {
            name: {"EXACT": LevelEstimate(m_exact, 0.1), "DIFFERENT": LevelEstimate(0.5, 0.9)}
            for name in ("given", "born")
        }
        return Estimate(levels, 0.1, 5, True, 100, frozenset(estimated))

    combined = combine_sessions([session(0.8, {"given"}), session(0.6, {"given", "born"})])
    assert combined["given"]["EXACT"].m == pytest.approx(0.7)
    assert combined["born"]["EXACT"].m == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no session estimated field 'born'"):
        combine_sessions([session(0.8, {"given"})])
