"""Scorer registry: names -> scorer classes, imported lazily so toys never pull in open_clip/imscore."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from eval.metrics.base import Scorer
from npnet.errors import UserError


@dataclass(frozen=True)
class ScorerSpec:
    """Where a scorer lives and what it needs."""

    name: str
    target: str  # "module:Class"
    description: str
    needs_weights: bool
    toy: bool = False


SCORERS: dict[str, ScorerSpec] = {
    spec.name: spec
    for spec in (
        ScorerSpec("hpsv2", "eval.metrics.hpsv2:HPSv2Scorer", "HPSv2.1, 100 x cos (xswu/HPSv2)", True),
        ScorerSpec(
            "pickscore", "eval.metrics.pickscore:PickScoreScorer", "PickScore v1, logit_scale x cos", True
        ),
        ScorerSpec(
            "imagereward",
            "eval.metrics.imagereward:ImageRewardScorer",
            "ImageReward x 100 (imscore port)",
            True,
        ),
        ScorerSpec(
            "aes", "eval.metrics.aes:AestheticScorer", "LAION aesthetic predictor (CLIP ViT-L/14 + MLP)", True
        ),
        ScorerSpec(
            "clipscore",
            "eval.metrics.clipscore:CLIPScoreScorer",
            "CLIPScore 2.5 x max(cos, 0), ViT-B/32 (jmhessel/clipscore)",
            True,
        ),
        ScorerSpec("mps", "eval.metrics.mps:MPSScorer", "MPS overall (pairwise preference)", True),
        ScorerSpec("micro", "eval.metrics.micro:MicroScorer", "micro-world rule verifier in [0, 1]", False),
        ScorerSpec(
            "toy-brightness", "eval.metrics.toys:ToyBrightness", "TOY: mean luma (offline)", False, True
        ),
        ScorerSpec(
            "toy-colorfulness",
            "eval.metrics.toys:ToyColorfulness",
            "TOY: colourfulness (offline)",
            False,
            True,
        ),
    )
}
PAPER_METRICS = ("pickscore", "hpsv2", "aes", "imagereward", "clipscore", "mps")


def available_scorers() -> list[str]:
    """All registered scorer names (the paper's six, 'micro', and the offline toys)."""
    return list(SCORERS)


def scorer_class(name: str) -> type[Scorer]:
    """The scorer class for ``name`` (imports its module on first use)."""
    if name not in SCORERS:
        raise UserError(f"unknown scorer {name!r}; available: {', '.join(SCORERS)}")
    module_name, class_name = SCORERS[name].target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_scorer(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **kwargs
) -> Scorer:
    """Build (but do not load) scorer ``name``; extra kwargs go to its constructor (e.g. local paths)."""
    cls = scorer_class(name)
    try:
        return cls(device=device, dtype=dtype, **kwargs)
    except TypeError as err:
        raise UserError(f"bad options for scorer {name!r}: {err}") from err
