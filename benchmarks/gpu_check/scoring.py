"""Stages 4 and 5 of the GPU check: the paper's six metrics on the pairs, and the eval preset run.

Scorers come from ``eval.metrics.get_scorer`` (real weights, or random ones written by
``eval.metrics.random_weights`` for the offline plumbing run); the eval stage goes through
``eval.benchmark.run_benchmark`` with the check's service and scorers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.checks import EVAL_PRESET_FOR, PAIRS, CheckConfig
from npnet.errors import UserError


# -- stage 4: scores -----------------------------------------------------------------------------
def scorer_kwargs(config: CheckConfig, out: Path) -> dict[str, dict]:
    """Per-metric get_scorer kwargs: random checkpoints under OUT/random-scorers, or none (real weights)."""
    from eval.metrics import PAPER_METRICS
    from eval.metrics.random_weights import write_random_checkpoints

    if not config.random_scorers:
        return {}
    return write_random_checkpoints(out / "random-scorers", PAPER_METRICS, size=config.random_scorers)


def scorer_factory(config: CheckConfig, device: torch.device, kwargs: dict[str, dict]) -> Callable:
    """``factory(name)``: each scorer built and loaded once (the eval stage reuses the pair stage's)."""
    from eval.metrics import get_scorer
    from npnet.diffusion.loading import DTYPES

    built: dict[str, Any] = {}

    def factory(name: str):
        if name not in built:
            scorer = get_scorer(
                name, device=device, dtype=DTYPES[config.scorer_dtype], **kwargs.get(name, {})
            )
            built[name] = scorer.load()
        return built[name]

    return factory


def score_pairs(results: list, factory: Callable) -> dict[str, Any]:
    """The six metrics on the pairs: means per method, golden wins, MPS preference of golden over standard."""
    from eval.metrics import PAPER_METRICS

    prompts = [prompt for prompt, _ in PAIRS]
    standard = [r.images["standard"] for r in results]
    golden = [r.images["npnet"] for r in results]
    metrics = {}
    for name in PAPER_METRICS:
        scorer = factory(name)
        s, g = scorer.score(standard, prompts), scorer.score(golden, prompts)  # (4,) each
        entry = {"standard_mean": float(s.mean()), "npnet_mean": float(g.mean())}
        entry["npnet_wins"] = int((g > s).sum() if scorer.higher_is_better else (g < s).sum())
        if scorer.pairwise:
            entry["npnet_preference_pct"] = float(scorer.compare(golden, standard, prompts).mean() * 100)
        entry["finite"] = bool(torch.isfinite(s).all() and torch.isfinite(g).all())
        metrics[name] = entry
    return {"passed": all(m["finite"] for m in metrics.values()), "pairs": len(results), "metrics": metrics}


# -- stage 5: eval -------------------------------------------------------------------------------
def eval_config(config: CheckConfig, device: torch.device):
    """The model's eval preset (eval/presets.py) on ``eval_limit`` prompts, written under OUT/eval."""
    from eval.benchmark import BenchmarkConfig
    from eval.metrics import PAPER_METRICS
    from eval.presets import EVAL_PRESETS

    name, overrides = EVAL_PRESET_FOR[config.model]
    if name not in EVAL_PRESETS:
        raise UserError(f"eval preset {name!r} is not in eval/presets.py; choose from {list(EVAL_PRESETS)}")
    fields = {**EVAL_PRESETS[name], **overrides, "limit": config.eval_limit}
    if config.random_scorers:
        fields["metrics"] = PAPER_METRICS
    if config.steps:
        fields["steps"] = config.steps
    if config.scheduler:
        fields["scheduler"] = config.scheduler
    fields.update(out=str(Path(config.out) / "eval"), device=str(device), offline=config.offline)
    return name, BenchmarkConfig(**fields)


def preflight_prompts(bench) -> int:
    """Load the eval prompts before any model (a hub prompt set offline fails here, with its message)."""
    from eval.benchmark import benchmark_prompts

    return len(benchmark_prompts(bench))


def run_eval(service, factory: Callable, bench, preset_name: str) -> dict[str, Any]:
    """``run_benchmark`` with the check's service and scorers; means and win rates vs standard."""
    from eval.benchmark import run_benchmark
    from eval.stats import summarize

    result = run_benchmark(bench, service=service, scorer_factory=factory)  # timed as the "eval" stage
    rows = result.rows
    complete = rows[rows["error"].isna()] if "error" in rows else rows
    expected = result.counts["samples"] * len(bench.methods)  # (prompt, seed) samples x methods
    summary = summarize(complete, metrics=list(bench.metrics), n_boot=1000) if len(complete) else None
    keep = ["metric", "method", "n", "mean", "ci_low", "ci_high", "win_rate", "preference", "sign_p"]
    records = [] if summary is None else [_clean(r) for r in summary[keep].to_dict("records")]
    return {
        "passed": result.failure is None and len(complete) == expected,
        "preset": preset_name,
        "run_dir": str(result.run_dir),
        "prompts": bench.prompts if isinstance(bench.prompts, str) else "custom",
        "limit": bench.limit,
        "seeds": list(bench.seeds),
        "seed_scheme": getattr(bench, "seed_scheme", "fixed"),  # "paper": one drawn seed per prompt
        "methods": list(bench.methods),
        "metrics": list(bench.metrics),
        "rows": len(complete),
        "expected_rows": expected,
        "failure": result.failure,
        "summary": records,
    }


def _clean(record: dict) -> dict:
    """NaN -> None (JSON has no NaN); numpy scalars -> Python numbers."""
    out = {}
    for key, value in record.items():
        value = value.item() if hasattr(value, "item") else value
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out
