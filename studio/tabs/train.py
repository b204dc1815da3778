"""Train tab: collect a small noise prompt dataset and train / fine-tune NPNet with a live loss curve."""

from __future__ import annotations

import gradio as gr

from npnet.errors import UserError
from studio.errors import user_errors
from studio.service import StudioService
from studio.spaces_compat import gpu
from studio.training import (
    INITS,
    TrainingStopped,
    collect_npd,
    init_checkpoint,
    loss_curve,
    new_train_dir,
    start_training,
    train_config,
)

GATED = (
    "Training is disabled on this shared deployment. Run the app locally, or start it with "
    "`--allow-training`, to collect a noise prompt dataset and train an NPNet here."
)


def _prompts(text: str, prompt_set: str) -> list[str]:
    typed = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if typed:
        return typed
    if not prompt_set:
        raise UserError("type prompts (one per line) or pick a prompt set")
    from eval.prompts import load_prompts

    return load_prompts(prompt_set)


def make_train(service: StudioService):
    @gpu(duration=900)
    @user_errors
    def collect_and_train(
        model, npnet, prompts_text, prompt_set, max_prompts, seeds_per_prompt, steps, scorer, margin, select,
        init, epochs, batch_size, lr, progress=gr.Progress(track_tqdm=True), request: gr.Request = None,
    ):  # fmt: skip
        """Alg. 1 (collect) then Alg. 2 (train); yields (status, loss figure, checkpoint file)."""
        if model not in service.models():
            raise UserError(
                f"model {model!r} is not available here; choose one of {', '.join(service.models())}"
            )
        prompts = _prompts(prompts_text, prompt_set)[: int(max_prompts)]
        out = new_train_dir(service, model)
        stop = service.stop_flag(request.session_hash if request else "api")
        yield f"Collecting {len(prompts)} x {int(seeds_per_prompt)} noise pairs with {scorer} ...", None, None
        res = collect_npd(service, model, prompts, int(seeds_per_prompt), int(steps), scorer, float(margin),
                          out / "npd")  # fmt: skip
        head = f"Collected {res.collected} pairs ({res.kept} kept by the filter s_0 + {margin} < s'_0) in {res.seconds:.1f} s."
        start = init_checkpoint(service, model, npnet, out) if init == INITS[0] else "random"
        config = train_config(service, model, out / "npd", out, start, epochs=int(epochs),
                              batch_size=int(batch_size), lr=float(lr), select=bool(select))  # fmt: skip
        job = start_training(config, stop)
        yield f"{head} Training ...", None, None
        while (record := job.records.get()) is not None:
            job.history.append(record)
            text = f"{head} Epoch {record['epoch']}/{config.epochs}: val MSE {record['val_loss']:.4g} (identity {record['val_identity']:.4g})"
            yield text, loss_curve(job.history, out), None
        if job.error is not None and not isinstance(job.error, TrainingStopped):
            raise job.error
        best = out / "best" / "npnet.safetensors"
        if not best.is_file():
            raise UserError("training stopped before the first epoch finished; no checkpoint was written")
        note = "Stopped early; " if isinstance(job.error, TrainingStopped) else ""
        yield (
            f"{head} {note}Best checkpoint `{best}` — pick it in Generate -> NPNet checkpoint.",
            loss_curve(job.history, out),
            str(best),
        )

    return collect_and_train


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
        prompt_set = gr.Textbox(value="micro-train" if model == "micro" else "examples", label="Prompt set")
        prompts_text = gr.Textbox(label="…or prompts (one per line)", lines=2)
        max_prompts = gr.Number(value=4, precision=0, minimum=1, label="Max prompts")
        seeds_per_prompt = gr.Number(value=2, precision=0, minimum=1, label="Seeds per prompt")
    with gr.Row():
        steps = gr.Number(value=service.preset(model).collect_steps, precision=0, minimum=2, label="Steps")
        choices = service.metric_choices()
        scorer = gr.Dropdown(choices, value=service.default_metrics(model)[0], label="Filter scorer")
        margin = gr.Number(value=0.0, label="Margin m (keep if s_0 + m < s'_0)")
        select = gr.Checkbox(value=True, label="Use data selection")
    with gr.Row():
        epochs = gr.Number(value=3, precision=0, minimum=1, label="Epochs")
        batch_size = gr.Number(value=4, precision=0, minimum=1, label="Batch size")
        lr = gr.Number(value=1e-4, label="Learning rate")
    with gr.Row():
        button = gr.Button("Collect and train", variant="primary", elem_id="train-button")
        stop = gr.Button("Stop after this epoch", variant="stop")
    status = gr.Markdown(elem_id="train-status", label="Status")
    curve = gr.Plot(label="Loss", elem_id="train-curve")
    checkpoint = gr.File(label="Checkpoint (safetensors)")
    button.click(
        make_train(service),
        inputs=[model_dd, npnet, prompts_text, prompt_set, max_prompts, seeds_per_prompt, steps, scorer, margin,
                select, init, epochs, batch_size, lr],
        outputs=[status, curve, checkpoint], api_name="train", concurrency_id="gpu",
    )  # fmt: skip

    def request_stop(request: gr.Request = None) -> str:
        found = service.request_stop(request.session_hash if request else "api")
        return "Stopping after this epoch ..." if found else "Nothing is training in this session."

    stop.click(request_stop, outputs=status, queue=False, api_visibility="private")
