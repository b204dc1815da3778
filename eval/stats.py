"""Statistics over per-sample benchmark rows: means with CIs, paired win rates, sign tests, accuracy.

Input: a DataFrame with one row per generated sample and columns ``method``, ``seed``, a prompt key
(``prompt_index`` if present, else ``prompt``), optional grouping columns (``model``, ``dataset``,
``steps``) and one numeric column per metric (NaN where scoring failed). Each method is compared
with the baseline (``standard``) on the same (group, prompt, seed): the win rate counts strictly
better samples as the official code does (ties counted and reported separately; ``tie_margin``
optionally widens a tie to |difference| <= margin), with a seeded paired bootstrap 95% CI, a
two-sided exact sign test (ties excluded) and the mean paired difference with a t interval. For
pairwise metrics (MPS) the preference is mean(sigmoid(s_method - s_baseline)) x 100 (paper Table 2:
the baseline is 50% by definition).

Seeds are nested within prompts. Whenever a prompt has several seeds, every interval resamples
prompts, not samples: bootstrap CIs are cluster bootstraps (draw prompts with replacement and take
all their seeds) and t intervals use the per-prompt means (df = prompts - 1). With one seed per
prompt both reduce exactly to the ordinary paired bootstrap and t interval. The sample-level sign
test (``sign_p``) and McNemar test (``mcnemar_p``) treat every (prompt, seed) as independent, which
overstates the evidence when seeds repeat; ``prompt_sign_p`` and ``prompt_mcnemar_p`` are the same
tests over prompts (on per-prompt mean differences), the ones to quote in that case.

Binary verifiers (``binary_metrics``, default ``{"micro": 0.5}``: a sample is correct iff its score
is strictly above the threshold) also get the accuracy per method with a prompt-clustered bootstrap
CI and, against the baseline on the same (prompt, seed), the rescued (baseline wrong, method right)
and broken (baseline right, method wrong) counts, an exact McNemar test and the accuracy difference
in percentage points with a prompt-clustered bootstrap CI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from npnet.errors import UserError

DEFAULT_GROUPS = ("model", "dataset", "steps")
PAIRWISE_METRICS = ("mps",)
BINARY_METRICS: Mapping[str, float] = {"micro": 0.5}  # metric -> threshold; correct iff score > threshold
# The tie margin of per-sample verdicts shown to people (the app's seed grid): scores of two nearly identical
# images differ by float noise (micro-turbo seed 5: 0.99999 vs 0.99999), which is no win. Benchmark
# summaries keep ``tie_margin=0`` (strictly better, as the official code) unless a margin is asked for.
VERDICT_TIE_MARGIN = 1e-4
PROMPT_COLUMNS = ["n_prompts", "prompt_wins", "prompt_ties", "prompt_losses", "prompt_sign_p"]
BINARY_COLUMNS = [
    "binary_threshold", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "rescued", "broken",
    "mcnemar_p", "prompt_mcnemar_p", "accuracy_diff_pp", "accuracy_diff_pp_ci_low", "accuracy_diff_pp_ci_high",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "metric", "method", "n", "mean", "std", "ci_low", "ci_high", "higher_is_better",
    "n_pairs", "wins", "ties", "losses", "win_rate", "win_rate_ci_low", "win_rate_ci_high", "tie_rate",
    "sign_p", "mean_diff", "mean_diff_ci_low", "mean_diff_ci_high",
    "preference", "preference_ci_low", "preference_ci_high",
    "tie_margin", *PROMPT_COLUMNS, *BINARY_COLUMNS,
]  # fmt: skip


def _factorize(clusters: Sequence, n: int) -> tuple[np.ndarray, int]:
    """(codes 0..G-1 per item, G), clusters numbered in order of first appearance."""
    labels = pd.Series(list(clusters), dtype=object)
    if len(labels) != n:
        raise UserError(f"clusters need one label per value, got {len(labels)} labels for {n} values")
    codes, uniques = pd.factorize(labels, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64), len(uniques)


def _cluster_codes(clusters: Sequence | None, n: int) -> tuple[np.ndarray, int] | None:
    """``_factorize`` when some cluster holds several items; None when every item is alone."""
    if clusters is None:
        return None
    codes, g = _factorize(clusters, n)
    return None if g == n else (codes, g)  # one item per cluster: the ordinary statistics


def cluster_means(values: Sequence[float], clusters: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster means, per-cluster sizes), clusters in order of first appearance."""
    x = np.asarray(values, dtype=float)
    codes, g = _factorize(clusters, x.size)
    sizes = np.bincount(codes, minlength=g)
    return np.bincount(codes, weights=x, minlength=g) / np.maximum(sizes, 1), sizes


