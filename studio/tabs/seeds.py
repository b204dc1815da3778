"""Seeds tab: one prompt over K seeds, standard vs NPNet per seed, win rate; a row opens that pair."""

from __future__ import annotations

import dataclasses
import math

import gradio as gr
import numpy as np
import pandas as pd

from npnet.errors import UserError
from studio.errors import user_errors
from studio.form import GenerateForm, whole_number
from studio.gpu_time import seeds_seconds
from studio.render import pair_outputs
from studio.service import Pair, StudioService
from studio.sessions import session_of
from studio.spaces_compat import gpu
from studio.tabs.generate import GenerateTab

TABLE_COLUMNS = ["seed", "standard", "npnet", "NPNet - standard", "verdict"]
VERIFIER_COLUMN = "verifier"  # binary verifiers only: rescued / broken / both correct / both wrong
VERDICTS = {1: "NPNet better", 0: "tie", -1: "NPNet worse"}
CHANGES = {1: "rescued", -1: "broken"}


def seed_scores(pairs: list[Pair], metric: str) -> pd.DataFrame:
    """Raw scores per seed (seed, standard, npnet; NaN where ``metric`` gave no score), unrounded."""
    rows = [
        {
            "seed": pair.result.settings["seed"],
            "standard": pair.scores.get(metric, {}).get("standard", math.nan),
            "npnet": pair.scores.get(metric, {}).get("npnet", math.nan),
        }
        for pair in pairs
    ]
    return pd.DataFrame(rows, columns=["seed", "standard", "npnet"])


def seed_table(pairs: list[Pair], metric: str, higher_is_better: bool) -> pd.DataFrame:
    """One row per seed: both scores, the difference and the verdict (a win only by more than the stats
    module's ``VERDICT_TIE_MARGIN``); for a binary verifier also whether NPNet rescued or broke the seed."""
    from eval.stats import BINARY_METRICS, VERDICT_TIE_MARGIN, binary_changes, pair_outcomes

    raw = seed_scores(pairs, metric)
    scored = raw["standard"].notna() & raw["npnet"].notna()
    ok = raw[scored]
    outcome = pair_outcomes(ok["npnet"], ok["standard"], higher_is_better, VERDICT_TIE_MARGIN)
    table = pd.DataFrame(
        {
            "seed": raw["seed"],
            "standard": raw["standard"].round(5),
            "npnet": raw["npnet"].round(5),
            "NPNet - standard": (raw["npnet"] - raw["standard"]).round(5),
            "verdict": "no score",
        },
        columns=TABLE_COLUMNS,
    )
    table.loc[scored, "verdict"] = [VERDICTS[int(o)] for o in outcome]
    if metric in BINARY_METRICS:
        threshold = BINARY_METRICS[metric]
        change = binary_changes(ok["npnet"], ok["standard"], threshold)
        both = np.where(ok["standard"] > threshold, "both correct", "both wrong")
        table[VERIFIER_COLUMN] = "no score"
        table.loc[scored, VERIFIER_COLUMN] = [CHANGES.get(int(c), b) for c, b in zip(change, both)]
    return table


def summary(pairs: list[Pair], metric: str, higher_is_better: bool) -> str:
    """Win rate over the grid (ties within ``VERDICT_TIE_MARGIN``, as the verdict column) with a paired
    bootstrap CI and sign test, the seeds NPNet scores better / worse on, and for a binary verifier
    the rescued / broken seeds."""
    from eval.stats import VERDICT_TIE_MARGIN, pair_outcomes, paired_stats

    scored = seed_scores(pairs, metric).dropna(subset=["standard", "npnet"])
    if scored.empty:
        why = next(iter(pairs[0].score_errors.values()), "no scores") if pairs else "no seeds"
        return f"No {metric} scores: {why}"
    st = paired_stats(scored["npnet"], scored["standard"], higher_is_better, tie_margin=VERDICT_TIE_MARGIN)
    outcome = pair_outcomes(scored["npnet"], scored["standard"], higher_is_better, VERDICT_TIE_MARGIN)
    better = scored.loc[outcome > 0, "seed"].tolist()
    worse = scored.loc[outcome < 0, "seed"].tolist()
    return binary_summary(scored, metric) + (
        f"**{metric}**: NPNet scores better on {st['wins']} of {st['n_pairs']} seeds — win rate "
        f"**{100 * st['win_rate']:.1f}%** (95% bootstrap CI {100 * st['win_rate_ci_low']:.1f}–"
        f"{100 * st['win_rate_ci_high']:.1f}%), {st['ties']} ties (|difference| ≤ {VERDICT_TIE_MARGIN:g}), "
        f"{st['losses']} losses, sign test p = {st['sign_p']:.3g}; mean difference {st['mean_diff']:+.4g}.\n\n"
        f"NPNet better: {better or 'none'} · NPNet worse: {worse or 'none'}. "
        "Select a row to open that pair in Generate and Noise analysis."
    )


