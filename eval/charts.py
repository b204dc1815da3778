"""plotly figures for benchmark results and a self-contained HTML report (no PNGs).

Figures take the ``eval.stats.summarize`` table (and the per-sample rows for distributions):
win-rate bars with bootstrap CI whiskers and a 50% line (paper Fig. 3), a metric table (Table 2
style), per-prompt paired differences, metric-vs-steps curves (Fig. 4) when several step counts
were run, and for binary verifiers (e.g. the micro verifier) accuracy bars with CIs annotated with
rescued/broken counts plus a rescued/broken/McNemar table. ``write_report`` writes ``report.html``,
``summary.csv`` and one JSON per figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from eval.stats import SUMMARY_COLUMNS, paper_table
from npnet.errors import UserError

PALETTE = qualitative.Plotly


def _colors(methods: list[str]) -> dict[str, str]:
    return {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(methods)}


def _facet_values(frame: pd.DataFrame, column: str) -> list:
    return list(dict.fromkeys(frame[column])) if column in frame else [None]


def _select(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    return frame if value is None else frame[frame[column] == value]


def win_rate_figure(summary: pd.DataFrame, baseline: str = "standard", title: str | None = None) -> go.Figure:
    """Grouped bars: win rate (%) vs the baseline per metric, one panel per dataset/model; 50% line."""
    compared = summary[(summary["method"] != baseline) & summary["win_rate"].notna()]
    if compared.empty:
        raise UserError(
            f"no paired comparisons against {baseline!r} in the summary; run the baseline method too"
        )
    datasets, models = _facet_values(compared, "dataset"), _facet_values(compared, "model")
    titles = [" / ".join(str(v) for v in (m, d) if v is not None) for m in models for d in datasets]
    fig = make_subplots(rows=len(models), cols=len(datasets), subplot_titles=titles, shared_yaxes=True)
    colors = _colors(list(dict.fromkeys(compared["method"])))
    for r, model in enumerate(models, start=1):
        for c, dataset in enumerate(datasets, start=1):
            panel = _select(_select(compared, "model", model), "dataset", dataset)
            for method, part in panel.groupby("method", sort=False):
                rate = 100 * part["win_rate"]
                fig.add_trace(
                    go.Bar(
                        x=part["metric"],
                        y=rate,
                        name=method,
                        legendgroup=method,
                        showlegend=(r, c) == (1, 1),
                        marker_color=colors[method],
                        error_y=dict(
                            type="data",
                            symmetric=False,
                            array=100 * part["win_rate_ci_high"] - rate,
                            arrayminus=rate - 100 * part["win_rate_ci_low"],
                        ),
                        customdata=np.stack([part["wins"], part["ties"], part["losses"], part["sign_p"]], -1),
                        hovertemplate="%{x}: %{y:.1f}% wins<br>wins/ties/losses %{customdata[0]}/"
                        "%{customdata[1]}/%{customdata[2]}<br>sign test p=%{customdata[3]:.3g}<extra>"
                        + str(method)
                        + "</extra>",
                    ),
                    row=r,
                    col=c,
                )
    fig.add_hline(y=50, line_dash="dash", line_color="gray", annotation_text="50%", row="all", col="all")
    margins = compared["tie_margin"].dropna().unique() if "tie_margin" in compared else []
    better = "strictly better" if not any(margins) else "better by more than the tie margin"
    fig.update_layout(
        barmode="group",
        title=title or f"Win rate vs {baseline} ({better}; 95% paired bootstrap CI)",
        yaxis_title="win rate (%)",
        legend_title="method",
    )
    fig.update_yaxes(range=[0, 100])
    return fig


def _cell(mean: float, low: float, high: float, digits: int) -> str:
    if np.isnan(mean):
        return ""
    if np.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _digits(values: pd.Series) -> int:
    scale = float(np.nanmax(np.abs(values))) if values.notna().any() else 1.0
    return 4 if scale < 10 else 2


def metric_table_figure(summary: pd.DataFrame, title: str = "Metric means (95% CI)") -> go.Figure:
    """Table 2-style table: mean [95% CI] per metric (pairwise metrics as % preferred)."""
    if summary.empty:
        raise UserError("empty summary: nothing to tabulate")
    table = paper_table(summary)
    metrics = [c for c in table.columns if c in set(summary["metric"])]
    keys = [c for c in table.columns if c not in metrics]
    lookup = summary.set_index([*keys, "metric"])
    cells = [table[k].astype(str).tolist() for k in keys]
    for metric in metrics:
        part = summary[summary["metric"] == metric]
        pairwise = part["preference"].notna().any()
        digits = 2 if pairwise else _digits(part["mean"])
        column = []
        for _, row in table.iterrows():
            stats = lookup.loc[tuple(row[k] for k in keys) + (metric,)]
            if pairwise:
                column.append(
                    _cell(stats["preference"], stats["preference_ci_low"], stats["preference_ci_high"], 2)
                )
            else:
                column.append(_cell(stats["mean"], stats["ci_low"], stats["ci_high"], digits))
        cells.append(column)
    headers = keys + [
        f"{m} (%)" if summary.loc[summary.metric == m, "preference"].notna().any() else m for m in metrics
    ]
    fig = go.Figure(
        go.Table(header=dict(values=headers, align="left"), cells=dict(values=cells, align="left"))
    )
    fig.update_layout(title=title)
    return fig


def paired_deltas(rows: pd.DataFrame, metric: str, baseline: str = "standard") -> pd.DataFrame:
    """Per-(prompt, seed) differences method - baseline for ``metric`` (columns: method, delta, ...)."""
    key = "prompt_index" if "prompt_index" in rows else "prompt"
    groups = [c for c in ("model", "dataset", "steps") if c in rows]
    valid = rows[rows[metric].notna()]
    ref = valid[valid["method"] == baseline][[*groups, key, "seed", metric]].rename(columns={metric: "base"})
    other = valid[valid["method"] != baseline][[*groups, key, "seed", "method", metric]]
    merged = other.merge(ref, on=[*groups, key, "seed"], how="inner")
    return merged.assign(delta=merged[metric] - merged["base"])


def delta_figure(rows: pd.DataFrame, metric: str, baseline: str = "standard") -> go.Figure:
    """Distribution of per-prompt paired differences (box + points) for each method vs the baseline."""
    deltas = paired_deltas(rows, metric, baseline)
    if deltas.empty:
        raise UserError(f"no paired samples of {metric!r} against {baseline!r}")
    colors = _colors(list(dict.fromkeys(deltas["method"])))
    fig = go.Figure()
    label = "prompt" if "prompt" in deltas else ("prompt_index" if "prompt_index" in deltas else "seed")
    for method, part in deltas.groupby("method", sort=False):
        fig.add_trace(
            go.Box(
                y=part["delta"],
                name=method,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker_color=colors[method],
                boxmean=True,
                text=part[label].astype(str),
                hovertemplate="%{text}<br>delta %{y:.4g}<extra>" + str(method) + "</extra>",
            )
        )
    fig.add_hline(y=0, line_dash="dash", line_color="gray")
    fig.update_layout(
        title=f"{metric}: per-prompt difference vs {baseline}", yaxis_title=f"{metric} difference"
    )
    return fig


def steps_figure(summary: pd.DataFrame, metric: str) -> go.Figure:
    """Metric mean (95% CI) vs inference steps, one line per method (paper Fig. 4)."""
    if "steps" not in summary:
        raise UserError("the summary has no 'steps' column; summarise rows that record the step count")
    part = summary[summary["metric"] == metric]
    if part["steps"].nunique() < 2:
        raise UserError(f"{metric}: need results at two or more step counts for a steps curve")
    fig = go.Figure()
    colors = _colors(list(dict.fromkeys(part["method"])))
    facets = [c for c in ("model", "dataset") if c in part]
    for key, line in part.sort_values("steps").groupby([*facets, "method"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        fig.add_trace(
            go.Scatter(
                x=line["steps"],
                y=line["mean"],
                mode="lines+markers",
                name=" / ".join(str(k) for k in key),
                line_color=colors[key[-1]],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=line["ci_high"] - line["mean"],
                    arrayminus=line["mean"] - line["ci_low"],
                ),
            )
        )
    fig.update_layout(title=f"{metric} vs inference steps", xaxis_title="steps", yaxis_title=metric)
    return fig


def _group_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per row from the group columns (model, dataset, steps, variant, ...); 'all' if none."""
    keys = [c for c in frame.columns if c not in SUMMARY_COLUMNS]
    if not keys:
        return pd.Series("all", index=frame.index)
    return frame[keys].astype(str).agg(" / ".join, axis=1)


