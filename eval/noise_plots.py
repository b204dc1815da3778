"""plotly figures for a ``NoiseAnalysis`` (Fig. 8 similarities, spectra, residual heatmaps, histograms)."""

from __future__ import annotations

import numpy as np

from npnet.analysis import LATENT_LABELS, NoiseAnalysis

COLORS = {"standard": "#636efa", "npnet": "#ef553b", "inversion": "#00a36c"}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 50, "r": 20, "t": 60, "b": 45}, "height": 360}


def _label(name: str) -> str:
    return LATENT_LABELS.get(name, name)


def similarity_figure(analysis: NoiseAnalysis):
    """Fig. 8: |cos| between corresponding singular vectors of x_T and each other noise, sorted."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("U (left singular vectors)", "V (right)"))
    for name, sim in analysis.similarity.items():
        for col, values in ((1, sim.u_sorted[0]), (2, sim.v_sorted[0])):
            fig.add_trace(
                go.Scatter(
                    x=np.arange(1, values.size + 1),
                    y=values,
                    mode="lines+markers",
                    name=f"x_T vs {_label(name)}",
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": COLORS.get(name)},
                    marker={"size": 4},
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(range=[0, 1.05], title_text="|cos|", row=1, col=1)
    fig.update_xaxes(title_text="singular vector (sorted by |cos|, descending)")
    fig.update_layout(title="Singular-vector similarity after the 4xhxw -> 2hx2w rearrangement", **_LAYOUT)
    return fig


def spectrum_figure(analysis: NoiseAnalysis):
    """Singular values of every noise's 2hx2w matrix."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, s in analysis.spectra.items():
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, s.size + 1),
                y=s,
                mode="lines+markers",
                name=_label(name),
                line={"color": COLORS.get(name)},
                marker={"size": 4},
            )
        )
    fig.update_layout(
        title="Singular value spectra", xaxis_title="index", yaxis_title="singular value", **_LAYOUT
    )
    return fig


def _panels(residual: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Heatmap panels of a (C, h, w) residual: one per channel for 4 channels; for 16 (SD3, Flux) the 4x4
    channel grid NPNet's SVD branch uses, as one (4h, 4w) panel."""
    channels = residual.shape[0]
    if channels <= 4:
        return [(f"channel {c}", residual[c]) for c in range(channels)]
    k = int(round(channels**0.5))
    h, w = residual.shape[1:]
    grid = residual.reshape(k, k, h, w).transpose(0, 2, 1, 3).reshape(k * h, k * w)  # (kh, kw)
    return [(f"{channels} channels as a {k}x{k} grid", grid)]


def residual_figure(analysis: NoiseAnalysis):
    """Per-channel heatmaps of each residual (noise - x_T) on one symmetric colour scale."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(analysis.residuals)
    rows = max(1, len(names))
    residuals = {n: _panels(r) for n, r in analysis.residuals.items()}  # name -> [(title, (h, w))]
    cols = max((len(p) for p in residuals.values()), default=4)
    titles = [f"{_label(n)} - x_T, {t}" for n in names for t, _ in residuals[n]]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None, horizontal_spacing=0.03)
    bound = max((float(np.abs(r).max()) for r in analysis.residuals.values()), default=1.0) or 1.0
    for row, name in enumerate(names, start=1):
        for c, (title, panel) in enumerate(residuals[name]):
            fig.add_trace(
                go.Heatmap(
                    z=panel[::-1],  # (h, w), row 0 at the top
                    zmin=-bound,
                    zmax=bound,
                    colorscale="RdBu_r",
                    showscale=row == 1 and c == cols - 1,
                    name=f"{name} {title}",
                ),
                row=row,
                col=c + 1,
            )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    layout = {**_LAYOUT, "height": 260 * rows + 60}
    fig.update_layout(title="Residuals per latent channel", **layout)
    return fig


def histogram_figure(analysis: NoiseAnalysis):
    """Histogram of each residual's entries against N(0, sigma^2) with the same sigma."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, hist in analysis.histograms.items():
        color = COLORS.get(name)
        fig.add_trace(
            go.Bar(
                x=hist.centers,
                y=hist.density,
                width=hist.width,
                name=f"{_label(name)} - x_T (KS {hist.ks_distance:.3f})",
                marker={"color": color},
                opacity=0.55,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=hist.centers,
                y=hist.gaussian,
                mode="lines",
                name=f"N(0, {hist.sigma:.3g}^2)",
                line={"color": color, "dash": "dash"},
            )
        )
    fig.update_layout(
        title="Residual distribution vs a Gaussian of the same std",
        xaxis_title="residual value",
        yaxis_title="density",
        barmode="overlay",
        **_LAYOUT,
    )
    return fig


def analysis_figures(analysis: NoiseAnalysis) -> dict:
    """All figures of the analysis tab by name."""
    return {
        "similarity": similarity_figure(analysis),
        "spectrum": spectrum_figure(analysis),
        "residuals": residual_figure(analysis),
        "histogram": histogram_figure(analysis),
    }
