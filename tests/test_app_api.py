"""The app's named API (gradio_client) against a running app on the offline default, plus its pure helpers."""

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npnet.checkpoints import load_npnet, save_npnet
from studio.config import LaunchConfig, build_parser, config_from_args, default_model

ROOT = Path(__file__).resolve().parents[1]
WORKDIRS: list[Path] = []  # the running app's folder (its --runs-dir is WORKDIRS[0] / "runs")
MICRO_FILES = ("assets/micro/generator/model_index.json", "assets/micro/npnet.safetensors")
TURBO_NPNET = "assets/micro/npnet-turbo.safetensors"


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def app_url(offline_app):
    url, workdir = offline_app
    WORKDIRS[0:] = [workdir]
    return url


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def model(client):
    info = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"]: p for p in info["named_endpoints"]["/generate"]["parameters"]}
    return params["model"]["parameter_default"]


def _generate(client, model, prompt="a red circle", seed=5, width=64, height=64, npnet="", methods=None):
    return client.predict(
        prompt=prompt, negative_prompt="", seed=seed, model=model, npnet=npnet, scheduler="ddim", steps=3,
        guidance_scale=5.0, width=width, height=height, methods=["standard", "npnet"] if methods is None else methods,
        metrics=["toy-brightness"], api_name="/generate",
    )  # fmt: skip


def test_offline_default_model_is_served(model):
    """The running app's default follows the disk: micro-turbo, else micro, iff their files ship."""
    turbo = all((ROOT / rel).is_file() for rel in (*MICRO_FILES[:1], TURBO_NPNET))
    micro = all((ROOT / rel).is_file() for rel in MICRO_FILES)
    assert model == ("micro-turbo" if turbo else "micro" if micro else "tiny-sdxl")


@pytest.mark.parametrize(
    "present, expected",
    [
        ((), "tiny-sdxl"),
        (MICRO_FILES[:1], "tiny-sdxl"),
        (MICRO_FILES[1:], "tiny-sdxl"),
        (MICRO_FILES, "micro"),
        ((MICRO_FILES[0], TURBO_NPNET), "micro-turbo"),
        ((*MICRO_FILES, TURBO_NPNET), "micro-turbo"),
    ],
)
def test_default_model_follows_the_shipped_files_offline_and_is_sdxl_online_on_gpu(
    monkeypatch, tmp_path, present, expected
):
    import npnet.paths

    for rel in present:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    monkeypatch.setattr(npnet.paths, "PROJECT_ROOT", tmp_path)  # a checkout holding only ``present``
    for offline, has_gpu in [(True, False), (True, True), (False, False)]:
        assert default_model(offline=offline, has_gpu=has_gpu) == expected
    assert default_model(offline=False, has_gpu=True) == "sdxl"


def test_generate_pair_differs_and_same_seed_repeats(client, model):
    gallery, slider, scores, timings, summary, bundle = _generate(client, model)
    assert [item["caption"].split(" · ")[0] for item in gallery] == ["Standard (x_T)", "NPNet (golden noise)"]
    standard, golden = (_pixels(item["image"]) for item in gallery)
    assert standard.shape == golden.shape == (64, 64, 3)
    assert np.abs(standard - golden).max() > 0, "NPNet's image equals the standard one"
    assert len(slider) == 2 and all(slider)
    assert scores["headers"][:3] == ["metric", "standard", "npnet"]
    assert len(timings["data"]) == 2 and "NPNet" in summary
    again = _generate(client, model)[0]
    np.testing.assert_array_equal(_pixels(again[0]["image"]), standard)
    np.testing.assert_array_equal(_pixels(again[1]["image"]), golden)
    import zipfile

    with zipfile.ZipFile(bundle) as zf:
        assert {"standard.png", "npnet.png", "meta.json", "latents.safetensors"} <= set(zf.namelist())
        meta = json.loads(zf.read("meta.json"))
    assert meta["settings"]["seed"] == 5 and meta["settings"]["steps"] == 3


def test_analyze_returns_figures_for_the_session_pair(client, model):
    _generate(client, model, methods=["standard", "npnet", "inversion"])
    header, *plots, stats = client.predict(api_name="/analyze")
    assert "golden" in header and "inversion" in header
    for plot in plots:
        assert plot["type"] == "plotly"
        assert len(json.loads(plot["plot"])["data"]) >= 2
    assert len(stats["data"]) == 5  # 3 noises + 2 residuals


