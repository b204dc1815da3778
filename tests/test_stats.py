"""Statistics: win rates, ties, sign test, CIs against hand-computed cases and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from eval.stats import (
    BINARY_COLUMNS,
    binary_stats,
    bootstrap_ci,
    mcnemar_exact,
    mean_ci,
    paired_stats,
    paper_table,
    sign_test,
    summarize,
)


def _rows(standard, method, name="npnet", metric="hpsv2", **extra) -> pd.DataFrame:
    n = len(standard)
    frames = [
        pd.DataFrame({"prompt_index": range(n), "prompt": [f"p{i}" for i in range(n)], "seed": 0,
                      "method": label, metric: values, **extra})
        for label, values in (("standard", standard), (name, method))
    ]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_hand_computed_win_tie_loss_and_sign_test():
    summary = summarize(_rows([1, 2, 3, 4, 5], [2, 2, 4, 3, 6]), metrics=["hpsv2"])
    row = summary.set_index("method").loc["npnet"]
    assert (row.n_pairs, row.wins, row.ties, row.losses) == (5, 3, 1, 1)
    assert row.win_rate == pytest.approx(0.6) and row.tie_rate == pytest.approx(0.2)
    assert row.sign_p == pytest.approx(0.625)  # P(X<=1 or X>=3 | n=4) = 10/16
    assert row.sign_p == pytest.approx(sps.binomtest(3, 4, 0.5).pvalue)
    assert row.mean_diff == pytest.approx(0.4)
    low, high = sps.t.interval(0.95, 4, loc=0.4, scale=sps.sem([1, 0, 1, -1, 1]))
    assert (row.mean_diff_ci_low, row.mean_diff_ci_high) == pytest.approx((low, high))
    base = summary.set_index("method").loc["standard"]
    assert base["mean"] == pytest.approx(3.0) and np.isnan(base.win_rate)


def test_ties_are_not_wins_as_in_the_official_code():
    out = paired_stats([1.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert (out["wins"], out["ties"], out["losses"]) == (1, 2, 0)
    assert out["win_rate"] == pytest.approx(1 / 3) and out["sign_p"] == pytest.approx(1.0)


def test_lower_is_better_flips_wins_not_the_difference():
    out = paired_stats([2, 2, 4, 3, 6], [1, 2, 3, 4, 5], higher_is_better=False)
    assert (out["wins"], out["losses"]) == (1, 3)
    assert out["mean_diff"] == pytest.approx(0.4)
    summary = summarize(
        _rows([1, 2], [0, 3], metric="loss"), metrics=["loss"], higher_is_better={"loss": False}
    )
    assert summary.set_index("method").loc["npnet", "wins"] == 1


def test_sign_test_matches_scipy_and_edge_cases():
    for wins, losses in [(0, 0), (7, 3), (30, 10), (0, 12), (50, 50)]:
        expected = 1.0 if wins + losses == 0 else sps.binomtest(wins, wins + losses, 0.5).pvalue
        assert sign_test(wins, losses) == pytest.approx(expected)


def test_mean_ci_matches_scipy():
    x = np.array([26.1, 27.3, 25.9, 28.4, 26.6, 27.0])
    mean, low, high = mean_ci(x)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x)))
    assert np.isnan(mean_ci([1.0])[1]) and np.isnan(mean_ci([])[0])


def test_paired_bootstrap_is_seeded_and_sensible():
    rng = np.random.default_rng(1)
    base = rng.normal(size=200)
    method = base + rng.normal(0.3, 1.0, size=200)
    first = paired_stats(method, base, seed=7)
    assert first == paired_stats(method, base, seed=7)
    assert first["win_rate_ci_low"] < first["win_rate"] < first["win_rate_ci_high"]
    assert first["win_rate_ci_high"] - first["win_rate_ci_low"] < 0.2
    assert paired_stats([2, 3, 4], [1, 1, 1])["win_rate_ci_low"] == 1.0
    assert bootstrap_ci([0.0, 1.0], n_boot=500, seed=0) == bootstrap_ci([0.0, 1.0], n_boot=500, seed=0)


def test_pairwise_preference_is_softmax_of_logits():
    summary = summarize(_rows([1.0, 2.0, 0.5], [1.0, 3.0, 0.5], metric="mps"), metrics=["mps"])
    by = summary.set_index("method")
    assert by.loc["standard", "preference"] == 50.0
    expected = 100 * np.mean([0.5, 1 / (1 + np.exp(-1.0)), 0.5])
    assert by.loc["npnet", "preference"] == pytest.approx(expected)
    assert np.isnan(summarize(_rows([1, 2], [2, 3]), metrics=["hpsv2"])["preference"]).all()


def test_pairs_match_on_prompt_and_seed_and_skip_nan():
    rows = pd.concat([_rows([1, 2, 3], [2, 1, 5]).assign(seed=0), _rows([1, 1, 1], [1, 1, 1]).assign(seed=1)])
    rows = rows.sample(frac=1.0, random_state=0)  # order must not matter
    rows.loc[(rows.method == "npnet") & (rows.seed == 0) & (rows.prompt_index == 2), "hpsv2"] = np.nan
    row = summarize(rows, metrics=["hpsv2"]).set_index("method").loc["npnet"]
    assert (row.n_pairs, row.wins, row.ties, row.losses, row.n) == (5, 1, 3, 1, 5)


def test_groups_are_compared_separately():
    a = _rows([1, 1], [2, 2], model="sdxl", dataset="pickapic")
    b = _rows([1, 1], [0, 0], model="sdxl", dataset="drawbench")
    summary = summarize(pd.concat([a, b]), metrics=["hpsv2"])
    rates = summary[summary.method == "npnet"].set_index("dataset")["win_rate"]
    assert rates.to_dict() == {"drawbench": 0.0, "pickapic": 1.0}


def test_bad_rows_are_clear_errors():
    rows = _rows([1, 2], [2, 3])
    with pytest.raises(ValueError, match="lack column"):
        summarize(rows.drop(columns="seed"), metrics=["hpsv2"])
    with pytest.raises(ValueError, match="duplicate sample rows"):
        summarize(pd.concat([rows, rows.iloc[:1]]), metrics=["hpsv2"])
    with pytest.raises(ValueError, match="no metric columns"):
        summarize(rows.drop(columns="hpsv2"))
    with pytest.raises(ValueError, match="equal lengths"):
        paired_stats([1, 2], [1])


def test_inferred_metrics_and_paper_table():
    rows = _rows([20, 22], [21, 23], metric="pickscore").assign(mps=[0.0, 0.0, 1.0, 1.0], other=1.0)
    summary = summarize(rows)
    assert set(summary.metric) == {"pickscore", "mps"}
    table = paper_table(summary).set_index("method")
    assert list(table.columns) == ["pickscore", "mps"]
    assert table.loc["standard", "mps"] == 50.0 and table.loc["npnet", "pickscore"] == pytest.approx(22.0)
    assert table.loc["npnet", "mps"] == pytest.approx(100 / (1 + np.exp(-1.0)))


# -- prompt clusters (several seeds per prompt) ---------------------------------------------------------
def _seeded_rows(standard_by_prompt, method_by_prompt, metric="hpsv2", name="npnet") -> pd.DataFrame:
    """Rows with several seeds per prompt: ``*_by_prompt[i]`` lists prompt i's scores, one per seed."""
    records = [
        {"prompt_index": i, "prompt": f"p{i}", "seed": s, "method": label, metric: value}
        for label, table in (("standard", standard_by_prompt), (name, method_by_prompt))
        for i, values in enumerate(table)
        for s, value in enumerate(values)
    ]
    return pd.DataFrame.from_records(records)


