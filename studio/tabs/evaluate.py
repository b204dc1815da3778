"""Evaluate tab: one-click paper presets or a custom benchmark, with progress, cancel, resume and downloads."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import gradio as gr

from npnet.engine import METHODS
from npnet.errors import UserError
from studio.errors import user_errors
from studio.evaluation import (
    PROMPT_FILE_SUFFIXES,
    apply_caps,
    check_prompt_file,
    config_for,
    config_from_run,
    new_run_dir,
    parse_seeds,
    run_evaluation,
    sample_images,
)
from studio.form import whole_number
from studio.gpu_time import MAX_S, clamp, images_seconds
from studio.service import StudioService
from studio.sessions import session_of
from studio.spaces_compat import gpu

CUSTOM_LIST = "(prompts typed below)"


def _presets() -> dict:
    from eval.presets import EVAL_PRESETS

    return EVAL_PRESETS


def preset_note(name: str | None) -> str:
    """What the preset reproduces and how (sampler, seed scheme), shown under the dropdown."""
    from eval.presets import PRESET_NOTES

    return f"*{PRESET_NOTES[name]}*" if name in PRESET_NOTES else ""


def _prompt_sets() -> list[str]:
    from eval.prompts import available_prompt_sets

    return [CUSTOM_LIST, *available_prompt_sets()]


def default_preset(service: StudioService) -> str:
    """The first preset that runs on the default model (an offline one here), else the first preset."""
    presets = _presets()
    return next((n for n, p in presets.items() if p["model"] == service.default_model), next(iter(presets)))


def custom_fields(
    service, model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps, npnet=None,
    session: str = "",
):  # fmt: skip
    """BenchmarkConfig fields from the custom form (uploaded file > typed prompts > prompt set); ``npnet``: a
    checkpoint the visitor chose (empty: the model's own), checked as the Generate tab checks it."""
    if model not in service.models():
        raise UserError(
            f"model {model!r} is not available here; choose one of {', '.join(service.models())}"
        )
    if prompts_file:
        if not service.is_upload(prompts_file):
            raise UserError("upload the prompt file with the file box; server paths are not read")
        prompts = str(check_prompt_file(prompts_file))
    elif prompts_text and prompts_text.strip():
        prompts = tuple(line.strip() for line in prompts_text.splitlines() if line.strip())
    elif prompt_set and prompt_set != CUSTOM_LIST:
        if prompt_set not in _prompt_sets():
            raise UserError(f"unknown prompt set {str(prompt_set)[:80]!r}; choose one of {', '.join(_prompt_sets()[1:])}")
        prompts = prompt_set
    else:
        raise UserError("no prompts: pick a prompt set, type prompts (one per line) or upload a prompt file")
    if not methods or not metrics:
        raise UserError("choose at least one method and one metric")
    limit = whole_number("limit", limit, 1) if limit else None
    steps = whole_number("steps", steps, 0) or None
    seeds = parse_seeds(seeds, service.config.max_seeds)
    fields = {"model": model, "prompts": prompts, "limit": limit, "seeds": seeds}
    override = service.npnet_override(model, npnet, session)
    if override:
        fields["npnet"] = override
    return {**fields, "methods": tuple(methods), "metrics": tuple(metrics), "steps": steps}


def _outputs(service, outcome, session: str):
    status = outcome.status.replace(str(outcome.run_dir), outcome.run_dir.name)  # no server paths shown
    return (
        status,
        outcome.summary,
        outcome.win_rates,
        outcome.per_prompt,
        [service.temp.for_download(f, owner=session) for f in outcome.files],  # served to this visitor only
        outcome.run_dir.name,
        outcome.rows,
    )


def _run(service, config, note, progress, request):
    session = session_of(request)
    service.sessions.add_run(session, Path(config.out))
    stop = service.stop_flag(session)

    def report(done: int, total: int, desc: str) -> None:
        progress((done, total), desc=desc)

    progress(0, desc=f"loading {config.model} and the metrics ...")
    try:
        return _outputs(service, run_evaluation(service, config, report, stop.is_set, note), session)
    finally:
        service.release(session, stop)


def evaluation_seconds(service: StudioService, fields: dict) -> int:
    """GPU seconds of the benchmark ``fields`` (after the caps): prompts x seeds x the methods' images."""
    preset = service.preset(fields["model"])
    prompts = fields["prompts"]
    n_prompts = len(prompts) if isinstance(prompts, (tuple, list)) else fields.get("limit")
    if not n_prompts:  # a whole prompt set or file (no cap off Spaces): as long as a call may take
        return MAX_S
    samples = n_prompts * len(tuple(fields.get("seeds", (0,))))
    methods = tuple(fields.get("methods", ()))
    per_sample = sum(int(m.group(1)) if (m := re.search(r"best-of-(\d+)$", x)) else 1 for x in methods)
    seconds = images_seconds(
        samples * per_sample, fields.get("steps") or preset.steps, fields.get("width") or preset.width,
        fields.get("height") or preset.height, fields.get("guidance_scale") or preset.guidance_scale,
        tuple(fields.get("metrics", ())), samples * ("inversion" in methods),
    )  # fmt: skip
    return clamp(seconds)


def evaluate_seconds(service: StudioService):
    """``evaluate``'s duration: its preset's or custom form's work, as ``evaluate`` would run it."""

    def seconds(
        preset, model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps, npnet=None,
        **_,
    ):  # fmt: skip
        if preset:
            if preset not in _presets():
                raise UserError(f"unknown preset {preset!r}")
            fields = dict(_presets()[preset])
        else:
            fields = custom_fields(
                service, model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps
            )  # the checkpoint does not change the duration
        return evaluation_seconds(service, apply_caps(service, fields)[0])

    return seconds


def resume_seconds(service: StudioService):
    """``resume``'s duration: the whole stored run (what is left of it takes no longer)."""

    def seconds(run_dir, request=None, **_):
        folder = service.sessions.run_dir(session_of(request), run_dir)
        return evaluation_seconds(service, dataclasses.asdict(config_from_run(service, folder)))

    return seconds


def make_handlers(service: StudioService):
    @gpu(duration=evaluate_seconds(service))
    @user_errors
    def evaluate(
        preset, model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps, npnet=None,
        progress=gr.Progress(), request: gr.Request = None,
    ):  # fmt: skip
        """Run a preset (when ``preset`` is set) or the custom settings; returns tables, chart, files."""
        if preset:
            if preset not in _presets():
                raise UserError(f"unknown preset {preset!r}; choose one of {list(_presets())}")
            fields, label = dict(_presets()[preset]), preset
        else:
            fields = custom_fields(
                service, model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps,
                npnet, session_of(request),
            )  # fmt: skip
            label = f"{model}-custom"
        fields, note = apply_caps(service, fields)
        return _run(
            service, config_for(service, fields, new_run_dir(service, label)), note, progress, request
        )

    @gpu(duration=resume_seconds(service))
    @user_errors
    def resume(run_dir, progress=gr.Progress(), request: gr.Request = None):
        """Continue one of this session's previous runs (given by its run id) where it stopped."""
        if not run_dir:
            raise UserError("pick a previous run to resume")
        folder = service.sessions.run_dir(session_of(request), run_dir)
        return _run(service, config_from_run(service, folder), "", progress, request)

    def stop(request: gr.Request = None) -> str:
        found = service.request_stop(session_of(request))
        return "Stopping after the current sample ..." if found else "Nothing is running in this session."

    return evaluate, resume, stop


def _fill_from_preset(service, name):
    p = _presets().get(name)
    if not p:
        return [gr.update()] * 7
    prompts = p["prompts"] if isinstance(p["prompts"], str) else CUSTOM_LIST
    return (
        gr.update(value=p["model"]) if p["model"] in service.models() else gr.update(),
        gr.update(value=prompts),
        p.get("limit"),
        ",".join(str(s) for s in p.get("seeds", (0,))),
        gr.update(value=[m for m in p["methods"] if m in METHODS]),
        gr.update(value=[m for m in p["metrics"] if m in service.metric_choices()]),
        p.get("steps") or 0,
    )


def make_list_runs(service: StudioService):
    """The page-load handler of the runs dropdown (a closure: Gradio injects ``gr.Request`` only into
    functions whose annotations it can read, not into ``functools.partial`` objects)."""

    def list_runs(request: gr.Request = None):
        """This visitor's own runs (newest first) and the published ones."""
        return gr.update(choices=service.sessions.runs(session_of(request)), value=None)

    return list_runs


def build_evaluate_tab(service: StudioService) -> gr.Dropdown:
    """The tab's components and events; returns the runs dropdown (filled on page load, see app.py)."""
    cap = service.config.eval_prompt_cap
    gr.Markdown(
        "Reproduce the paper's tables (presets) or run your own benchmark: win rates vs standard on the same "
        "(prompt, seed) with paired bootstrap 95% CIs and sign tests."
        + (f" This server caps runs at {cap} prompts." if cap else "")
    )
    evaluate, resume, stop = make_handlers(service)
    with gr.Row():
        preset = gr.Dropdown(list(_presets()), value=default_preset(service), label="Preset", scale=3)
        run_preset = gr.Button("Run preset", variant="primary", scale=1, elem_id="eval-run-preset")
    note = gr.Markdown(preset_note(preset.value), elem_id="eval-preset-note")
    with gr.Accordion("Custom run", open=False):
        with gr.Row():
            model = gr.Dropdown(service.models(), value=service.default_model, label="Model")
            prompt_set = gr.Dropdown(
                _prompt_sets(),
                value="micro-heldout" if service.is_micro(service.default_model) else "examples",
                label="Prompt set",
            )
            limit = gr.Number(value=4, step=1, minimum=1, label="Limit (prompts)", elem_id="eval-limit")
            seeds = gr.Textbox(value="0", label="Seeds", info="e.g. 0,1 or 0-7")
            steps = gr.Number(value=0, step=1, minimum=0, label="Steps (0 = model default)")
        npnet = gr.Dropdown(
            service.npnet_choices(service.default_model, session=""), value=None,  # None: the model's own
            label="NPNet checkpoint", allow_custom_value=True, elem_id="eval-npnet",
            info="empty: the model's own; a name, hub id (owner/repo/file), path or a Train-tab checkpoint",
        )  # fmt: skip
        prompts_text = gr.Textbox(
            label="…or type prompts (one per line)", lines=3, elem_id="eval-prompts-text"
        )
        prompts_file = gr.File(
            label="…or upload a prompt file", file_types=list(PROMPT_FILE_SUFFIXES), height=90
        )
        with gr.Row():
            methods = gr.CheckboxGroup(list(METHODS), value=["standard", "npnet"], label="Methods")
            metrics = gr.CheckboxGroup(
                service.metric_choices(),
                value=service.default_metrics(service.default_model),
                label="Metrics",
            )
        run_custom = gr.Button("Run custom", variant="primary", elem_id="eval-run-custom")
    with gr.Row():
        runs = gr.Dropdown(service.sessions.runs(""), label="Previous runs", allow_custom_value=True, scale=3)
        resume_btn = gr.Button("Resume run", scale=1)
        cancel = gr.Button("Cancel", variant="stop", scale=1)
    status = gr.Markdown(elem_id="eval-status", label="Status")
    summary = gr.Dataframe(label="Results (mean with 95% CI, win rate vs standard)", interactive=False)
    chart = gr.Plot(label="Win rate vs standard (Fig. 3 style)", elem_id="eval-chart")
    per_prompt = gr.Dataframe(label="Per prompt and seed (select a row to see its images)", interactive=False)
    images = gr.Gallery(label="Images of the selected sample", columns=4, height=260, preview=False)
    files = gr.File(label="Downloads (summary CSV, rows CSV and parquet, HTML report)", file_count="multiple")
    rows_state = gr.State(time_to_live=3600)

    run_dir = gr.Textbox(label="Run id", interactive=False, elem_id="eval-run-dir")
    outputs = [status, summary, chart, per_prompt, files, run_dir, rows_state]
    form = [model, prompt_set, prompts_text, prompts_file, limit, seeds, methods, metrics, steps, npnet]
    events = (
        run_custom.click(
            evaluate, inputs=[gr.State(""), *form], outputs=outputs, api_name="evaluate", concurrency_id="gpu"
        ),
        run_preset.click(
            evaluate,
            inputs=[preset, *form],
            outputs=outputs,
            api_name="evaluate_preset",
            concurrency_id="gpu",
        ),
        resume_btn.click(
            resume, inputs=runs, outputs=outputs, api_name="resume_evaluation", concurrency_id="gpu"
        ),
    )
    def session_runs(current, request: gr.Request = None):
        return gr.update(choices=service.sessions.runs(session_of(request)), value=current or None)

    for event in events:  # list the new run among this session's previous ones
        event.then(session_runs, inputs=run_dir, outputs=runs, api_visibility="private", queue=False)
    cancel.click(stop, outputs=status, queue=False, api_name="cancel_evaluation")
    preset.change(
        lambda name: _fill_from_preset(service, name), inputs=preset,
        outputs=[model, prompt_set, limit, seeds, methods, metrics, steps], api_visibility="private", queue=False,
    )  # fmt: skip
    preset.change(preset_note, inputs=preset, outputs=note, api_visibility="private", queue=False)

    def model_npnets(name: str, request: gr.Request = None):
        if name not in service.models():
            return gr.update()
        return gr.update(choices=service.npnet_choices(name, session_of(request)), value=service.default_npnet(name))

    model.change(model_npnets, inputs=model, outputs=npnet, api_visibility="private", queue=False)
    per_prompt.select(_show_sample, inputs=rows_state, outputs=images, api_visibility="private")
    return runs


def _show_sample(rows, evt: gr.SelectData):
    if rows is None or not evt.row_value:
        return []
    return sample_images(rows, int(evt.row_value[0]), int(evt.row_value[1]))
