"""Charts: figures build from a small synthetic table, carry the 50% line and CI whiskers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eval.charts import (
    accuracy_figure,
    binary_table_figure,
    delta_figure,
    load_figure,
    metric_table_figure,
    report_figures,
    steps_figure,
    win_rate_figure,
    write_report,
)
from eval.stats import summarize

METHODS = ("standard", "inversion", "npnet")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    records = []
    for dataset in ("pickapic", "drawbench"):
        for steps in (10, 50):
            for i in range(12):
                base = rng.normal(size=3)
                for k, method in enumerate(METHODS):
                    shift = 0.2 * k
                    records.append(
                        {"model": "tiny-sdxl", "dataset": dataset, "steps": steps, "prompt_index": i,
                         "prompt": f"prompt {i}", "seed": 0, "method": method,
                         "hpsv2": 27 + base[0] + shift + 0.3 * rng.normal(),
                         "pickscore": 21 + base[1] + shift + 0.3 * rng.normal(),
                         "mps": base[2] + shift + 0.3 * rng.normal()}
                    )  # fmt: skip
    return pd.DataFrame.from_records(records)


@pytest.fixture(scope="module")
def summary(rows) -> pd.DataFrame:
    return summarize(rows, metrics=["hpsv2", "pickscore", "mps"], n_boot=300)


def test_win_rate_bars_have_ci_whiskers_and_the_50_line(summary):
    fig = win_rate_figure(summary[summary.steps == 50])
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"inversion", "npnet"}
    assert len(bars) == 4  # 2 methods x 2 dataset panels
    for bar in bars:
        assert list(bar.x) == ["hpsv2", "pickscore", "mps"]
        assert bar.error_y.array is not None and bar.error_y.arrayminus is not None
        assert (np.asarray(bar.error_y.array) >= 0).all() and (np.asarray(bar.error_y.arrayminus) >= 0).all()
        assert ((np.asarray(bar.y) >= 0) & (np.asarray(bar.y) <= 100)).all()
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 2 and all(s.y0 == 50 and s.y1 == 50 for s in lines)  # one per panel
    assert {a.text for a in fig.layout.annotations} >= {"tiny-sdxl / pickapic", "tiny-sdxl / drawbench"}


def test_win_rate_needs_comparisons(summary):
    with pytest.raises(ValueError, match="no paired comparisons"):
        win_rate_figure(summary[summary.method == "standard"])


def test_metric_table_shows_means_with_ci_and_mps_as_percent(summary):
    fig = metric_table_figure(summary[summary.steps == 50])
    header = list(fig.data[0].header.values)
    assert header[-3:] == ["hpsv2", "pickscore", "mps (%)"]
    cells = fig.data[0].cells.values
    methods = cells[header.index("method")]
    assert len(methods) == 6  # 2 datasets x 3 methods
    mps_standard = cells[-1][methods.index("standard")]
    assert mps_standard == "50.00"
    assert all("[" in value for value in cells[header.index("hpsv2")])


def test_delta_distribution(rows):
    fig = delta_figure(rows, "hpsv2")
    assert [t.name for t in fig.data] == ["inversion", "npnet"]
    assert all(len(t.y) == 48 for t in fig.data)  # 2 datasets x 2 step counts x 12 prompts
    assert any(s.y0 == 0 for s in fig.layout.shapes)


def test_steps_curve_when_several_step_counts(summary):
    fig = steps_figure(summary, "hpsv2")
    assert len(fig.data) == 6  # (2 datasets x 3 methods) lines
    assert all(list(t.x) == [10, 50] and t.error_y.array is not None for t in fig.data)
    with pytest.raises(ValueError, match="two or more step counts"):
        steps_figure(summary[summary.steps == 10], "hpsv2")


def test_write_report_html_and_json(rows, summary, tmp_path):
    paths = write_report(summary, rows, tmp_path, plotlyjs="cdn")
    html = (tmp_path / "report.html").read_text()
    assert "NPNet benchmark report" in html and html.count("plotly-graph-div") >= 4
    names = json.loads((tmp_path / "figures" / "index.json").read_text())
    assert {"metric_table", "win_rates", "delta_hpsv2", "steps_hpsv2", "steps_mps"} <= set(names)
    assert not list(tmp_path.rglob("*.png"))
    fig = load_figure(paths["figure:win_rates"])
    assert any(s.y0 == 50 for s in fig.layout.shapes)
    assert pd.read_csv(paths["csv"]).shape[0] == len(summary)
    with pytest.raises(ValueError, match="plotlyjs"):
        write_report(summary, rows, tmp_path, plotlyjs="none")


@pytest.fixture(scope="module")
def micro_rows() -> pd.DataFrame:
    """A binary verifier (micro: correct iff > 0.5) at two step counts, 10 prompts x 3 seeds."""
    rng = np.random.default_rng(1)
    records = [
        {"steps": steps, "prompt_index": i, "prompt": f"prompt {i}", "seed": s, "method": method,
         "micro": float(rng.random() < 0.6 + 0.1 * k)}
        for steps in (10, 20) for i in range(10) for s in range(3) for k, method in enumerate(METHODS)
    ]  # fmt: skip
    return pd.DataFrame.from_records(records)


@pytest.fixture(scope="module")
def micro_summary(micro_rows) -> pd.DataFrame:
    return summarize(micro_rows, metrics=["micro"], n_boot=300)


def test_accuracy_bars_have_ci_whiskers_and_rescued_broken_labels(micro_summary):
    fig = accuracy_figure(micro_summary)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == list(METHODS)
    for bar in bars:
        assert list(bar.x) == ["10", "20"]  # one bar per step count
        assert (np.asarray(bar.error_y.array) >= -1e-9).all() and (
            np.asarray(bar.error_y.arrayminus) >= -1e-9
        ).all()
    by = micro_summary.set_index(["steps", "method"])
    npnet = next(t for t in bars if t.name == "npnet")
    expected = [
        f"+{int(by.loc[(s, 'npnet'), 'rescued'])} / -{int(by.loc[(s, 'npnet'), 'broken'])}" for s in (10, 20)
    ]
    assert list(npnet.text) == expected
    assert list(npnet.y) == pytest.approx([100 * by.loc[(s, "npnet"), "accuracy"] for s in (10, 20)])
    assert all(t == "" for t in bars[0].text)  # the baseline has nothing to rescue
    assert "McNemar" in npnet.hovertemplate
    with pytest.raises(ValueError, match="binary"):
        accuracy_figure(micro_summary.assign(accuracy=np.nan))
    with pytest.raises(ValueError, match="binary"):
        binary_table_figure(micro_summary.drop(columns="accuracy"))


def test_binary_table_lists_rescued_broken_and_mcnemar(micro_summary):
    fig = binary_table_figure(micro_summary)
    header = list(fig.data[0].header.values)
    assert header[:3] == ["steps", "metric", "method"]
    assert {"rescued", "broken", "McNemar p", "prompt-level p", "accuracy % [95% CI]"} <= set(header)
    cells = dict(zip(header, fig.data[0].cells.values))
    assert len(cells["method"]) == 6
    i = cells["method"].index("npnet")
    row = micro_summary.iloc[i]
    assert cells["rescued"][i] == str(int(row.rescued)) and cells["broken"][i] == str(int(row.broken))
    assert cells["rescued"][cells["method"].index("standard")] == ""
    assert "[" in cells["accuracy % [95% CI]"][0]


def test_report_includes_binary_figures_only_for_binary_metrics(
    micro_rows, micro_summary, rows, summary, tmp_path
):
    names = set(report_figures(micro_summary, micro_rows))
    assert {"accuracy", "rescued_broken", "win_rates", "metric_table", "steps_micro"} <= names
    assert not {"accuracy", "rescued_broken"} & set(report_figures(summary, rows))
    paths = write_report(micro_summary, micro_rows, tmp_path, plotlyjs="cdn")
    assert "prompt_sign_p" in (tmp_path / "report.html").read_text()
    assert load_figure(paths["figure:accuracy"]).data[0].type == "bar"
    assert {"accuracy", "rescued", "broken", "mcnemar_p", "accuracy_diff_pp"} <= set(
        pd.read_csv(paths["csv"]).columns
    )