def _binary_rows(summary: pd.DataFrame) -> pd.DataFrame:
    if "accuracy" not in summary or not summary["accuracy"].notna().any():
        raise UserError(
            "no binary-verifier accuracy in the summary; summarise with binary_metrics={metric: threshold}"
        )
    return summary[summary["accuracy"].notna()]


def _count(value) -> str:
    return "" if pd.isna(value) else str(int(value))


def accuracy_figure(summary: pd.DataFrame, baseline: str = "standard", title: str | None = None) -> go.Figure:
    """Accuracy (%) per method with 95% prompt-clustered bootstrap CIs, one panel per binary metric.

    Bars are grouped by the summary's group columns; each non-baseline bar is labelled
    "+rescued / -broken" (vs the baseline on the same prompt and seed) and its hover gives the McNemar
    p-values and the accuracy difference in percentage points with its CI.
    """
    binary = _binary_rows(summary)
    metrics = list(dict.fromkeys(binary["metric"]))
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics, shared_yaxes=True)
    colors = _colors(list(dict.fromkeys(binary["method"])))
    labels = _group_labels(binary)
    for c, metric in enumerate(metrics, start=1):
        panel = binary[binary["metric"] == metric]
        for method, part in panel.groupby("method", sort=False):
            acc = 100 * part["accuracy"]
            compared = method != baseline
            text = [f"+{_count(r)} / -{_count(b)}" if compared and pd.notna(r) else ""
                    for r, b in zip(part["rescued"], part["broken"])]  # fmt: skip
            custom = np.stack(
                [part["rescued"], part["broken"], part["mcnemar_p"], part["prompt_mcnemar_p"],
                 part["accuracy_diff_pp"], part["accuracy_diff_pp_ci_low"], part["accuracy_diff_pp_ci_high"],
                 part["n"]], -1,
            )  # fmt: skip
            hover = "%{x}: accuracy %{y:.1f}% (n=%{customdata[7]})"
            if compared:
                hover += (
                    f"<br>vs {baseline}: rescued %{{customdata[0]}}, broken %{{customdata[1]}}"
                    "<br>McNemar p=%{customdata[2]:.3g} (prompt level %{customdata[3]:.3g})"
                    "<br>accuracy difference %{customdata[4]:+.1f} pp "
                    "[%{customdata[5]:+.1f}, %{customdata[6]:+.1f}]"
                )
            fig.add_trace(
                go.Bar(
                    x=labels[part.index],
                    y=acc,
                    name=method,
                    legendgroup=method,
                    showlegend=c == 1,
                    marker_color=colors[method],
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=100 * part["accuracy_ci_high"] - acc,
                        arrayminus=acc - 100 * part["accuracy_ci_low"],
                    ),
                    text=text,
                    textposition="inside",
                    insidetextanchor="start",
                    customdata=custom,
                    hovertemplate=hover + "<extra>" + str(method) + "</extra>",
                ),
                row=1,
                col=c,
            )
    fig.update_layout(
        barmode="group",
        title=title
        or f"Accuracy per method (95% prompt-clustered bootstrap CI); bars: +rescued / -broken vs {baseline}",
        yaxis_title="accuracy (%)",
        legend_title="method",
    )
    fig.update_yaxes(range=[0, 105])
    return fig


