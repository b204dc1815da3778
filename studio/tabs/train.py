"""Train tab: collect a small noise prompt dataset and train / fine-tune NPNet with a live loss curve."""

from __future__ import annotations

import math
import shutil

import gradio as gr

from eval.prompts import available_prompt_sets
from npnet.errors import UserError
from studio.errors import user_errors
from studio.gpu_time import TRAIN_STEP_S, clamp, images_seconds, number
from studio.service import StudioService
from studio.sessions import session_of
from studio.spaces_compat import gpu
from studio.training import (
    INITS,
    TrainForm,
    TrainingStopped,
    TrainPlan,
    collect_pairs,
    loss_curve,
    plan_training,
    save_init,
    start_training,
)

GATED = (
    "Training is disabled on this shared deployment. Run the app locally, or start it with "
    "`--allow-training`, to collect a noise prompt dataset and train an NPNet here."
)


def train_seconds(service: StudioService):
    """``collect_and_train``'s duration: Alg. 1 on every pair (standard image, re-denoise, the image from
    x'_T, both scored) and then the optimizer steps of Alg. 2."""

    def seconds(model, max_prompts, seeds_per_prompt, steps, scorer, epochs, batch_size, **_):
        p = service.preset(model)
        pairs = min(service.config.max_train_pairs, int(number(max_prompts, 1) * number(seeds_per_prompt, 1)))
        collect = images_seconds(2 * pairs, steps, p.width, p.height, p.guidance_scale, [scorer], pairs)
        optimizer_steps = int(number(epochs, 1)) * math.ceil(pairs / number(batch_size, 1))
        return clamp(collect + optimizer_steps * TRAIN_STEP_S)

    return seconds


def make_train(service: StudioService):
    @gpu(duration=train_seconds(service))
    @user_errors
    def collect_and_train(
        model, npnet, prompts_text, prompt_set, max_prompts, seeds_per_prompt, steps, scorer, margin, select,
        init, epochs, batch_size, lr, val_fraction=0.25, progress=gr.Progress(), request: gr.Request = None,
    ):  # fmt: skip
        """Alg. 1 (collect) then Alg. 2 (train); yields (status, loss figure, checkpoint file)."""
        session = session_of(request)
        form = TrainForm(model, npnet, prompts_text, prompt_set, max_prompts, seeds_per_prompt, steps, scorer,
                         margin, select, init, epochs, batch_size, lr, val_fraction)  # fmt: skip
        plan = plan_training(service, form, session)  # every setting checked before any work
        stop = service.stop_flag(session)
        try:
            yield from _run(service, plan, stop, progress, session)
        except GeneratorExit:  # the client went away: stop training after the current epoch
            stop.set()
            raise
        except BaseException:
            shutil.rmtree(plan.out, ignore_errors=True)  # a failed run leaves no folder behind
            raise
        finally:
            service.release(session, stop)

    return collect_and_train


def _run(service: StudioService, plan: TrainPlan, stop, progress, session: str):
    """The run itself: collect (first half of the progress bar), then train epoch by epoch (second half)."""
    n = len(plan.prompts) * plan.collect.seeds_per_prompt
    yield f"Collecting {len(plan.prompts)} prompts x {plan.collect.seeds_per_prompt} seeds with {plan.collect.scorer_name} ...", None, None

    def collected(done: int, total: int) -> None:
        progress(0.5 * done / total, desc=f"collecting noise pairs: {done} of {total}")
        if stop.is_set():
            raise TrainingStopped("stopped while collecting")

    res = collect_pairs(service, plan, on_sample=collected)
    margin = plan.collect.margin
    head = f"Collected {res.collected} pairs ({res.kept} kept by the filter s_0 + {margin} < s'_0) in {res.seconds:.1f} s."
    save_init(service, plan)
    job = start_training(plan.train, stop)
    yield f"{head} Training ...", None, None
    history = []
    while (record := job.records.get()) is not None:
        history.append(record)
        progress(0.5 + 0.5 * record["epoch"] / plan.train.epochs, desc=f"training: epoch {record['epoch']} of {plan.train.epochs}")
        text = f"{head} Epoch {record['epoch']}/{plan.train.epochs}: val MSE {record['val_loss']:.4g} (identity {record['val_identity']:.4g})"
        yield text, loss_curve(history, plan.out), None
    if job.error is not None and not isinstance(job.error, TrainingStopped):
        raise job.error
    best = plan.out / "best" / "npnet.safetensors"
    if not best.is_file():
        raise UserError("training stopped before the first epoch finished; no checkpoint was written")
    service.sessions.add_checkpoint(session, best)
    note = "Stopped early; " if isinstance(job.error, TrainingStopped) else ""
    yield (
        f"{head} {note}Best checkpoint of {n} pairs saved as `{plan.out.name}/best` — choose it in Generate -> "
        "NPNet checkpoint (this session's list).",
        loss_curve(history, plan.out),
        service.temp.for_download(best, owner=session),  # served to this visitor only
    )