def mean_ci(
    values: Sequence[float], confidence: float = 0.95, clusters: Sequence | None = None
) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval; NaN bounds for fewer than two values (or prompts).

    ``mean`` is always the mean over all values. With ``clusters`` (the prompt of each value) and some
    prompt holding several values, the interval is computed on the per-prompt means: df = prompts - 1
    and the cluster-robust (CR1) standard error sqrt(G/(G-1) * sum_g (S_g - n_g * mean)^2) / N, where
    S_g and n_g are prompt g's sum and count. With equal counts per prompt this is exactly the
    Student-t interval of the per-prompt means; with one value per prompt it is the ordinary interval.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    coded = _cluster_codes(clusters, x.size)
    if coded is None:
        if x.size < 2:
            return (mean, np.nan, np.nan)
        half = sps.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
        return (mean, mean - float(half), mean + float(half))
    codes, g = coded
    if g < 2:
        return (mean, np.nan, np.nan)
    resid = np.bincount(codes, weights=x - mean, minlength=g)  # (G,) S_g - n_g * mean
    se = math.sqrt(g / (g - 1) * float(np.sum(resid**2))) / x.size
    half = sps.t.ppf(0.5 + confidence / 2, g - 1) * se
    return (mean, mean - float(half), mean + float(half))


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling items (pairs) with replacement; seeded.

    With ``clusters`` (the prompt of each value) and some prompt holding several values, this is a
    cluster bootstrap: each replicate draws G prompts with replacement and averages all values of
    the drawn prompts (sum of their sums / sum of their counts). With one value per prompt (or
    ``clusters=None``) it is the ordinary bootstrap, draw for draw.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan)
    coded = _cluster_codes(clusters, x.size)
    rng = np.random.default_rng(seed)
    if coded is None:
        means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)  # (n_boot,)
    else:
        codes, g = coded
        sums = np.bincount(codes, weights=x, minlength=g)  # (G,)
        sizes = np.bincount(codes, minlength=g).astype(float)  # (G,)
        draws = rng.integers(0, g, size=(n_boot, g))  # (n_boot, G)
        means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)  # (n_boot,)
    alpha = (1 - confidence) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test p-value of wins vs losses (ties already excluded).

    It assumes the wins and losses are independent trials: count prompts, not (prompt, seed) samples,
    when seeds repeat (see ``prompt_sign_p``).
    """
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(int(wins), int(wins + losses), 0.5, alternative="two-sided").pvalue)


def mcnemar_exact(rescued: int, broken: int) -> float:
    """Exact McNemar test: two-sided binomial test of rescued vs broken (discordant pairs) at p = 1/2.

    1.0 when there are no discordant pairs. Like ``sign_test`` it treats the pairs as independent.
    """
    return sign_test(rescued, broken)


def _check_margin(tie_margin: float) -> float:
    try:
        margin = float(tie_margin)
    except (TypeError, ValueError):
        raise UserError(f"tie_margin must be a number >= 0, got {tie_margin!r}") from None
    if not math.isfinite(margin) or margin < 0:
        raise UserError(f"tie_margin must be a finite number >= 0, got {tie_margin!r}")
    return margin


def _outcomes(better: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(win mask, loss mask): better by more than ``margin``, worse by more than ``margin``."""
    return better > margin, better < -margin