def test_evaluate_two_prompts_returns_table_and_chart(client, model):
    status, summary, chart, per_prompt, files, run_dir = client.predict(
        model=model, prompt_set="(prompts typed below)", prompts_text="a red circle\na blue square",
        prompts_file=None, limit=2, seeds="0", methods=["standard", "npnet"], metrics=["toy-brightness"],
        steps=2, api_name="/evaluate",
    )  # fmt: skip
    assert "Done" in status
    assert {"metric", "method", "win_rate"} <= set(summary["headers"])
    assert {row[1] for row in summary["data"]} == {"standard", "npnet"}
    assert chart["type"] == "plotly" and json.loads(chart["plot"])["data"]
    assert len(per_prompt["data"]) == 2
    assert sorted(f.rsplit(".", 1)[-1] for f in files) == ["csv", "csv", "html", "parquet"]


def test_evaluation_can_be_cancelled_and_resumed(app_url, model):
    import time

    from gradio_client import Client

    client = Client(app_url, verbose=False)
    prompts = "\n".join(f"a red circle {i}" for i in range(6))
    job = client.submit(
        model=model, prompt_set="(prompts typed below)", prompts_text=prompts, prompts_file=None, limit=6,
        seeds="0-3", methods=["standard", "npnet"], metrics=["toy-brightness"], steps=2, api_name="/evaluate",
    )  # fmt: skip
    deadline = time.monotonic() + 120

    def samples_done() -> int:
        progress = job.status().progress_data
        return int(progress[0].index or 0) if progress and progress[0].length else 0

    while samples_done() < 1 and not job.done() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Stopping" in client.predict(api_name="/cancel_evaluation")
    status, *_rest, run_dir = job.result()
    assert "Stopped" in status
    computed = int(status.split(": ")[1].split(" samples computed")[0])
    assert 1 <= computed < 24
    status, *_rest = client.predict(run_dir=run_dir, api_name="/resume_evaluation")
    assert "Done" in status and f"{computed} resumed from disk" in status


def test_train_collects_trains_and_returns_a_loadable_checkpoint(client, model):

    status, curve, checkpoint = client.predict(
        model=model, npnet="", prompts_text="a red circle\nthree green squares", prompt_set="", max_prompts=2,
        seeds_per_prompt=3, steps=2, scorer="toy-brightness", margin=0.0, select=False,
        init="fine-tune the model's NPNet", epochs=2, batch_size=2, lr=1e-4, api_name="/train",
    )  # fmt: skip
    assert "Collected 6 pairs" in status and "Best checkpoint" in status
    names = [trace["name"] for trace in json.loads(curve["plot"])["data"]]
    assert "val: NPNet" in names and "train (per step)" in names
    net = load_npnet(checkpoint)
    assert net.config.latent_size == 8


