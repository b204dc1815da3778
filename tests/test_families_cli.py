"""The new families end to end through the command line: generate, collect (resumable), train, refuse."""

import hashlib
import json

import pytest
from PIL import Image

import cli.__main__ as cli
from npnet.checkpoints import load_npnet

METHODS = ("standard", "npnet", "inversion")


def _digests(folder) -> dict[str, str]:
    return {m: hashlib.sha256((folder / f"{m}.png").read_bytes()).hexdigest() for m in METHODS}


@pytest.mark.parametrize("model", ["tiny-sd3", "tiny-flux", "tiny-sd15"])
def test_generate_writes_three_deterministic_images_and_golden_differs(model, tmp_path):
    argv = ["generate", "--model", model, "--prompt", "a red cube", "--seed", "7"]
    argv += ["--method", ",".join(METHODS), "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    first = _digests(tmp_path / "a")
    assert first == _digests(tmp_path / "b")  # same seed -> the same three images, byte for byte
    assert len(set(first.values())) == 3  # golden and inversion differ from standard
    with Image.open(tmp_path / "a" / "npnet.png") as image:
        assert image.size == (64, 64)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["settings"]["family"] == model.removeprefix("tiny-")


def test_collect_and_train_on_tiny_flux_resume_and_the_npnet_is_refused_by_sdxl(tmp_path, capsys):
    npd, ckpt = tmp_path / "npd", tmp_path / "ckpt"
    collect = ["collect", "--model", "tiny-flux", "--prompts", "examples", "--limit", "3", "--steps", "4"]
    collect += ["--scorer", "toy-brightness", "--shard-size", "2", "--out", str(npd)]
    assert cli.main([*collect, "--seeds-per-prompt", "1"]) == 0
    config = json.loads((npd / "config.json").read_text())
    assert (config["scheduler"], config["redenoise_solver"]) == ("default", "flow-euler")
    shards = sorted(p.name for p in (npd / "shards").rglob("*") if p.is_file())
    assert cli.main([*collect, "--seeds-per-prompt", "1"]) == 0  # resume: nothing to redo
    assert "0 new pairs" in capsys.readouterr().out
    assert sorted(p.name for p in (npd / "shards").rglob("*") if p.is_file()) == shards
    train = ["train", "--data", str(npd), "--preset", "tiny-flux", "--batch-size", "2", "--val-fraction", "0.34"]
    train += ["--no-select", "--out", str(ckpt)]
    assert cli.main([*train, "--epochs", "1"]) == 0
    assert cli.main([*train, "--epochs", "2", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    net = load_npnet(ckpt / "best" / "npnet.safetensors")
    assert (net.config.family, net.config.latent_channels, net.config.text_len) == ("flux", 16, 512)
    best = str(ckpt / "best" / "npnet.safetensors")
    gen = ["generate", "--prompt", "a cat", "--steps", "2", "--no-progress", "--npnet", best]
    assert cli.main([*gen, "--model", "tiny-flux", "--out", str(tmp_path / "ok")]) == 0
    assert cli.main([*gen, "--model", "tiny-sdxl", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "trained for a Flux model" in err and "SDXL-family pipeline" in err and "Traceback" not in err


def test_eval_run_cpu_offload_reaches_the_engine(monkeypatch, tmp_path):
    """``eval run --cpu-offload`` (SD3.5 / Flux on smaller GPUs) builds the engine with model CPU offload."""
    import npnet.engine
    from eval.__main__ import build_parser, config_from_args
    from eval.benchmark import run_benchmark

    argv = ["run", "--model", "tiny-flux", "--prompts", "examples", "--metrics", "toy-brightness", "--offline",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert config_from_args(build_parser().parse_args(argv)).cpu_offload is False
    config = config_from_args(build_parser().parse_args([*argv, "--cpu-offload"]))
    seen = {}

    class Stop(Exception):
        pass

    def engine(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(npnet.engine, "GoldenNoiseService", engine)
    with pytest.raises(Stop):
        run_benchmark(config)
    assert seen["cpu_offload"] is True
