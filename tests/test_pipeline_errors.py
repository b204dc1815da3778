"""Bad generation inputs give ValueErrors that say the fix."""

import dataclasses

import pytest

from npnet.checkpoints import save_npnet
from npnet.engine import GenerationRequest, GoldenNoiseService
from npnet.model import NPNET_PRESETS, NPNet
from npnet.worlds.tiny import TINY_BERT_DIM, build_tiny_npnet

PROMPT = "a red cube"


@pytest.fixture(scope="module")
def service():
    return GoldenNoiseService(device="cpu", progress=False, max_loaded=2)


def _fails(service, match, **changes):
    request = dataclasses.replace(GenerationRequest("tiny-sdxl", PROMPT), **changes)
    with pytest.raises(ValueError, match=match):
        service.generate(request)


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(service, prompt):
    _fails(service, "prompt is empty", prompt=prompt)


def test_size_not_a_multiple_of_8_names_the_nearest_sizes(service):
    _fails(
        service,
        r"200x201 must be a multiple of 8.*height 201 -> use 200 or 208",
        width=200,
        height=201,
    )
    _fails(service, r"width 60 -> use 56 or 64", width=60)
    dit = GenerationRequest("tiny-hunyuan-dit", PROMPT, width=72, height=64)
    with pytest.raises(ValueError, match="multiple of 16.*width 72 -> use 64 or 80"):
        service.generate(dit)


def test_unknown_scheduler_and_model_list_the_choices(service):
    _fails(
        service,
        "unknown scheduler 'dpm\\+\\+3m'; choose one of default, ddim, dpm\\+\\+2m",
        scheduler="dpm++3m",
    )
    _fails(service, "unknown model 'sdxl-tiny'.*tiny-sdxl, tiny-hunyuan-dit", model="sdxl-tiny")
    _fails(service, "needs the hub.*work offline.*tiny-sdxl", model="sdxl")


def test_sizes_and_steps_above_the_model_limits_name_the_limit(service):
    _fails(service, r"width 1000 px is above the limit of 256 px for tiny-sdxl", width=1000, height=1001)
    _fails(service, r"steps 101 is above the limit of 100 steps for tiny-sdxl", steps=101)


def test_other_bad_settings(service):
    _fails(
        service, "methods .* distinct names from standard, npnet, inversion", methods=("standard", "golden")
    )
    _fails(service, "no methods", methods=())
    _fails(service, "steps must be a positive integer", steps=0)
    _fails(service, "guidance_scale must be a finite number >= 0", guidance_scale=-1.0)
    _fails(service, "seed must be an integer", seed=-1)
    _fails(service, "redenoise_mode", redenoise_mode="paper")
    _fails(service, "redenoise_steps >= 2", methods=("inversion",), redenoise_steps=1)


def test_dit_checkpoint_on_an_sdxl_model(service, tmp_path):
    """A 77x1024 (Hunyuan-DiT) NPNet on an SDXL pipeline: say so and name the right model."""
    dit_like = NPNet(dataclasses.replace(NPNET_PRESETS["tiny"], text_dim=NPNET_PRESETS["dit"].text_dim))
    path = save_npnet(dit_like, tmp_path / "dit-like.safetensors")
    _fails(service, "this is a Hunyuan-DiT checkpoint.*choose a DiT model", npnet=path)
    tiny_dit = str(save_npnet(build_tiny_npnet(TINY_BERT_DIM), tmp_path / "tiny-dit.safetensors"))
    _fails(service, "tiny Hunyuan-DiT checkpoint.*choose a DiT model \\(tiny-hunyuan-dit\\)", npnet=tiny_dit)
    ok = service.generate(GenerationRequest("tiny-hunyuan-dit", PROMPT, npnet=tiny_dit, steps=2))
    assert ok.settings["npnet"] == tiny_dit and set(ok.images) == {"standard", "npnet"}


def test_missing_npnet_file(service, tmp_path):
    _fails(service, "does not exist", npnet=str(tmp_path / "nope.safetensors"))