def pair_outcomes(
    method_scores: Sequence[float],
    baseline_scores: Sequence[float],
    higher_is_better: bool = True,
    tie_margin: float = 0.0,
) -> np.ndarray:
    """Per pair: +1 win, 0 tie, -1 loss, exactly as ``paired_stats`` counts them (|diff| <= margin: tie)."""
    a, b = np.asarray(method_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    if a.shape != b.shape:
        raise UserError(f"paired scores need equal lengths, got {a.size} and {b.size}")
    diff = a - b
    won, lost = _outcomes(diff if higher_is_better else -diff, _check_margin(tie_margin))
    return won.astype(np.int64) - lost.astype(np.int64)


def binary_changes(
    method_scores: Sequence[float], baseline_scores: Sequence[float], threshold: float = 0.5
) -> np.ndarray:
    """Per pair of a binary verifier (correct iff score > ``threshold``): +1 rescued (baseline wrong,
    method right), -1 broken (baseline right, method wrong), 0 unchanged; ``binary_stats`` counts these."""
    a, b = np.asarray(method_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    if a.shape != b.shape:
        raise UserError(f"paired scores need equal lengths, got {a.size} and {b.size}")
    return (a > threshold).astype(np.int64) - (b > threshold).astype(np.int64)


def paired_stats(
    method_scores: Sequence[float],
    baseline_scores: Sequence[float],
    higher_is_better: bool = True,
    pairwise: bool = False,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: Sequence | None = None,
    tie_margin: float = 0.0,
) -> dict[str, float]:
    """Win/tie/loss counts, win rate with paired bootstrap CI, sign tests and mean difference CI.

    A pair is a win when the method is better by more than ``tie_margin`` (``diff > margin``, or
    ``diff < -margin`` when lower is better), a loss when it is worse by more than the margin, a tie
    otherwise (|diff| <= margin); ``tie_margin=0`` counts strictly better pairs as the official code.

    ``clusters`` gives each pair's prompt. When a prompt holds several pairs (several seeds), the
    win-rate and preference CIs are prompt-cluster bootstraps and the mean-difference t interval is
    computed on the per-prompt mean differences (df = prompts - 1; see ``mean_ci``). ``sign_p`` is
    the sign test over pairs, which assumes they are independent; ``prompt_sign_p`` is the sign test
    over prompts on the per-prompt mean (direction-adjusted) difference, with the same margin:
    ``prompt_wins`` / ``prompt_ties`` / ``prompt_losses`` count those prompts and ``n_prompts`` all
    of them. Without ``clusters`` every pair is its own prompt, so the prompt columns equal the pair
    columns.
    """
    outcome = pair_outcomes(method_scores, baseline_scores, higher_is_better, tie_margin)  # (n,) +1 / 0 / -1
    margin = _check_margin(tie_margin)
    diff = np.asarray(method_scores, dtype=float) - np.asarray(baseline_scores, dtype=float)  # (n,)
    better = diff if higher_is_better else -diff
    won, lost = outcome > 0, outcome < 0
    wins, losses = int(won.sum()), int(lost.sum())
    ties = int(diff.size - wins - losses)
    n = diff.size
    win_low, win_high = bootstrap_ci(won.astype(float), confidence, n_boot, seed, clusters)
    _, diff_low, diff_high = mean_ci(diff, confidence, clusters)
    prompt_better = cluster_means(better, clusters)[0] if clusters is not None else better  # (G,)
    p_won, p_lost = _outcomes(prompt_better, margin)
    p_wins, p_losses = int(p_won.sum()), int(p_lost.sum())
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
        "tie_margin": margin,
        "n_prompts": prompt_better.size,
        "prompt_wins": p_wins,
        "prompt_ties": int(prompt_better.size - p_wins - p_losses),
        "prompt_losses": p_losses,
        "prompt_sign_p": sign_test(p_wins, p_losses),
    }
    if pairwise:
        prob = 1.0 / (1.0 + np.exp(-better))  # P(method preferred), softmax of the two logits
        low, high = bootstrap_ci(prob, confidence, n_boot, seed, clusters)
        out.update(preference=100 * float(prob.mean()) if n else np.nan, preference_ci_low=100 * low,
                   preference_ci_high=100 * high)  # fmt: skip
    return out


def accuracy_ci(
    scores: Sequence[float],
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> tuple[float, float, float]:
    """(accuracy, low, high): share of scores > ``threshold`` with a (prompt-clustered) bootstrap CI."""
    correct = (np.asarray(scores, dtype=float) > threshold).astype(float)
    if correct.size == 0:
        return (np.nan, np.nan, np.nan)
    low, high = bootstrap_ci(correct, confidence, n_boot, seed, clusters)
    return (float(correct.mean()), low, high)


def binary_stats(
    method_scores: Sequence[float],
    baseline_scores: Sequence[float],
    threshold: float = 0.5,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> dict[str, float]:
    """Paired comparison of a binary verifier (correct iff score > ``threshold``) on the same samples.

    ``rescued``: baseline wrong, method right; ``broken``: baseline right, method wrong;
    ``mcnemar_p``: exact McNemar test (two-sided binomial of rescued vs broken, p = 1/2), which treats
    the pairs as independent; ``prompt_mcnemar_p``: the sign test over prompts of each prompt's
    rescued - broken (prompts with equal counts left out; equals ``mcnemar_p`` with one seed per
    prompt); ``accuracy_diff_pp``: 100 x (method accuracy - baseline accuracy) on these pairs, i.e.
    100 x (rescued - broken) / pairs, with a prompt-clustered bootstrap CI (``clusters``: each pair's
    prompt; ordinary paired bootstrap when every prompt has one pair). With few discordant pairs the
    percentile bootstrap CI is too narrow (4 rescued, 0 broken gives a CI above 0 although the exact
    p = 0.125): read the accuracy difference together with the McNemar p-values.
    """
    change = binary_changes(method_scores, baseline_scores, threshold).astype(float)  # (n,) +1 / -1 / 0
    rescued, broken = int((change > 0).sum()), int((change < 0).sum())
    per_prompt = cluster_means(change, clusters)[0] if clusters is not None else change  # (G,)
    low, high = bootstrap_ci(change, confidence, n_boot, seed, clusters)
    return {
        "binary_threshold": float(threshold),
        "rescued": rescued,
        "broken": broken,
        "mcnemar_p": mcnemar_exact(rescued, broken),
        "prompt_mcnemar_p": sign_test(int((per_prompt > 0).sum()), int((per_prompt < 0).sum())),
        "accuracy_diff_pp": 100 * float(change.mean()) if change.size else np.nan,
        "accuracy_diff_pp_ci_low": 100 * low,
        "accuracy_diff_pp_ci_high": 100 * high,
    }


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


def _thresholds(binary_metrics: Mapping[str, float] | None) -> dict[str, float]:
    chosen = dict(BINARY_METRICS if binary_metrics is None else binary_metrics)
    for metric, threshold in chosen.items():
        try:
            ok = math.isfinite(float(threshold))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"binary metric {metric!r} needs a finite threshold, got {threshold!r}")
    return {metric: float(threshold) for metric, threshold in chosen.items()}


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
    tie_margin: float | Mapping[str, float] = 0.0,
    binary_metrics: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per (group..., method, metric): mean + CI, and paired statistics vs ``baseline``.

    Columns: the group columns, then ``SUMMARY_COLUMNS``. Baseline rows carry NaN comparison
    fields (``preference`` = 50 for pairwise metrics). Rows with NaN in a metric are left out of
    that metric; pairs need both samples. The prompt key (``prompt_index`` or ``prompt``) is the
    cluster of every CI: with several seeds per prompt the CIs resample prompts (see ``paired_stats``
    and ``mean_ci``), and the ``prompt_*`` columns give the prompt-level sign test.

    ``tie_margin``: one margin for every metric, or {metric: margin} (others 0); |diff| <= margin is
    a tie. ``binary_metrics``: {metric: threshold} of binary verifiers (default ``BINARY_METRICS``,
    {"micro": 0.5}; pass {} for none): correct iff score > threshold. Their rows fill
    ``BINARY_COLUMNS`` (accuracy with CI on every method; rescued, broken, McNemar p and accuracy
    difference in percentage points with CI vs the baseline, see ``binary_stats``); other metrics
    leave those columns NaN.
    """
    metrics = list(metrics) if metrics is not None else infer_metrics(rows)
    if not metrics:
        raise UserError("no metric columns to summarise; pass metrics=[...]")
    groups = [c for c in (group_by if group_by is not None else DEFAULT_GROUPS) if c in rows]
    pair_key = "prompt_index" if "prompt_index" in rows else "prompt"
    _check_rows(rows, metrics, pair_key, groups)
    pairwise = set(pairwise_metrics)
    thresholds = _thresholds(binary_metrics)
    margins = {m: _check_margin(tie_margin.get(m, 0.0) if isinstance(tie_margin, Mapping) else tie_margin)
               for m in metrics}  # fmt: skip
    records = []
    grouped = rows.groupby(groups, sort=True, dropna=False) if groups else [((), rows)]
    for key, frame in grouped:
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(groups, key))
        for metric in metrics:
            records.extend(
                _metric_records(frame, metric, baseline, pair_key, base,
                                metric_direction(metric, higher_is_better), metric in pairwise,
                                confidence, n_boot, seed, margins[metric], thresholds.get(metric))
            )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=[*groups, *SUMMARY_COLUMNS])


def _metric_records(
    frame, metric, baseline, pair_key, base, hib, pairwise, confidence, n_boot, seed, margin, threshold
) -> list[dict]:
    valid = frame[frame[metric].notna()]
    ref = valid[valid["method"] == baseline].set_index([pair_key, "seed"])[metric]
    out = []
    for method in _method_order(frame["method"], baseline):
        scores = valid[valid["method"] == method].set_index([pair_key, "seed"])[metric]
        prompts = scores.index.get_level_values(pair_key)
        mean, low, high = mean_ci(scores.to_numpy(), confidence, prompts)
        std = float(scores.std(ddof=1)) if len(scores) > 1 else np.nan
        record = {**base, "metric": metric, "method": method, "n": len(scores), "mean": mean, "std": std,
                  "ci_low": low, "ci_high": high, "higher_is_better": hib}  # fmt: skip
        if threshold is not None:
            acc, acc_low, acc_high = accuracy_ci(
                scores.to_numpy(), threshold, confidence, n_boot, seed, prompts
            )
            record.update(binary_threshold=threshold, accuracy=acc, accuracy_ci_low=acc_low,
                          accuracy_ci_high=acc_high)  # fmt: skip
        if method == baseline:
            record["preference"] = 50.0 if pairwise else np.nan
        elif len(ref):
            joined = pd.concat([scores.rename("m"), ref.rename("b")], axis=1, join="inner")
            pair_prompts = joined.index.get_level_values(pair_key)
            record.update(paired_stats(joined["m"], joined["b"], hib, pairwise, confidence, n_boot, seed,
                                       clusters=pair_prompts, tie_margin=margin))  # fmt: skip
            if threshold is not None:
                record.update(binary_stats(joined["m"], joined["b"], threshold, confidence, n_boot, seed,
                                           clusters=pair_prompts))  # fmt: skip
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
    present = pd.MultiIndex.from_frame(values[keys]) if len(keys) > 1 else pd.Index(values[keys[0]])
    wide = wide[wide.index.isin(present)]  # dropna=False pivots every key combination; keep the real ones
    return (
        wide.reindex(columns=[m for m in metrics if m in wide.columns])
        .reset_index()
        .rename_axis(columns=None)
    )
