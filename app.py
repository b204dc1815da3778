"""NPNet Studio: golden noise for diffusion models, side by side (Gradio app; assembles tabs and launches).

    python app.py [--model PRESET] [--npnet PATH_OR_ID] [--device auto|cpu|cuda] [--dtype D] [--share]
                  [--host H] [--port P] [--auth USER:PASS ...] [--auth-file FILE] [--queue-size N] [--offline]
                  [--allow-training] [--max-eval-prompts N] [--temp-dir DIR]

Without a GPU or without the model hub it starts on the offline default model and says so in a banner.
Named API endpoints for gradio_client: /generate, /analyze, /seeds, /evaluate, /evaluate_preset,
/resume_evaluation, /cancel_evaluation, /list_runs, /train (see README.md, "The app").
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from npnet.checkpoints import load_npnet
from npnet.diffusion.loading import resolve_npnet_spec
from npnet.errors import UserError
from studio.config import build_parser, config_from_args
from studio.tempfiles import TempFiles

TITLE = "NPNet Studio — golden noise for diffusion models"


def build_demo(service):
    """The Blocks app: a banner and the Generate, Noise analysis, Seeds, Evaluate, Train and About tabs."""
    import gradio as gr

    from studio.field_errors import explain_errors
    from studio.tabs.about import build_about_tab
    from studio.tabs.analysis import build_analysis_tab, make_analyze
    from studio.tabs.evaluate import build_evaluate_tab, make_list_runs
    from studio.tabs.generate import build_generate_tab
    from studio.tabs.seeds import build_seeds_tab
    from studio.tabs.train import build_train_tab

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            f"# {TITLE}\nSame prompt, same seed: the standard image from random noise x_T next to the image "
            "from NPNet's golden noise (Zhou et al., arXiv 2411.09502). Models load on first use."
        )
        banner = service.banner()
        if banner:
            gr.Markdown(banner, elem_id="offline-banner")
        pair_state = gr.State(time_to_live=3600)  # the session's current pair, freed after an hour
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                gen = build_generate_tab(service, pair_state)
            with gr.Tab("Noise analysis", id="analysis"):
                analysis = build_analysis_tab(service, pair_state)
            with gr.Tab("Seeds", id="seeds"):
                opened = build_seeds_tab(service, gen, pair_state, tabs)
            with gr.Tab("Evaluate", id="evaluate"):
                runs = build_evaluate_tab(service)
            with gr.Tab("Train", id="train"):
                build_train_tab(service)
            with gr.Tab("About", id="about"):
                build_about_tab(service)
        analyze = make_analyze(service)
        for event in (*gen.events, opened):
            event.success(analyze, inputs=pair_state, outputs=analysis.outputs, api_visibility="private")
        # a reload shows the visitor's own runs (the logged-in user's with --auth)
        demo.load(make_list_runs(service), outputs=runs, api_name="list_runs", queue=False)
    demo.queue(max_size=service.config.queue_size, default_concurrency_limit=1)
    return explain_errors(demo)


def check_startup(service) -> None:
    """Fail at once (before serving) on a launch flag that cannot work: the --npnet checkpoint must load."""
    if service.config.npnet:
        preset = service.preset(service.default_model)
        load_npnet(resolve_npnet_spec(preset, service.config.npnet))


def fail(err: Exception) -> None:
    """A launch error: one line on stderr, exit status 2 (a usage error)."""
    print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    sys.exit(2)


def main(args: argparse.Namespace):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except UserError as err:
        fail(err)
    temp = TempFiles(config.temp_dir)  # removed at exit (atexit), also on SIGTERM:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ["GRADIO_TEMP_DIR"] = str(temp.gradio_dir)  # before gradio is imported
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(temp.examples_dir)
    from starlette.middleware import Middleware

    from studio.guard import Guard
    from studio.service import StudioService

    try:
        service = StudioService(config, temp)
        check_startup(service)
        service.warm_up()  # ZeroGPU: the default models load now, outside the GPU functions
    except UserError as err:
        fail(err)
    logging.getLogger("studio").info(
        "default model %s on %s (hub %s); temporary files in %s",
        service.default_model, service.engine.device, "offline" if service.offline else "online", temp.root,
    )  # fmt: skip
    demo = build_demo(service)
    config.runs_path.mkdir(parents=True, exist_ok=True)
    demo.launch(
        server_name=config.server_name,
        server_port=config.server_port,
        share=config.share,
        auth=list(config.auth) or None,  # any account: studio.guard closes every route but the login page
        max_file_size=f"{config.max_upload_mb}mb",
        state_session_capacity=config.max_sessions,  # Gradio's default, 10000, grows RSS by ~0.3 MB a call
        allowed_paths=[],  # only Gradio's own cache (uploads, outputs, per-download folders) is served
        show_error=True,
        app_kwargs={"middleware": [Middleware(Guard, upload_dir=temp.gradio_dir, owner_of=temp.owner_of)]},
    )
    return demo


if __name__ == "__main__":
    main(build_parser().parse_args())
