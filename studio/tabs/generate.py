"""Generate tab: one prompt and seed -> standard / NPNet / inversion images side by side, scores, costs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from npnet.diffusion.families import get_family
from studio.errors import user_errors
from studio.examples import example_prompts
from studio.form import GenerateForm
from studio.gpu_time import generate_seconds
from studio.render import aspect_size, pair_outputs, size_choices
from studio.service import StudioService, preset_summary
from studio.sessions import NO_SESSION, session_of
from studio.spaces_compat import gpu

METHOD_CHOICES = [
    ("Standard", "standard"),
    ("NPNet (golden noise)", "npnet"),
    ("Inversion (re-denoise)", "inversion"),
]
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
MAX_SEED = 2**31 - 1


@dataclass
class GenerateTab:
    """Components other tabs read or update."""

    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    seed: gr.Number
    settings: list  # the GenerateForm fields after prompt, negative prompt and seed, in its order
    methods: gr.CheckboxGroup
    metrics: gr.CheckboxGroup
    outputs: list  # gallery, slider, scores, timings, summary, download
    button: gr.Button
    events: tuple  # the generate events (button, Enter in the prompt) for chaining the analysis


def make_generate(service: StudioService):
    @gpu(duration=generate_seconds)
    @user_errors
    def generate(
        prompt, negative_prompt, seed, model, npnet, scheduler, steps, guidance_scale, width, height, methods,
        metrics, redenoise_cfg=None, inversion_cfg=None, redenoise_steps=None, progress=gr.Progress(),
        request: gr.Request = None,
    ):  # fmt: skip
        """Images of every chosen method from one seed, with scores, costs and a download bundle."""
        form = GenerateForm(
            prompt, negative_prompt, seed, model, npnet, scheduler, steps, guidance_scale, width, height,
            redenoise_cfg, inversion_cfg, redenoise_steps,
        )
        return run_form(service, form, methods, metrics, progress, session_of(request))

    return generate


def run_form(service: StudioService, form: GenerateForm, methods, metrics, progress, session: str) -> tuple:
    """Generate the form's request: the tab's outputs and the session's new current pair."""
    request = form.request(service, methods, session)
    progress(0.05, desc=f"loading {request.model} (first use only) ...")
    service.engine.load(request.model, request.npnet, with_npnet="npnet" in request.methods)
    progress(0.3, desc="generating ...")
    pair = service.generate(request, metrics or [])
    return (*pair_outputs(service, pair), pair)


def _model_defaults(service: StudioService, model: str, session: str) -> tuple:
    p = service.preset(model)
    choices = service.npnet_choices(model, session)
    return (
        gr.update(choices=choices, value=service.default_npnet(model)),
        gr.update(choices=get_family(p.family).scheduler_names(), value=p.scheduler),  # flow models: "default"
        gr.update(value=p.steps),
        gr.update(value=p.guidance_scale),
        gr.update(choices=size_choices(p.width, p.height, p.size_multiple), value="1:1"),
        gr.update(value=p.width, step=p.size_multiple),
        gr.update(value=p.height, step=p.size_multiple),
        gr.update(value=service.default_metrics(model)),
        f"*{preset_summary(model)}*",
    )


