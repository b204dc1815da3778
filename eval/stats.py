"""Statistics over per-sample benchmark rows: means with CIs, paired win rates, sign tests.

Input: a DataFrame with one row per generated sample and columns ``method``, ``seed``, a prompt key
(``prompt_index`` if present, else ``prompt``), optional grouping columns (``model``, ``dataset``,
``steps``) and one numeric column per metric (NaN where scoring failed). Each method is compared
with the baseline (``standard``) on the same (group, prompt, seed): the win rate counts strictly
better samples as the official code does (ties counted and reported separately), with a seeded
paired bootstrap 95% CI, a two-sided exact sign test (ties excluded) and the mean paired
difference with a t interval. For pairwise metrics (MPS) the preference is
mean(sigmoid(s_method - s_baseline)) x 100 (paper Table 2: the baseline is 50% by definition).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from npnet.errors import UserError

DEFAULT_GROUPS = ("model", "dataset", "steps")
PAIRWISE_METRICS = ("mps",)
SUMMARY_COLUMNS = [
    "metric", "method", "n", "mean", "std", "ci_low", "ci_high", "higher_is_better",
    "n_pairs", "wins", "ties", "losses", "win_rate", "win_rate_ci_low", "win_rate_ci_high", "tie_rate",
    "sign_p", "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high",
    "preference", "preference_ci_low", "preference_ci_high",
]  # fmt: skip


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval; NaN bounds for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, np.nan, np.nan)
    half = sps.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return (mean, mean - float(half), mean + float(half))


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling items (pairs) with replacement; seeded."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
    alpha = (1 - confidence) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test p-value of wins vs losses (ties already excluded)."""
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(int(wins), int(wins + losses), 0.5, alternative="two-sided").pvalue)