def _error(fn, *args, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_bad_inputs_give_clear_errors_and_the_server_stays_up(client, model, tmp_path, app_url):
    from gradio_client import Client

    from npnet.worlds.tiny import TINY_BERT_DIM, build_tiny_npnet

    assert "prompt is empty" in _error(_generate, client, model, prompt="   ")
    assert "multiple of 8" in _error(_generate, client, model, width=60)
    assert "at least one method" in _error(_generate, client, model, methods=[])
    dit = build_tiny_npnet(TINY_BERT_DIM, seed=0, device="cpu")
    path = save_npnet(dit, tmp_path / "dit.safetensors")
    assert "Hunyuan-DiT" in _error(_generate, client, model, npnet=str(path))
    fresh = Client(app_url, verbose=False)
    assert "generate one" in _error(fresh.predict, api_name="/analyze")
    bad_seeds = dict(prompts_file=None, limit=2, methods=["standard"], metrics=["toy-brightness"], steps=2)
    assert "seed 'x'" in _error(
        client.predict, model=model, prompt_set="(prompts typed below)", prompts_text="a", seeds="x",
        api_name="/evaluate", **bad_seeds,
    )  # fmt: skip
    assert len(_generate(client, model)[0]) == 2  # still serving


def test_four_concurrent_generate_calls_succeed(app_url, model):
    """Four concurrent /generate calls, one seed twice: no errors, the repeated seed gives the same images,
    different seeds differ (the smaller sibling of the ``-m slow`` 24-call load test)."""
    from gradio_client import Client

    seeds = (11, 12, 13, 11)
    results, errors = {}, []

    def call(index: int) -> None:
        try:
            results[index] = _generate(Client(app_url, verbose=False), model, seed=seeds[index])[0]
        except Exception as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and sorted(results) == [0, 1, 2, 3]
    firsts = [_pixels(results[i][0]["image"]) for i in range(len(seeds))]
    assert np.array_equal(firsts[0], firsts[3])  # the same seed, called concurrently
    assert np.abs(firsts[0] - firsts[1]).max() > 0 and np.abs(firsts[1] - firsts[2]).max() > 0


# -- pure helpers -------------------------------------------------------------------------------
def test_launch_flags_and_shared_gating():
    args = build_parser().parse_args(
        [
            "--model",
            "tiny-sdxl",
            "--auth",
            "me:pw",
            "--queue-size",
            "3",
            "--offline",
            "--max-eval-prompts",
            "5",
        ]
    )
    config = config_from_args(args)
    assert config.auth == (("me", "pw"),) and config.queue_size == 3 and config.offline is True
    assert config.eval_prompt_cap == 5 and config.training_enabled
    shared = LaunchConfig(share=True)
    assert shared.shared and not shared.training_enabled and shared.eval_prompt_cap == 8
    assert LaunchConfig(host="0.0.0.0", allow_training=True).training_enabled
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--auth", "nopassword"])
    assert default_model(offline=False, has_gpu=True) == "sdxl"


def test_form_helpers():
    from studio.evaluation import check_prompt_file, parse_seeds
    from studio.render import aspect_size

    assert aspect_size(1024, 1024, "16:9") == (1368, 768)
    assert all(v % 8 == 0 for v in aspect_size(64, 64, "4:3"))
    assert parse_seeds("0, 2-4,2") == (0, 2, 3, 4)
    with pytest.raises(ValueError, match="upload prompts as"):
        check_prompt_file(__file__)
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("-1")


def test_out_of_memory_tells_the_user_what_to_change():
    """An out-of-memory handler shows a hint (not the raw error) whose size and flags the app accepts."""
    import gradio as gr
    import torch

    from npnet.diffusion.presets import get_model_preset
    from studio.errors import user_errors

    @user_errors
    def handler():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    @user_errors
    def streaming_handler():
        yield "first update"
        raise RuntimeError("CUDA error: out of memory")  # older torch: a plain RuntimeError

    with pytest.raises(gr.Error) as caught:
        handler()
    message = caught.value.message
    with pytest.raises(gr.Error) as caught_streaming:
        list(streaming_handler())
    assert caught_streaming.value.message == message
    assert "Tried to allocate" not in message
    sdxl = get_model_preset("sdxl")
    sizes = [(int(w), int(h)) for w, h in re.findall(r"(\d+)x(\d+)", message)]
    assert sizes and all(w % 8 == 0 and h % 8 == 0 and w * h < sdxl.width * sdxl.height for w, h in sizes)
    words = message.replace(",", " ").replace("(", " ").split()
    parser = build_parser()
    suggested = [i for i, w in enumerate(words) if w.startswith("--")]
    assert len(suggested) >= 2  # e.g. model CPU offload and a lower precision
    for i in suggested:
        action = parser._option_string_actions.get(words[i])
        assert action is not None, f"the hint suggests {words[i]}, which the app does not accept"
        argv = [words[i]] if action.nargs == 0 else words[i : i + 2]
        args = parser.parse_args(argv)  # a SystemExit here: the suggested value is not accepted
        assert getattr(args, action.dest) != action.default, f"{argv} changes nothing"


def test_gpu_decorator_uses_spaces_when_importable(monkeypatch):
    import sys
    import types

    from studio.spaces_compat import gpu

    def plain(x):
        return x + 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # not importable: a no-op
    assert gpu(30)(plain) is plain
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: lambda fn: calls.append(duration) or fn
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu(120)(plain)(1) == 2 and calls == [120]


def test_train_tab_defaults_train_and_bad_settings_fail_before_collecting(client, model, app_url):
    """The Train tab's own defaults collect, select and train; a bad learning rate or checkpoint is refused
    before anything is collected, and a failed run leaves no folder behind."""
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/train"]["parameters"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in info}
    runs = WORKDIRS[0] / "runs" / "train"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    for bad, message in ((dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"),
                         (dict(npnet="/no/such/npnet.safetensors"), "does not exist")):  # fmt: skip
        assert message in _error(client.predict, **{**defaults, **bad}, api_name="/train")
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == before  # nothing collected, no orphan folder
    status, _curve, checkpoint = client.predict(**defaults, api_name="/train")
    assert "Best checkpoint" in status and load_npnet(checkpoint).config.latent_size == 8