def binary_table_figure(
    summary: pd.DataFrame, baseline: str = "standard", title: str | None = None
) -> go.Figure:
    """Table per binary metric and method: accuracy [CI], and vs the baseline rescued, broken, McNemar
    p (per sample and per prompt) and the accuracy difference in percentage points [CI]."""
    binary = _binary_rows(summary)
    keys = [c for c in binary.columns if c not in SUMMARY_COLUMNS]
    columns = {k: binary[k].astype(str).tolist() for k in keys}
    columns["metric"] = binary["metric"].tolist()
    columns["method"] = binary["method"].tolist()
    columns["pairs"] = [_count(v) for v in binary["n_pairs"]]
    columns["accuracy % [95% CI]"] = [
        _cell(100 * a, 100 * lo, 100 * hi, 1)
        for a, lo, hi in zip(binary["accuracy"], binary["accuracy_ci_low"], binary["accuracy_ci_high"])
    ]
    columns["rescued"] = [_count(v) for v in binary["rescued"]]
    columns["broken"] = [_count(v) for v in binary["broken"]]
    columns["McNemar p"] = ["" if pd.isna(v) else f"{v:.3g}" for v in binary["mcnemar_p"]]
    columns["prompt-level p"] = ["" if pd.isna(v) else f"{v:.3g}" for v in binary["prompt_mcnemar_p"]]
    columns["Δ accuracy pp [95% CI]"] = [
        _cell(d, lo, hi, 1)
        for d, lo, hi in zip(
            binary["accuracy_diff_pp"], binary["accuracy_diff_pp_ci_low"], binary["accuracy_diff_pp_ci_high"]
        )
    ]
    fig = go.Figure(
        go.Table(
            header=dict(values=list(columns), align="left"),
            cells=dict(values=list(columns.values()), align="left"),
        )
    )
    fig.update_layout(
        title=title
        or f"Binary verifiers vs {baseline}: rescued (baseline wrong, method right), broken (the reverse)"
    )
    return fig


