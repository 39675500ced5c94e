"""Demographic record linkage: is this record the child asked for, or the same child as that one?

Sources share no identifier for many children, so the gateway scores pairs of people - a query
against a candidate, or two candidates against each other - with a Fellegi-Sunter model whose
weights and thresholds live in model.toml (justified in docs/matching.md). The weights can be
estimated from the sources' own records (estimate.py) and exact name matches adjusted for how
common the name is (frequencies.py).
"""

from gateway.linkage.compare import FIELD_LEVELS, HOUSEHOLD_FAMILY_LEVELS, TWIN_LEVELS, Level
from gateway.linkage.estimate import (
    LevelEstimate,
    Vector,
    combine_sessions,
    expectation_maximisation,
    level_shares,
    sample_pairs,
)
from gateway.linkage.frequencies import FrequenciesError, NameFrequencies
from gateway.linkage.model import Band, Comparison, LinkageConfigError, LinkageModel, Score
from gateway.linkage.person import Person

__all__ = [
    "FIELD_LEVELS",
    "HOUSEHOLD_FAMILY_LEVELS",
    "TWIN_LEVELS",
    "Band",
    "Comparison",
    "FrequenciesError",
    "Level",
    "LevelEstimate",
    "LinkageConfigError",
    "LinkageModel",
    "NameFrequencies",
    "Person",
    "Score",
    "Vector",
    "combine_sessions",
    "expectation_maximisation",
    "level_shares",
    "sample_pairs",
]
