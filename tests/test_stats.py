"""Statistics: win rates, ties, sign test, CIs against hand-computed cases and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from eval.stats import bootstrap_ci, mean_ci, paired_stats, paper_table, sign_test, summarize


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