def report_figures(
    summary: pd.DataFrame, rows: pd.DataFrame, baseline: str = "standard"
) -> dict[str, go.Figure]:
    """Every figure that applies to these results, keyed by a file-safe name."""
    figures = {"metric_table": metric_table_figure(summary)}
    if (summary["method"] != baseline).any() and summary["win_rate"].notna().any():
        figures["win_rates"] = win_rate_figure(summary, baseline)
    for metric in dict.fromkeys(summary["metric"]):
        if metric in rows and not paired_deltas(rows, metric, baseline).empty:
            figures[f"delta_{metric}"] = delta_figure(rows, metric, baseline)
        if "steps" in summary and summary.loc[summary["metric"] == metric, "steps"].nunique() >= 2:
            figures[f"steps_{metric}"] = steps_figure(summary, metric)
    if "accuracy" in summary and summary["accuracy"].notna().any():
        figures["accuracy"] = accuracy_figure(summary, baseline)
        figures["rescued_broken"] = binary_table_figure(summary, baseline)
    return figures


def write_report(
    summary: pd.DataFrame,
    rows: pd.DataFrame,
    out_dir: str | Path,
    baseline: str = "standard",
    title: str = "NPNet benchmark report",
    plotlyjs: str = "inline",
) -> dict[str, Path]:
    """Write report.html (figures + tables), summary.csv and figures/<name>.json; returns their paths."""
    from npnet.io import atomic_write_text

    if plotlyjs not in ("inline", "cdn"):
        raise UserError(
            f"plotlyjs must be 'inline' (self-contained, works offline) or 'cdn', got {plotlyjs!r}"
        )
    out = Path(out_dir)
    figures = report_figures(summary, rows, baseline)
    paths = {"csv": atomic_write_text(out / "summary.csv", summary.to_csv(index=False))}
    for name, fig in figures.items():
        paths[f"figure:{name}"] = atomic_write_text(out / "figures" / f"{name}.json", fig.to_json())
    parts = []
    for i, fig in enumerate(figures.values()):
        include = (True if plotlyjs == "inline" else "cdn") if i == 0 else False
        parts.append(fig.to_html(full_html=False, include_plotlyjs=include))
    html = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>Win rate: share of (prompt, seed) pairs where the method scores strictly "
        f"higher than {baseline} (by more than <code>tie_margin</code> when it is set); ties are listed "
        f"separately. CIs: 95% (t for means, paired bootstrap for win rates). When prompts have several "
        f"seeds every CI resamples prompts (cluster bootstrap; t intervals on per-prompt means). p: "
        f"two-sided exact sign test without ties; <code>sign_p</code> counts (prompt, seed) pairs as "
        f"independent, <code>prompt_sign_p</code> counts prompts (per-prompt mean difference) and is "
        f"the one to quote when seeds repeat.</p><p>Binary verifiers (correct iff score &gt; "
        f"<code>binary_threshold</code>): accuracy with a prompt-clustered bootstrap CI; rescued = "
        f"{baseline} wrong and method right, broken = the reverse, on the same (prompt, seed); "
        f"<code>mcnemar_p</code>: exact McNemar test (binomial of rescued vs broken), "
        f"<code>prompt_mcnemar_p</code>: the same over prompts. With few rescued + broken samples the "
        f"bootstrap CI of the accuracy difference is too narrow; trust the exact test.</p>"
        + "".join(parts)
        + "<h2>Summary</h2>"
        + summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        + "</body></html>"
    )
    paths["html"] = atomic_write_text(out / "report.html", html)
    paths["index"] = atomic_write_text(out / "figures" / "index.json", json.dumps(sorted(figures)))
    return paths


def load_figure(path: str | Path) -> go.Figure:
    """Read a figure JSON written by ``write_report`` (for the app)."""
    import plotly.io as pio

    return pio.from_json(Path(path).read_text())
