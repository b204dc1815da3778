"""Preference metrics behind one interface: ``get_scorer(name)(images, prompts) -> tensor[B]``."""

from eval.metrics.base import PairwiseScorer, Scorer
from eval.metrics.registry import (
    PAPER_METRICS,
    SCORERS,
    ScorerSpec,
    available_scorers,
    get_scorer,
    scorer_class,
)

__all__ = [
    "PAPER_METRICS",
    "SCORERS",
    "PairwiseScorer",
    "Scorer",
    "ScorerSpec",
    "available_scorers",
    "get_scorer",
    "scorer_class",
]
