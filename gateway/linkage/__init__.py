"""Demographic record linkage: is this record the child asked for, or the same child as that one?

Sources share no identifier for many children, so the gateway scores pairs of people - a query
against a candidate, or two candidates against each other - with a Fellegi-Sunter model whose
weights and thresholds live in model.toml (justified in docs/matching.md).
"""

from gateway.linkage.model import Band, Comparison, LinkageConfigError, LinkageModel, Score
from gateway.linkage.person import Person

__all__ = ["Band", "Comparison", "LinkageConfigError", "LinkageModel", "Person", "Score"]
