"""ZeroGPU habits with a fake ``spaces`` module and SPACE_ID: what loads when, and the GPU seconds asked for."""

import signal
import sys
import types

import pytest

from studio import gpu_time
from studio.gpu_time import CALL_S, MAX_S, METRIC_LOAD_S, MIN_S, clamp, images_seconds

MODEL = "micro-turbo"  # the offline default the app serves here (tests/test_app_api.py checks it ships)


@pytest.fixture
def fake_spaces(monkeypatch):
    """``spaces.GPU(duration=...)`` recording each function it wraps, its duration and its calls."""
    record = {"durations": {}, "calls": []}
    module = types.ModuleType("spaces")

    def GPU(duration=60):  # noqa: N802 - the spaces API
        def decorate(fn):
            record["durations"][fn.__name__] = duration

            def wrapped(*args, **kwargs):
                record["calls"].append(fn.__name__)
                return fn(*args, **kwargs)

            return wrapped

        return decorate

    module.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", module)
    monkeypatch.setenv("SPACE_ID", "someone/npnet-studio")
    return record


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """``app.main`` on a fake ZeroGPU Space up to ``launch`` (not served): what was loaded and decorated by
    then, and in which order."""
    import gradio as gr

    import app
    import studio.service

    mp = pytest.MonkeyPatch()
    record = {"durations": {}, "calls": [], "order": [], "examples": []}
    module = types.ModuleType("spaces")

    def GPU(duration=60):  # noqa: N802
        def decorate(fn):
            record["durations"][fn.__name__] = duration
            record["order"].append(f"gpu {fn.__name__}")
            return lambda *a, **k: record["calls"].append(fn.__name__) or fn(*a, **k)

        return decorate

    module.GPU = GPU
    mp.setitem(sys.modules, "spaces", module)
    mp.setenv("SPACE_ID", "someone/npnet-studio")
    for name in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE"):
        mp.setenv(name, "unset")  # main sets them; restored afterwards
    real_warm_up, real_examples = studio.service.StudioService.warm_up, gr.Examples

    def warm_up(self):
        record["service"] = self
        record["before_warm_up"] = self.engine.loaded_models()
        loaded = real_warm_up(self)
        record["order"].append("warm_up")
        return loaded

    def launch(self, *args, **kwargs):
        service = record["service"]
        record["at_launch"] = {
            "models": service.engine.loaded_models(),
            "npnets": list(service.engine.load(MODEL).npnets),
            "scorers": sorted(service._scorers),
        }
        record["order"].append("launch")

    def examples(*args, **kwargs):
        record["examples"].append(kwargs)
        return real_examples(*args, **kwargs)

    mp.setattr(studio.service.StudioService, "warm_up", warm_up)
    mp.setattr(gr.Blocks, "launch", launch)
    mp.setattr(gr, "Examples", examples)
    handler = signal.getsignal(signal.SIGTERM)
    work = tmp_path_factory.mktemp("space")
    args = ["--offline", "--device", "cpu", "--temp-dir", str(work / "tmp"), "--runs-dir", str(work / "runs")]
    try:
        app.main(app.build_parser().parse_args(args))
    finally:
        signal.signal(signal.SIGTERM, handler)
        mp.undo()
    return record


def test_the_default_pipeline_npnet_and_scorer_load_at_start_up_before_any_request(started):
    assert started["before_warm_up"] == []  # nothing loaded while the service was built
    order = started["order"]
    assert order.index("warm_up") < min(i for i, step in enumerate(order) if step.startswith("gpu "))
    assert order[-1] == "launch" and started["calls"] == []  # no GPU function ran before serving
    at_launch = started["at_launch"]
    assert at_launch["models"] == [MODEL]
    assert at_launch["npnets"] == ["assets/micro/npnet-turbo.safetensors"]  # what the form sends
    assert at_launch["scorers"] == ["micro"]
    assert [kw.get("cache_mode") for kw in started["examples"]] == ["lazy"]  # eager would run GPU calls now


def test_without_a_space_or_without_spaces_nothing_loads_before_first_use(tmp_path, fake_spaces, monkeypatch):
    from studio.config import LaunchConfig
    from studio.service import StudioService
    from studio.tempfiles import TempFiles

    service = StudioService(LaunchConfig(device="cpu", offline=True), TempFiles(str(tmp_path)), offline=True)
    monkeypatch.delenv("SPACE_ID")
    assert service.warm_up() == [] and service.engine.loaded_models() == []
    monkeypatch.setenv("SPACE_ID", "someone/npnet-studio")
    monkeypatch.setitem(sys.modules, "spaces", None)  # not importable
    assert service.warm_up() == [] and service.engine.loaded_models() == []


def _generate_args(steps=50, size=1024, cfg=5.5, methods=("standard", "npnet"), metrics=("pickscore",)):
    return ("a fox", "", 0, "sdxl", "sdxl", "ddim", steps, cfg, size, size, list(methods), list(metrics))


