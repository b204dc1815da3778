"""Model presets, scheduler table, offline detection and device/dtype resolution."""

import dataclasses

import pytest
import torch

from npnet.checkpoints import HUB_CHECKPOINTS
from npnet.diffusion.loading import load_pipeline, resolve_device, resolve_dtype, unavailable_reason
from npnet.diffusion.presets import (
    MODEL_PRESETS,
    get_model_preset,
    hub_offline,
    offline_presets,
    resolve_model,
)
from npnet.diffusion.sampling import check_size
from npnet.diffusion.schedulers import SCHEDULERS, check_scheduler_name, make_scheduler, scheduler_names
from npnet.model import NPNET_PRESETS
from npnet.worlds.tiny import SDXL_SCHEDULER_CONFIG

HUB = ["sdxl", "dreamshaper-xl-v2-turbo", "hunyuan-dit", "sdxl-lightning-4step", "lcm-sdxl"]


FAMILY_TEXT_WIDTH = {"sdxl": 2048, "hunyuan-dit": 1024}  # CLIP-L + bigG; Hunyuan's bilingual CLIP


@pytest.mark.parametrize("name", HUB)
def test_hub_presets_pair_each_model_with_an_npnet_of_its_own_family(name):
    preset = get_model_preset(name)
    npnet = NPNET_PRESETS[preset.npnet_preset]
    assert npnet.text_dim == FAMILY_TEXT_WIDTH[preset.family]
    assert npnet.latent_size * 8 == preset.width == preset.height  # the NPNet's native size is the model's
    assert HUB_CHECKPOINTS[preset.npnet_checkpoint].family == preset.npnet_preset
    assert preset.width % preset.size_multiple == 0 and preset.height % preset.size_multiple == 0
    check_scheduler_name(preset.scheduler)


@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-hunyuan-dit", "micro"])
def test_offline_presets_build_pipelines_that_fit_their_npnet(name):
    from npnet.diffusion.sampling import embedding_width, latent_shape
    from npnet.engine import GoldenNoiseService

    preset = get_model_preset(name)
    service = GoldenNoiseService(device="cpu", offline=True, progress=False)
    pipe = service.load(name, with_npnet=False).pipe
    assert latent_shape(pipe, preset.width, preset.height)[1:] == (preset.height // 8, preset.width // 8)
    net = service.npnet(name)
    assert net.config.text_dim == embedding_width(pipe)
    assert net.config.latent_size == preset.width // pipe.vae_scale_factor


def test_presets_are_frozen_and_offline_ones_marked():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODEL_PRESETS["sdxl"].steps = 1
    assert {"tiny-sdxl", "tiny-hunyuan-dit", "micro"} <= set(offline_presets())
    assert not set(HUB) & set(offline_presets())


def test_unknown_model_lists_presets_and_offline_ones():
    with pytest.raises(ValueError, match="unknown model 'sdxxl'") as err:
        get_model_preset("sdxxl")
    assert (
        "hunyuan-dit" in str(err.value) and "work offline" in str(err.value) and "tiny-sdxl" in str(err.value)
    )


@pytest.mark.parametrize("name", HUB)
def test_hub_models_refused_offline_with_the_offline_choices(name):
    assert hub_offline()  # conftest sets HF_HUB_OFFLINE=1
    with pytest.raises(ValueError, match="offline") as err:
        resolve_model(name)
    assert "tiny-sdxl" in str(err.value) and "huggingface-cli download" in str(err.value)
    assert resolve_model(name, offline=False).name == name
    assert resolve_model("tiny-sdxl").offline


@pytest.mark.parametrize("name", ["sdxl", "sdxl-lightning-4step", "lcm-sdxl"])
def test_loading_a_hub_model_without_the_files_says_what_to_download(name):
    with pytest.raises(ValueError, match="huggingface-cli download"):
        load_pipeline(MODEL_PRESETS[name], torch.device("cpu"), torch.float32, offline=True)


def test_missing_shipped_assets_explain_how_to_build_them():
    ghost = dataclasses.replace(MODEL_PRESETS["micro"], assets=("assets/micro/absent/model_index.json",))
    reason = unavailable_reason(ghost)
    assert "assets/micro/absent/model_index.json" in reason and "python -m cli micro train-generator" in reason
    assert unavailable_reason(MODEL_PRESETS["tiny-sdxl"]) is None


def test_scheduler_table_builds_every_name_without_touching_the_base():
    from diffusers import EulerDiscreteScheduler

    base = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG)
    before = dict(base.config)
    assert set(SCHEDULERS) >= {"ddim", "dpm++2m", "euler", "euler-a", "ddpm", "pndm", "heun", "kdpm2-a"}
    classes = {name: type(make_scheduler(name, base)).__name__ for name in scheduler_names()}
    assert classes["dpm++2m"] == "DPMSolverMultistepScheduler" and classes["kdpm2-a"].startswith(
        "KDPM2Ancestral"
    )
    assert classes["default"] == "EulerDiscreteScheduler"
    assert make_scheduler("dpm++2m", base).config.algorithm_type == "dpmsolver++"
    assert make_scheduler("ddim", base).config.steps_offset == 1  # the model's config carries over
    assert dict(base.config) == before
    with pytest.raises(ValueError, match="unknown scheduler 'dpm3'.*euler-a"):
        make_scheduler("dpm3", base)


def test_size_errors_name_the_nearest_valid_sizes():
    assert check_size(1024, 832) == (1024, 832)
    with pytest.raises(ValueError, match=r"1000x1001.*height 1001 -> use 1000 or 1008"):
        check_size(1000, 1001)
    with pytest.raises(ValueError, match="multiple of 16.*width 1000 -> use 992 or 1008"):
        check_size(1000, 1024, 16)
    with pytest.raises(ValueError, match="height 0 -> use 8"):
        check_size(64, 0)


def test_device_and_dtype_resolution():
    cpu = torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype(None, MODEL_PRESETS["sdxl"], cpu) == torch.float32
    assert resolve_dtype(None, MODEL_PRESETS["sdxl"], torch.device("cuda")) == torch.float16
    assert resolve_dtype("bf16", MODEL_PRESETS["sdxl"], cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="float16 is not supported for CPU"):
        resolve_dtype("float16", MODEL_PRESETS["sdxl"], cpu)
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8", MODEL_PRESETS["sdxl"], cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
