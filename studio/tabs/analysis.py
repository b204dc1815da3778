"""Noise analysis tab: the paper's Fig. 8 and Gaussianity checks for the session's current pair."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd

from eval.noise_plots import analysis_figures
from npnet.analysis import LATENT_LABELS, NoiseAnalysis, analyze_latents
from npnet.errors import UserError
from studio.errors import user_errors
from studio.service import Pair, StudioService

INTRO = (
    "For the current pair (no regeneration): the paper's Fig. 8 — |cos| between corresponding singular "
    "vectors of x_T and the golden noise (and x'_T when inversion ran) after the 4xhxw -> 2hx2w "
    "rearrangement NPNet's SVD branch uses, sorted descending — plus singular value spectra, per-channel "
    "residuals (golden - x_T) and the residual distribution against N(0, sigma^2)."
)


@dataclass
class AnalysisTab:
    outputs: list
    button: gr.Button


def headline(pair: Pair, analysis: NoiseAnalysis) -> str:
    """One line per compared noise: mean |cos| of U and V, norm ratio, kurtosis and KS distance."""
    s = pair.result.settings
    lines = [f"**{s['model']}**, seed {s['seed']}, prompt: *{s['prompt']}*"]
    for name, sim in analysis.similarity.items():
        st, hist = analysis.stats[name], analysis.histograms[name]
        lines.append(
            f"- x_T vs {LATENT_LABELS.get(name, name)}: mean |cos| U {np.mean(sim.u):.3f}, "
            f"V {np.mean(sim.v):.3f}; norm ratio {st.norm_ratio:.3f}; excess kurtosis {st.kurtosis:+.3f}; "
            f"residual std {hist.sigma:.3f}, KS distance to N(0, sigma^2) {hist.ks_distance:.3f}"
        )
    if len(analysis.names) == 1:
        lines.append("- only x_T was generated: enable NPNet or inversion under Advanced options to compare")
    return "\n".join(lines)


def make_analyze(service: StudioService):
    @user_errors
    def analyze(pair: Pair | None):
        """Figures and statistics of the session's current pair."""
        if pair is None:
            raise UserError("no pair to analyse yet: generate one in the Generate tab (or pick a Seeds row)")
        analysis = analyze_latents(pair.result.latents)
        figures = analysis_figures(analysis)
        stats = pd.DataFrame(analysis.stats_rows())
        return (
            headline(pair, analysis),
            figures["similarity"],
            figures["spectrum"],
            figures["residuals"],
            figures["histogram"],
            stats,
        )

    return analyze


def build_analysis_tab(service: StudioService, pair_state: gr.State) -> AnalysisTab:
    gr.Markdown(INTRO)
    button = gr.Button("Analyse the current pair", elem_id="analyze-button")
    header = gr.Markdown(elem_id="analysis-header", label="Analysis summary")
    similarity = gr.Plot(label="Singular-vector similarity (Fig. 8)", elem_id="plot-similarity")
    with gr.Row():
        spectrum = gr.Plot(label="Singular value spectra", elem_id="plot-spectrum")
        histogram = gr.Plot(label="Residual histogram", elem_id="plot-histogram")
    residuals = gr.Plot(label="Residual heatmaps", elem_id="plot-residuals")
    stats = gr.Dataframe(label="Noise statistics", interactive=False, elem_id="analysis-stats")
    outputs = [header, similarity, spectrum, residuals, histogram, stats]
    button.click(make_analyze(service), inputs=pair_state, outputs=outputs, api_name="analyze")
    return AnalysisTab(outputs, button)