def test_cluster_bootstrap_with_one_seed_per_prompt_is_the_ordinary_bootstrap():
    x = np.random.default_rng(3).normal(size=40)
    assert bootstrap_ci(x, n_boot=500, seed=4, clusters=range(40)) == bootstrap_ci(x, n_boot=500, seed=4)
    assert mean_ci(x, clusters=[f"p{i}" for i in range(40)]) == mean_ci(x)
    base = np.random.default_rng(5).normal(size=40)
    assert paired_stats(x, base, seed=2, clusters=range(40)) == paired_stats(x, base, seed=2)
    rows = _rows(list(base), list(x))
    row = summarize(rows, metrics=["hpsv2"], seed=2).set_index("method").loc["npnet"]
    plain = paired_stats(x, base, seed=2)
    for key in ("win_rate_ci_low", "win_rate_ci_high", "mean_diff_ci_low", "mean_diff_ci_high", "sign_p"):
        assert row[key] == plain[key]
    assert (row.prompt_wins, row.prompt_ties, row.prompt_losses) == (row.wins, row.ties, row.losses)
    assert row.prompt_sign_p == row.sign_p and row.n_prompts == row.n_pairs == 40


def test_identical_seeds_resample_prompts_not_samples():
    """3 identical seeds per prompt carry one prompt's worth of evidence: the clustered CIs equal the CIs
    from one row per prompt (same resampling seed) and are wider than the naive per-sample ones."""
    rng = np.random.default_rng(0)
    per_prompt = rng.normal(size=15)  # (G,)
    x = np.repeat(per_prompt, 3)  # (3G,) prompt i's three seeds score alike
    prompts = np.repeat(np.arange(15), 3)
    clustered = bootstrap_ci(x, n_boot=1000, seed=9, clusters=prompts)
    assert clustered == pytest.approx(bootstrap_ci(per_prompt, n_boot=1000, seed=9), rel=1e-12, abs=1e-12)
    naive = bootstrap_ci(x, n_boot=1000, seed=9)
    assert clustered[1] - clustered[0] > naive[1] - naive[0]
    _, low, high = mean_ci(x, clusters=prompts)
    assert (low, high) == pytest.approx(mean_ci(per_prompt)[1:], rel=1e-12)
    assert high - low > mean_ci(x)[2] - mean_ci(x)[1]

    base, shift = rng.normal(size=15), rng.normal(0.2, 1.0, size=15)
    seeded = summarize(_seeded_rows([[b] * 3 for b in base], [[b + d] * 3 for b, d in zip(base, shift)]),
                       metrics=["hpsv2"], seed=1).set_index("method").loc["npnet"]  # fmt: skip
    single = summarize(_rows(list(base), list(base + shift)), metrics=["hpsv2"], seed=1)
    single = single.set_index("method").loc["npnet"]
    for key in ("win_rate", "win_rate_ci_low", "win_rate_ci_high", "mean_diff", "mean_diff_ci_low",
                "mean_diff_ci_high", "ci_low", "ci_high"):  # fmt: skip
        assert seeded[key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key
    assert (seeded.n_pairs, seeded.n_prompts) == (45, 15)
    assert seeded.prompt_sign_p == pytest.approx(single.sign_p)  # the prompt-level test does not triple n
    assert seeded.sign_p < single.sign_p  # the per-sample test assumes independence and overstates


def test_clustered_t_interval_uses_per_prompt_mean_differences():
    rng = np.random.default_rng(2)
    base, method = rng.normal(size=(12, 4)), rng.normal(0.3, 1.0, size=(12, 4))  # 12 prompts x 4 seeds
    out = paired_stats(method.ravel(), base.ravel(), clusters=np.repeat(np.arange(12), 4))
    prompt_diff = (method - base).mean(axis=1)  # (12,)
    low, high = sps.t.interval(0.95, 11, loc=prompt_diff.mean(), scale=sps.sem(prompt_diff))
    assert (out["mean_diff_ci_low"], out["mean_diff_ci_high"]) == pytest.approx((low, high))
    assert out["mean_diff"] == pytest.approx((method - base).mean())
    wins, losses = int((prompt_diff > 0).sum()), int((prompt_diff < 0).sum())
    assert (out["prompt_wins"], out["prompt_losses"], out["n_prompts"]) == (wins, losses, 12)
    assert out["prompt_sign_p"] == pytest.approx(sps.binomtest(wins, wins + losses).pvalue)
    # unequal seeds per prompt: still centred on the pooled mean difference
    unequal = paired_stats([3.0, 1.0, 2.0, 0.0, 1.0], [0.0] * 5, clusters=[0, 0, 0, 1, 2])
    assert (unequal["mean_diff_ci_low"] + unequal["mean_diff_ci_high"]) / 2 == pytest.approx(1.4)


def test_prompt_sign_test_by_hand():
    # prompt 0: +1, +1, -1 (mean +1/3, win); prompt 1: -2, +1, 0 (mean -1/3, loss); prompt 2: +1, -1, 0 (tie)
    out = paired_stats([1, 1, -1, -2, 1, 0, 1, -1, 0], [0] * 9, clusters=[0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert (out["wins"], out["ties"], out["losses"]) == (4, 2, 3)
    assert (out["prompt_wins"], out["prompt_ties"], out["prompt_losses"]) == (1, 1, 1)
    assert out["prompt_sign_p"] == 1.0
    with pytest.raises(ValueError, match="one label per value"):
        paired_stats([1, 2], [0, 0], clusters=[0])


# -- tie margin -----------------------------------------------------------------------------------------
def test_tie_margin_counts_small_differences_as_ties():
    method, base = [1.25, 1.5, 0.75, 0.5], [1.0] * 4  # differences +0.25, +0.5, -0.25, -0.5 (exact)
    plain = paired_stats(method, base)
    assert (plain["wins"], plain["ties"], plain["losses"]) == (2, 0, 2)
    assert paired_stats(method, base, tie_margin=0.0) == plain  # default = today's behaviour
    wide = paired_stats(method, base, tie_margin=0.25)  # |delta| <= margin is a tie
    assert (wide["wins"], wide["ties"], wide["losses"]) == (1, 2, 1)
    assert wide["win_rate"] == 0.25 and wide["tie_rate"] == 0.5 and wide["tie_margin"] == 0.25
    assert wide["mean_diff"] == plain["mean_diff"]  # the margin changes counts, not the difference
    lower = paired_stats(method, base, higher_is_better=False, tie_margin=0.3)
    assert (lower["wins"], lower["ties"], lower["losses"]) == (1, 2, 1)
    assert paired_stats(method, base, tie_margin=0.6)["ties"] == 4
    for bad in (-0.1, float("nan"), "x"):
        with pytest.raises(ValueError, match="tie_margin"):
            paired_stats(method, base, tie_margin=bad)


def test_summarize_tie_margin_per_metric():
    rows = _rows([1.0] * 4, [1.25, 1.5, 0.75, 0.5]).assign(pickscore=1.0)
    default = summarize(rows, metrics=["hpsv2", "pickscore"])
    assert default.equals(summarize(rows, metrics=["hpsv2", "pickscore"], tie_margin=0.0))
    by = summarize(rows, metrics=["hpsv2", "pickscore"], tie_margin={"hpsv2": 0.25})
    npnet = by[by.method == "npnet"].set_index("metric")
    assert (npnet.loc["hpsv2", "wins"], npnet.loc["hpsv2", "ties"], npnet.loc["hpsv2", "losses"]) == (1, 2, 1)
    assert npnet.loc["pickscore", "tie_margin"] == 0.0 and npnet.loc["pickscore", "ties"] == 4
    assert np.isnan(by.set_index(["metric", "method"]).loc[("hpsv2", "standard"), "tie_margin"])


# -- binary verifiers -----------------------------------------------------------------------------------
def test_mcnemar_exact_by_hand_and_scipy():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(1, 1) == 1.0
    assert mcnemar_exact(4, 0) == pytest.approx(2 * 0.5**4)  # 0.125
    assert mcnemar_exact(3, 0) == pytest.approx(0.25)
    assert mcnemar_exact(5, 1) == pytest.approx(2 * (1 + 6) / 64)  # P(X<=1 or X>=5 | n=6)
    assert mcnemar_exact(1, 5) == mcnemar_exact(5, 1)
    for rescued, broken in [(7, 2), (0, 9), (12, 20), (30, 30), (1, 0)]:
        assert mcnemar_exact(rescued, broken) == pytest.approx(
            sps.binomtest(rescued, rescued + broken).pvalue
        )


def test_accuracy_rescued_broken_on_a_hand_made_table():
    base = [0.9, 0.2, 0.7, 0.1, 0.6, 0.3, 0.5]  # correct (> 0.5): 1 0 1 0 1 0 0 -> 3/7
    method = [0.8, 0.6, 0.4, 0.2, 0.9, 0.7, 0.5]  # correct: 1 1 0 0 1 1 0 -> 4/7 (0.5 is not > 0.5)
    summary = summarize(_rows(base, method, metric="micro"), metrics=["micro"])
    by = summary.set_index("method")
    assert by.loc["standard", "accuracy"] == pytest.approx(3 / 7)
    assert by.loc["npnet", "accuracy"] == pytest.approx(4 / 7)
    assert (by.loc["npnet", "rescued"], by.loc["npnet", "broken"]) == (2, 1)  # prompts 1, 5 / prompt 2
    assert by.loc["npnet", "mcnemar_p"] == pytest.approx(sps.binomtest(2, 3).pvalue)  # = 1.0
    assert by.loc["npnet", "prompt_mcnemar_p"] == by.loc["npnet", "mcnemar_p"]  # one seed per prompt
    assert by.loc["npnet", "accuracy_diff_pp"] == pytest.approx(100 / 7)
    low, high = bootstrap_ci([0, 1, -1, 0, 0, 1, 0], seed=0)
    assert (by.loc["npnet", "accuracy_diff_pp_ci_low"], by.loc["npnet", "accuracy_diff_pp_ci_high"]) == (
        pytest.approx(100 * low), pytest.approx(100 * high))  # fmt: skip
    assert by.loc["standard", "accuracy_ci_low"] <= 3 / 7 <= by.loc["standard", "accuracy_ci_high"]
    assert np.isnan(by.loc["standard", "rescued"]) and by["binary_threshold"].eq(0.5).all()
    assert by.loc["npnet", "wins"] == 4  # the ordinary score statistics are still there

    strict = summarize(_rows(base, method, metric="micro"), metrics=["micro"], binary_metrics={"micro": 0.65})
    strict = strict.set_index("method")  # correct: base 1 0 1 0 0 0 0, method 1 0 0 0 1 1 0
    assert (strict.loc["npnet", "rescued"], strict.loc["npnet", "broken"]) == (2, 1)
    assert strict.loc["standard", "accuracy"] == pytest.approx(2 / 7)
    off = summarize(_rows(base, method, metric="micro"), metrics=["micro"], binary_metrics={})
    assert off[BINARY_COLUMNS].isna().all().all()
    with pytest.raises(ValueError, match="finite threshold"):
        summarize(_rows(base, method, metric="micro"), metrics=["micro"], binary_metrics={"micro": None})


def test_binary_columns_are_nan_for_other_metrics_and_clustered_over_prompts():
    rows = _rows([1, 2], [2, 3])
    assert summarize(rows, metrics=["hpsv2"])[BINARY_COLUMNS].isna().all().all()
    # 4 prompts x 2 identical seeds: rescued/broken count samples, the tests and CIs count prompts
    base, method = [[0.9] * 2, [0.1] * 2, [0.1] * 2, [0.9] * 2], [[0.9] * 2, [0.9] * 2, [0.9] * 2, [0.1] * 2]
    row = summarize(_seeded_rows(base, method, metric="micro"), metrics=["micro"], seed=3)
    row = row.set_index("method").loc["npnet"]
    assert (row.rescued, row.broken, row.n_pairs, row.n_prompts) == (4, 2, 8, 4)
    assert row.mcnemar_p == pytest.approx(sps.binomtest(4, 6).pvalue)
    assert row.prompt_mcnemar_p == pytest.approx(sps.binomtest(2, 3).pvalue)
    one = binary_stats([0.9, 0.9, 0.9, 0.1], [0.9, 0.1, 0.1, 0.9], seed=3)
    assert (row.accuracy_diff_pp_ci_low, row.accuracy_diff_pp_ci_high) == pytest.approx(
        (one["accuracy_diff_pp_ci_low"], one["accuracy_diff_pp_ci_high"]))  # fmt: skip
    assert row.accuracy_diff_pp == pytest.approx(25.0)


def test_paper_table_keeps_only_group_method_combinations_that_exist():
    ten = _rows([1.0, 2.0], [2.0, 3.0], steps=10)
    inversion = _rows([1.0, 2.0], [3.0, 3.0], name="inversion", steps=20).query("method == 'inversion'")
    twenty = pd.concat([ten.assign(steps=20), inversion])
    table = paper_table(summarize(pd.concat([ten, twenty]), metrics=["hpsv2"]))
    assert list(zip(table["steps"], table["method"])) == [
        (10, "standard"), (10, "npnet"), (20, "standard"), (20, "npnet"), (20, "inversion")]  # fmt: skip