def binary_summary(scored: pd.DataFrame, metric: str) -> str:
    """For a binary verifier (micro: correct iff score > 0.5): accuracy of both and the seeds NPNet
    rescued (standard wrong, NPNet right) or broke, with the exact McNemar test; empty for other metrics.
    The lists and counts are ``eval.stats.binary_changes``, the definition ``binary_stats`` counts."""
    from eval.stats import BINARY_METRICS, binary_changes, binary_stats

    if metric not in BINARY_METRICS:
        return ""
    threshold = BINARY_METRICS[metric]
    st = binary_stats(scored["npnet"], scored["standard"], threshold=threshold)
    change = binary_changes(scored["npnet"], scored["standard"], threshold)
    rescued = scored.loc[change > 0, "seed"].tolist()
    broken = scored.loc[change < 0, "seed"].tolist()
    std_ok, gold_ok = int((scored["standard"] > threshold).sum()), int((scored["npnet"] > threshold).sum())
    return (
        f"**Correct ({metric} > {threshold})**: standard {std_ok} of {len(scored)}, NPNet "
        f"{gold_ok} — **{st['rescued']} rescued** {rescued or ''}, **{st['broken']} broken** "
        f"{broken or ''} (exact McNemar p = {st['mcnemar_p']:.3g}).\n\n"
    )


def make_run_seeds(service: StudioService):
    @gpu(duration=seeds_seconds)
    @user_errors
    def run_seeds(
        prompt, negative_prompt, first_seed, count, metric, model, npnet, scheduler, steps, guidance_scale,
        width, height, progress=gr.Progress(), request: gr.Request = None,
    ):  # fmt: skip
        """Standard and NPNet images for seeds first_seed .. first_seed + count - 1, scored by ``metric``."""
        count = whole_number("seed count", count, 1)
        if count > service.config.max_seeds:
            raise UserError(f"seed count must be between 1 and {service.config.max_seeds} on this server")
        if not metric:
            raise UserError("choose a metric to rank the seeds")
        form = GenerateForm(
            prompt, negative_prompt, first_seed, model, npnet, scheduler, steps, guidance_scale, width, height
        )
        first = form.request(service, ("standard", "npnet"), session_of(request))
        # batched: the model preset's batch_size samples per pipeline call (progress moves per batch)
        requests = [dataclasses.replace(first, seed=first.seed + k) for k in range(count)]
        batch = service.engine.preset(first.model).batch_size
        pairs = []
        for lo in progress.tqdm(range(0, count, batch), desc="seed batches"):
            pairs.extend(service.generate_many(requests[lo : lo + batch], [metric]))
        hib = service.scorer(metric).higher_is_better
        table = seed_table(pairs, metric, hib)
        gallery = [
            (p.result.images[m], f"seed {p.result.settings['seed']} · {m}")
            for p in pairs
            for m in ("standard", "npnet")
        ]
        return summary(pairs, metric, hib), table, gallery, pairs

    return run_seeds


def make_open_seed(service: StudioService):
    @user_errors
    def open_seed(pairs: list[Pair] | None, evt: gr.SelectData):
        """The selected row's pair as the current pair; switch to the Generate tab."""
        if not pairs:
            raise UserError("run a seed grid first")
        row = evt.row_value if evt.row_value else None
        seed = int(row[0]) if row else pairs[evt.index[0]].result.settings["seed"]
        pair = next(p for p in pairs if p.result.settings["seed"] == seed)
        return (*pair_outputs(service, pair), pair, gr.Tabs(selected="generate"))

    return open_seed


def build_seeds_tab(service: StudioService, gen: GenerateTab, pair_state: gr.State, tabs: gr.Tabs):
    gr.Markdown(
        "One prompt over a grid of seeds with the Generate tab's model and settings: on which seeds does "
        "NPNet score better or worse (rescue or break them, for a binary verifier), and how often does it win?"
    )
    with gr.Row():
        prompt = gr.Textbox(
            label="Prompt",
            lines=1,
            scale=3,
            placeholder="uses this prompt for every seed",
            elem_id="seeds-tab-prompt",
        )
        first = gr.Number(value=0, step=1, minimum=0, label="First seed", scale=1)
        count = gr.Slider(1, service.config.max_seeds, value=min(8, service.config.max_seeds), step=1,
                          label="Seeds (K)", scale=1, elem_id="seeds-count")  # fmt: skip
        metrics = service.metric_choices()
        default = service.default_metrics(service.default_model)[0]
        metric = gr.Dropdown(
            metrics, value=default if default in metrics else metrics[0], label="Metric", scale=1
        )
    button = gr.Button("Run seed grid", variant="primary", elem_id="seeds-button")
    result = gr.Markdown(elem_id="seeds-summary", label="Seed grid summary")
    table = gr.Dataframe(label="Per seed (click a header to sort, a row to open the pair)", interactive=False,
                         elem_id="seeds-table")  # fmt: skip
    gallery = gr.Gallery(
        label="Pairs", columns=8, height=300, format="png", preview=False, elem_id="seeds-gallery"
    )
    seeds_state = gr.State(time_to_live=3600)
    button.click(
        make_run_seeds(service),
        inputs=[prompt, gen.negative_prompt, first, count, metric, *gen.settings],
        outputs=[result, table, gallery, seeds_state],
        api_name="seeds",
        concurrency_id="gpu",
    )
    return table.select(
        make_open_seed(service),
        inputs=seeds_state,
        outputs=[*gen.outputs, pair_state, tabs],
        api_visibility="private",
    )