def _check_upload(service: StudioService, path: str | None):
    """An uploaded NPNet checkpoint: right suffix and size, else a clear error; returns the spec to use."""
    if not path:
        return gr.update()
    if not service.is_upload(path):
        raise gr.Error("upload the checkpoint with the file box; server paths are not accepted here")
    file = Path(path)
    if file.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise gr.Error(f"{file.name}: upload an NPNet checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    if file.stat().st_size > service.config.max_upload_mb * 2**20:
        raise gr.Error(f"{file.name} is larger than {service.config.max_upload_mb} MB")
    return gr.update(value=str(file))


def build_generate_tab(service: StudioService, pair_state: gr.State) -> GenerateTab:
    model = service.default_model
    p = service.preset(model)
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="e.g. a red circle above a blue square")
            negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="optional")
        with gr.Column(scale=1, min_width=220):
            with gr.Row():
                seed = gr.Number(
                    label="Seed", step=1, minimum=0, maximum=MAX_SEED, scale=3, elem_id="seed-input"
                )
                dice = gr.Button("Random seed", scale=1, min_width=60, size="sm", elem_id="randomise-seed")
            button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    with gr.Accordion("Advanced options", open=False):
        with gr.Row():
            model_dd = gr.Dropdown(service.models(), value=model, label="Model")
            npnet = gr.Dropdown(
                service.npnet_choices(model, session=""), value=service.default_npnet(model), label="NPNet checkpoint",
                allow_custom_value=True, info="a name, hub id (owner/repo/file) or local path",
            )  # fmt: skip
            upload = gr.File(label="…or upload one", file_types=list(CHECKPOINT_SUFFIXES), height=90)
        model_note = gr.Markdown(f"*{preset_summary(model)}*")
        with gr.Row():
            scheduler = gr.Dropdown(get_family(p.family).scheduler_names(), value=p.scheduler, label="Scheduler")
            steps = gr.Slider(1, 100, value=p.steps, step=1, label="Steps")
            cfg = gr.Slider(0.0, 15.0, value=p.guidance_scale, step=0.1, label="CFG (guidance scale)")
        with gr.Row():
            aspect = gr.Dropdown(size_choices(p.width, p.height, p.size_multiple), value="1:1", label="Size")
            width = gr.Number(value=p.width, label="Width", step=p.size_multiple)
            height = gr.Number(value=p.height, label="Height", step=p.size_multiple)
        with gr.Row():
            methods = gr.CheckboxGroup(METHOD_CHOICES, value=["standard", "npnet"], label="Methods")
            metrics = gr.CheckboxGroup(
                service.metric_choices(), value=service.default_metrics(model), label="Metrics"
            )
        with gr.Row():  # re-denoise (the inversion method, NPNet's teacher): Eq. 1-2
            redenoise_cfg = gr.Number(
                value=None, label="Re-denoise CFG w_l", info="DDIM step; empty: the preset's (sampling CFG)"
            )
            inversion_cfg = gr.Number(value=None, label="Inversion CFG w_w", info="inversion step; empty: 1.0")
            redenoise_steps = gr.Number(
                value=None, step=1, label="Re-denoise steps", info="DDIM step 1000/N; empty: the sampling schedule"
            )
    gallery = gr.Gallery(
        label="Same seed, same prompt", columns=3, height="auto", format="png", object_fit="contain",
        elem_id="pair-gallery", preview=False,
    )  # fmt: skip
    slider = gr.ImageSlider(
        label="Compare (standard | NPNet)", format="png", elem_id="pair-slider", height=420
    )
    scores = gr.Dataframe(label="Scores", interactive=False, elem_id="pair-scores")
    timings = gr.Dataframe(label="Time and peak memory per image", interactive=False)
    summary = gr.Markdown(elem_id="pair-summary", label="Summary")
    download = gr.File(label="Download the pair (PNGs, latents, meta.json)", elem_id="pair-download")
    outputs = [gallery, slider, scores, timings, summary, download]
    settings = [model_dd, npnet, scheduler, steps, cfg, width, height]

    generate = make_generate(service)
    inputs = [prompt, negative, seed, *settings, methods, metrics, redenoise_cfg, inversion_cfg, redenoise_steps]
    events = (
        gr.on(
            [button.click, prompt.submit], generate, inputs, [*outputs, pair_state], api_name="generate",
            concurrency_id="gpu",
        ),
    )  # fmt: skip
    dice.click(lambda: random.randint(0, MAX_SEED), outputs=seed, api_visibility="private", queue=False)
    def model_defaults(model: str, request: gr.Request = None) -> tuple:
        return _model_defaults(service, model, session_of(request))  # a closure: Gradio injects the request

    model_dd.change(
        model_defaults,
        inputs=model_dd,
        outputs=[npnet, scheduler, steps, cfg, aspect, width, height, metrics, model_note],
        api_visibility="private",
        queue=False,
    )
    aspect.change(
        lambda ratio, m: aspect_size(service.preset(m).width, service.preset(m).height, ratio,
                                     service.preset(m).size_multiple),
        inputs=[aspect, model_dd], outputs=[width, height], api_visibility="private", queue=False,
    )  # fmt: skip
    upload.upload(lambda f: _check_upload(service, f), inputs=upload, outputs=npnet, api_visibility="private")
    _examples(service, prompt, seed, outputs)
    return GenerateTab(prompt, negative, seed, settings, methods, metrics, outputs, button, events)


def _examples(service: StudioService, prompt, seed, outputs) -> None:
    """Project-authored example prompts on the default model, cached (eagerly when generation is cheap and
    not on a Space: there an eager cache would run GPU functions at start-up)."""
    mode = service.config.cache_examples
    if mode == "auto":
        eager = service.preset(service.default_model).offline and not service.config.on_spaces
        mode = "eager" if eager else "lazy"
    model = service.default_model
    p = service.preset(model)
    seconds = generate_seconds(p.steps, p.width, p.height, p.guidance_scale, metrics=service.default_metrics(model))

    @gpu(duration=seconds)
    @user_errors
    def run_example(prompt_text, seed_value, progress=gr.Progress()):
        form = GenerateForm.defaults(service, model, prompt_text, seed_value)
        out = run_form(service, form, ["standard", "npnet"], service.default_metrics(model), progress, NO_SESSION)
        return out[:-1]  # without the session state

    gr.Examples(
        examples=[[text, s] for text, s in example_prompts(model)],
        inputs=[prompt, seed],
        outputs=outputs,
        fn=run_example,
        cache_examples=mode != "off",
        cache_mode=None if mode == "off" else mode,
        label="Examples (default model, standard vs NPNet)",
    )
