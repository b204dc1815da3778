"""Seeds tab: one prompt over K seeds, standard vs NPNet per seed, win rate; a row opens that pair."""

from __future__ import annotations

import dataclasses

import gradio as gr
import pandas as pd

from npnet.errors import UserError
from studio.errors import user_errors
from studio.form import GenerateForm, whole_number
from studio.render import pair_outputs
from studio.service import Pair, StudioService
from studio.sessions import session_of
from studio.spaces_compat import gpu
from studio.tabs.generate import GenerateTab

TABLE_COLUMNS = ["seed", "standard", "npnet", "NPNet - standard", "verdict"]


def seed_table(pairs: list[Pair], metric: str, higher_is_better: bool) -> pd.DataFrame:
    """One row per seed: both scores, the difference and who won (strictly, as the official code)."""
    rows = []
    for pair in pairs:
        values = pair.scores.get(metric, {})
        std, gold = values.get("standard"), values.get("npnet")
        diff = None if std is None or gold is None else gold - std
        better = None if diff is None else (diff if higher_is_better else -diff)
        verdict = "no score" if better is None else "NPNet better" if better > 0 else "NPNet worse"
        if better == 0:
            verdict = "tie"
        rows.append(
            {
                "seed": pair.result.settings["seed"],
                "standard": None if std is None else round(std, 5),
                "npnet": None if gold is None else round(gold, 5),
                "NPNet - standard": None if diff is None else round(diff, 5),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def summary(pairs: list[Pair], table: pd.DataFrame, metric: str, higher_is_better: bool) -> str:
    """Win rate over the grid with a paired bootstrap CI and sign test, plus rescued / hurt seeds."""
    from eval.stats import paired_stats

    scored = table.dropna(subset=["standard", "npnet"])
    if scored.empty:
        why = next(iter(pairs[0].score_errors.values()), "no scores") if pairs else "no seeds"
        return f"No {metric} scores: {why}"
    st = paired_stats(scored["npnet"], scored["standard"], higher_is_better)
    rescued = scored.loc[scored["verdict"] == "NPNet better", "seed"].tolist()
    hurt = scored.loc[scored["verdict"] == "NPNet worse", "seed"].tolist()
    return binary_summary(scored, metric) + (
        f"**{metric}**: NPNet wins on {st['wins']} of {st['n_pairs']} seeds — win rate "
        f"**{100 * st['win_rate']:.1f}%** (95% bootstrap CI {100 * st['win_rate_ci_low']:.1f}–"
        f"{100 * st['win_rate_ci_high']:.1f}%), {st['ties']} ties, {st['losses']} losses, sign test "
        f"p = {st['sign_p']:.3g}; mean difference {st['mean_diff']:+.4g}.\n\n"
        f"Rescued (NPNet better): {rescued or 'none'} · Hurt (NPNet worse): {hurt or 'none'}. "
        "Select a row to open that pair in Generate and Noise analysis."
    )


def binary_summary(scored: pd.DataFrame, metric: str) -> str:
    """For a binary verifier (micro: correct iff score > 0.5): accuracy of both and the seeds NPNet
    rescued (standard wrong, NPNet right) or broke, with the exact McNemar test; empty for other metrics."""
    from eval.stats import BINARY_METRICS, binary_stats

    if metric not in BINARY_METRICS:
        return ""
    threshold = BINARY_METRICS[metric]
    st = binary_stats(scored["npnet"], scored["standard"], threshold=threshold)
    std_ok, gold_ok = (scored["standard"] > threshold), (scored["npnet"] > threshold)
    rescued = scored.loc[gold_ok & ~std_ok, "seed"].tolist()
    broken = scored.loc[std_ok & ~gold_ok, "seed"].tolist()
    return (
        f"**Correct ({metric} > {threshold})**: standard {int(std_ok.sum())} of {len(scored)}, NPNet "
        f"{int(gold_ok.sum())} — **{st['rescued']} rescued** {rescued or ''}, **{st['broken']} broken** "
        f"{broken or ''} (exact McNemar p = {st['mcnemar_p']:.3g}).\n\n"
    )


def make_run_seeds(service: StudioService):
    @gpu(duration=300)
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
        return summary(pairs, table, metric, hib), table, gallery, pairs

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
        "One prompt over a grid of seeds with the Generate tab's model and settings: which seeds does "
        "NPNet rescue or hurt, and how often does it win?"
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