def build_train_tab(service: StudioService) -> None:
    if not service.config.training_enabled:
        gr.Markdown(GATED)
        return
    gr.Markdown(
        "Collect a small noise prompt dataset (re-denoise sampling, filtered by a scorer: Alg. 1) and train "
        "or fine-tune an NPNet on it (Alg. 2). Keep it small on a CPU."
    )
    model = service.default_model
    with gr.Row():
        model_dd = gr.Dropdown(service.models(), value=model, label="Model")
        npnet = gr.Textbox(value=service.default_npnet(model), label="NPNet to fine-tune (empty: preset's)")
        init = gr.Radio(list(INITS), value=INITS[0], label="Initialisation")
    with gr.Row():
        # the micro world trains on its training captions, never on the held-out evaluation ones
        prompt_set = gr.Dropdown(
            [("(prompts typed here)", ""), *available_prompt_sets()],
            value="micro-train" if service.is_micro(model) else "examples", label="Prompt set",
        )  # fmt: skip
        prompts_text = gr.Textbox(label="…or prompts (one per line)", lines=2)
        max_prompts = gr.Number(value=8, step=1, minimum=1, label="Max prompts")
        seeds_per_prompt = gr.Number(value=4, step=1, minimum=1, label="Seeds per prompt")
    with gr.Row():
        steps = gr.Number(value=service.preset(model).collect_steps, step=1, minimum=2, label="Steps")
        choices = service.metric_choices()
        scorer = gr.Dropdown(choices, value=service.default_metrics(model)[0], label="Filter scorer")
        margin = gr.Number(value=0.0, label="Margin m (keep if s_0 + m < s'_0)")
        select = gr.Checkbox(value=True, label="Use data selection")
    with gr.Row():
        epochs = gr.Number(value=3, step=1, minimum=1, label="Epochs")
        batch_size = gr.Number(value=4, step=1, minimum=1, label="Batch size")
        lr = gr.Number(value=1e-4, label="Learning rate")
        val_fraction = gr.Slider(0.1, 0.5, value=0.25, step=0.05, label="Validation fraction")
    with gr.Row():
        button = gr.Button("Collect and train", variant="primary", elem_id="train-button")
        stop = gr.Button("Stop after this epoch", variant="stop")
    status = gr.Markdown(elem_id="train-status", label="Status")
    curve = gr.Plot(label="Loss", elem_id="train-curve")
    checkpoint = gr.File(label="Checkpoint (safetensors)")
    button.click(
        make_train(service),
        inputs=[model_dd, npnet, prompts_text, prompt_set, max_prompts, seeds_per_prompt, steps, scorer, margin,
                select, init, epochs, batch_size, lr, val_fraction],
        outputs=[status, curve, checkpoint], api_name="train", concurrency_id="gpu",
    )  # fmt: skip

    def request_stop(request: gr.Request = None) -> str:
        found = service.request_stop(session_of(request))
        return "Stopping after this epoch ..." if found else "Nothing is training in this session."

    stop.click(request_stop, outputs=status, queue=False, api_visibility="private")