def paired_stats(
    method_scores: Sequence[float],
    baseline_scores: Sequence[float],
    higher_is_better: bool = True,
    pairwise: bool = False,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Win/tie/loss counts, win rate with paired bootstrap CI, sign test and mean difference CI."""
    a, b = np.asarray(method_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    if a.shape != b.shape:
        raise UserError(f"paired scores need equal lengths, got {a.size} and {b.size}")
    diff = a - b  # (n,)
    better = diff if higher_is_better else -diff
    wins, losses = int((better > 0).sum()), int((better < 0).sum())
    ties = int(diff.size - wins - losses)
    n = diff.size
    win_low, win_high = bootstrap_ci((better > 0).astype(float), confidence, n_boot, seed)
    _, diff_low, diff_high = mean_ci(diff, confidence)
    out = {
        "n_pairs": n,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_rate": wins / n if n else np.nan,
        "win_rate_ci_low": win_low,
        "win_rate_ci_high": win_high,
        "tie_rate": ties / n if n else np.nan,
        "sign_p": sign_test(wins, losses),
        "mean_diff": float(diff.mean()) if n else np.nan,
        "mean_diff_ci_low": diff_low,
        "mean_diff_ci_high": diff_high,
    }
    if pairwise:
        prob = 1.0 / (1.0 + np.exp(-better))  # P(method preferred), softmax of the two logits
        low, high = bootstrap_ci(prob, confidence, n_boot, seed)
        out.update(preference=100 * float(prob.mean()) if n else np.nan, preference_ci_low=100 * low,
                   preference_ci_high=100 * high)  # fmt: skip
    return out


def infer_metrics(rows: pd.DataFrame) -> list[str]:
    """Numeric columns named like registered scorers, in registry order."""
    from eval.metrics import available_scorers

    return [
        name for name in available_scorers() if name in rows and pd.api.types.is_numeric_dtype(rows[name])
    ]


def metric_direction(metric: str, overrides: dict[str, bool] | None = None) -> bool:
    """True when higher is better: explicit override, else the scorer's attribute, else True."""
    if overrides and metric in overrides:
        return bool(overrides[metric])
    from eval.metrics import SCORERS, scorer_class

    return scorer_class(metric).higher_is_better if metric in SCORERS else True


def _check_rows(rows: pd.DataFrame, metrics: Sequence[str], pair_key: str, groups: list[str]) -> None:
    missing = [c for c in ("method", "seed", pair_key, *metrics) if c not in rows]
    if missing:
        raise UserError(
            f"rows lack column(s) {missing}; expected method, seed, prompt/prompt_index and metrics"
        )
    dup = rows.duplicated([*groups, "method", pair_key, "seed"])
    if dup.any():
        first = rows.loc[dup, [*groups, "method", pair_key, "seed"]].iloc[0].to_dict()
        raise UserError(f"{int(dup.sum())} duplicate sample rows, e.g. {first}; keep one row per sample")


def summarize(
    rows: pd.DataFrame,
    metrics: Iterable[str] | None = None,
    baseline: str = "standard",
    group_by: Iterable[str] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    pairwise_metrics: Iterable[str] = PAIRWISE_METRICS,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (group..., method, metric): mean + CI, and paired statistics vs ``baseline``.

    Columns: the group columns, then ``SUMMARY_COLUMNS``. Baseline rows carry NaN comparison
    fields (``preference`` = 50 for pairwise metrics). Rows with NaN in a metric are left out of
    that metric; pairs need both samples.
    """
    metrics = list(metrics) if metrics is not None else infer_metrics(rows)
    if not metrics:
        raise UserError("no metric columns to summarise; pass metrics=[...]")
    groups = [c for c in (group_by if group_by is not None else DEFAULT_GROUPS) if c in rows]
    pair_key = "prompt_index" if "prompt_index" in rows else "prompt"
    _check_rows(rows, metrics, pair_key, groups)
    pairwise = set(pairwise_metrics)
    records = []
    grouped = rows.groupby(groups, sort=True, dropna=False) if groups else [((), rows)]
    for key, frame in grouped:
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(groups, key))
        for metric in metrics:
            records.extend(
                _metric_records(frame, metric, baseline, pair_key, base,
                                metric_direction(metric, higher_is_better), metric in pairwise,
                                confidence, n_boot, seed)
            )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=[*groups, *SUMMARY_COLUMNS])


def _metric_records(
    frame, metric, baseline, pair_key, base, hib, pairwise, confidence, n_boot, seed
) -> list[dict]:
    valid = frame[frame[metric].notna()]
    ref = valid[valid["method"] == baseline].set_index([pair_key, "seed"])[metric]
    out = []
    for method in _method_order(frame["method"], baseline):
        scores = valid[valid["method"] == method].set_index([pair_key, "seed"])[metric]
        mean, low, high = mean_ci(scores.to_numpy(), confidence)
        std = float(scores.std(ddof=1)) if len(scores) > 1 else np.nan
        record = {**base, "metric": metric, "method": method, "n": len(scores), "mean": mean, "std": std,
                  "ci_low": low, "ci_high": high, "higher_is_better": hib}  # fmt: skip
        if method == baseline:
            record["preference"] = 50.0 if pairwise else np.nan
        elif len(ref):
            joined = pd.concat([scores.rename("m"), ref.rename("b")], axis=1, join="inner")
            record.update(paired_stats(joined["m"], joined["b"], hib, pairwise, confidence, n_boot, seed))
        out.append(record)
    return out


def _method_order(methods: pd.Series, baseline: str) -> list[str]:
    seen = list(dict.fromkeys(methods))
    return ([baseline] if baseline in seen else []) + [m for m in seen if m != baseline]


def paper_table(summary: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Wide table like the paper's Table 2: mean per metric, pairwise metrics as preference %."""
    if summary.empty:
        return summary.copy()
    metrics = list(metrics) if metrics is not None else list(dict.fromkeys(summary["metric"]))
    keys = [c for c in summary.columns if c not in SUMMARY_COLUMNS] + ["method"]
    pairwise = summary["metric"].isin(set(summary.loc[summary["preference"].notna(), "metric"]))
    values = summary.assign(value=np.where(pairwise, summary["preference"], summary["mean"]))
    wide = values.pivot_table(index=keys, columns="metric", values="value", sort=False, dropna=False)
    return (
        wide.reindex(columns=[m for m in metrics if m in wide.columns])
        .reset_index()
        .rename_axis(columns=None)
    )