def test_generate_asks_for_seconds_that_grow_with_steps_size_methods_and_guidance(started):
    seconds = started["durations"]["generate"]
    base = seconds(*_generate_args())
    # reference: CALL_S + one metric loaded + 2 images x (50 steps x 2 CFG passes x 1 Mpx + decode + metric)
    expected = CALL_S + METRIC_LOAD_S + 2 * (50 * 2 * gpu_time.PASS_S + gpu_time.IMAGE_S + gpu_time.METRIC_IMAGE_S)
    assert base == clamp(expected)
    assert seconds(*_generate_args(steps=5)) < base < seconds(*_generate_args(steps=100))
    assert base < seconds(*_generate_args(size=1536))
    assert seconds(*_generate_args(cfg=1.0)) < base
    assert base < seconds(*_generate_args(methods=("standard", "npnet", "inversion")))
    assert seconds(prompt="a fox", **dict(zip(["negative_prompt", "seed", "model", "npnet", "scheduler",
                   "steps", "guidance_scale", "width", "height", "methods", "metrics"], _generate_args()[1:])))  == base  # fmt: skip
    assert seconds(*_generate_args(steps=4, size=64, metrics=())) == MIN_S  # the micro world: the floor
    assert seconds(*_generate_args(steps=4, size=64)) < 30  # with a metric to load: still far below 120 s
    assert seconds(*_generate_args(steps=200, size=4096)) == MAX_S
    assert seconds("only a prompt") == MIN_S  # a call that fails at once asks for little


def test_seed_grid_seconds_grow_with_the_number_of_seeds(started):
    seconds = started["durations"]["run_seeds"]

    def grid(count):
        return seconds("a fox", "", 0, count, "pickscore", "sdxl", "sdxl", "ddim", 30, 5.5, 1024, 1024)

    assert grid(1) < grid(4) < grid(8)
    for count in (8, 32):  # standard + NPNet per seed
        assert grid(count) == clamp(images_seconds(2 * count, 30, 1024, 1024, 5.5, ["pickscore"]))


def test_examples_evaluation_and_resume_durations(started, fake_spaces):  # fake_spaces: SPACE_ID set
    from studio.tabs.evaluate import _presets, evaluation_seconds

    service = started["service"]
    p = service.preset(MODEL)
    example = started["durations"]["run_example"]
    assert example == gpu_time.generate_seconds(p.steps, p.width, p.height, p.guidance_scale, metrics=["micro"])

    evaluate = started["durations"]["evaluate"]

    def custom(prompts, seeds):
        return evaluate(None, MODEL, "(prompts typed below)", "\n".join(prompts), None, None, seeds,
                        ["standard", "npnet"], ["micro"], 0)  # fmt: skip (steps 0: the preset's)

    assert custom(["a", "b", "c"], "0-3") == clamp(
        images_seconds(3 * 4 * 2, p.steps, p.width, p.height, p.guidance_scale, ["micro"])
    )
    assert custom([f"p{i}" for i in range(20)], "0") == custom([f"p{i}" for i in range(8)], "0")  # capped to 8
    assert evaluate(None, "sdxl", *[None] * 8) == MIN_S  # not available offline: refused at once

    def sdxl(methods=("standard", "npnet"), steps=None, limit=8):
        fields = {"model": "sdxl", "prompts": "pickapic", "limit": limit, "seeds": (0, 1), "steps": steps}
        return evaluation_seconds(service, {**fields, "methods": methods, "metrics": ("pickscore", "hpsv2")})

    assert sdxl(steps=10) < sdxl() < sdxl(("standard", "npnet", "inversion")) < sdxl(("standard", "best-of-4"))
    assert sdxl(limit=None) == MAX_S  # a whole prompt set without a cap: as long as allowed
    name = next(n for n, f in _presets().items() if f["model"] == MODEL)
    fields = _presets()[name]
    samples = min(8, fields["limit"]) * len(fields["seeds"])
    micro = images_seconds(samples * 3, p.steps, p.width, p.height, p.guidance_scale, fields["metrics"], samples)
    assert evaluate(name, *[None] * 9) == clamp(micro)
    assert evaluate("no such preset", *[None] * 9) == MIN_S
    assert started["durations"]["resume"]("not-a-run") == MIN_S  # no such run in this session
    assert "collect_and_train" not in started["durations"]  # training is gated on a Space


def test_training_seconds_follow_pairs_and_epochs(started):
    from studio.tabs.train import train_seconds

    service = started["service"]
    seconds = train_seconds(service)
    p = service.preset("sdxl")

    def run(prompts=8, seeds=4, epochs=3, batch=4, steps=10):
        return seconds(model="sdxl", max_prompts=prompts, seeds_per_prompt=seeds, steps=steps, scorer="hpsv2",
                       epochs=epochs, batch_size=batch)  # fmt: skip

    collect = images_seconds(2 * 32, 10, p.width, p.height, p.guidance_scale, ["hpsv2"], 32)
    assert run() == clamp(collect + 3 * 8 * gpu_time.TRAIN_STEP_S)  # 32 pairs, 8 steps per epoch
    assert run(prompts=4) < run() < run(epochs=30) and run(steps=20) > run()
    small = types.SimpleNamespace(preset=service.preset, config=types.SimpleNamespace(max_train_pairs=16))
    capped = train_seconds(small)(model="sdxl", max_prompts=8, seeds_per_prompt=4, steps=10, scorer="hpsv2",
                                  epochs=3, batch_size=4)  # fmt: skip
    assert capped == run(prompts=4) < run()  # at most max_train_pairs (16) are collected
