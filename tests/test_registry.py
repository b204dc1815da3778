"""Model presets, scheduler table, offline detection and device/dtype resolution."""

import dataclasses

import pytest
import torch

from npnet.checkpoints import HUB_CHECKPOINTS
from npnet.loading import load_pipeline, resolve_device, resolve_dtype, unavailable_reason
from npnet.model import NPNET_PRESETS
from npnet.pipeline import check_size
from npnet.registry import (
    MODEL_PRESETS,
    get_model_preset,
    hub_offline,
    import_builder,
    offline_presets,
    resolve_model,
)
from npnet.schedulers import SCHEDULERS, check_scheduler_name, make_scheduler, scheduler_names
from npnet.tiny import SDXL_SCHEDULER_CONFIG

HUB = ["sdxl", "dreamshaper-xl-v2-turbo", "hunyuan-dit", "sdxl-lightning-4step", "lcm-sdxl"]


def test_presets_carry_the_paper_settings():
    sdxl = get_model_preset("sdxl")
    assert (sdxl.hub_id, sdxl.width, sdxl.height, sdxl.steps, sdxl.guidance_scale) == (
        "stabilityai/stable-diffusion-xl-base-1.0",
        1024,
        1024,
        50,
        5.5,
    )
    turbo = get_model_preset("dreamshaper-xl-v2-turbo")
    assert (
        turbo.hub_id == "lykon/dreamshaper-xl-v2-turbo" and turbo.guidance_scale == 3.5 and turbo.steps <= 10
    )
    dit = get_model_preset("hunyuan-dit")
    assert dit.hub_id == "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers" and dit.guidance_scale == 5.0
    assert (dit.family, dit.npnet_preset, dit.npnet_checkpoint) == ("hunyuan-dit", "dit", "dit")
    lightning = get_model_preset("sdxl-lightning-4step")
    assert lightning.unet_id == "ByteDance/SDXL-Lightning" and lightning.unet_file.endswith(
        "4step_unet.safetensors"
    )
    assert dict(lightning.scheduler_overrides)["timestep_spacing"] == "trailing" and lightning.steps == 4
    assert get_model_preset("lcm-sdxl").unet_id == "latent-consistency/lcm-sdxl"
    assert get_model_preset("lcm-sdxl").base_scheduler == "lcm"
    for preset in MODEL_PRESETS.values():
        assert preset.inversion_guidance_scale == 1.0
        check_scheduler_name(preset.scheduler)
        assert preset.npnet_preset in NPNET_PRESETS
        if not preset.offline:
            assert preset.npnet_checkpoint in HUB_CHECKPOINTS
            assert HUB_CHECKPOINTS[preset.npnet_checkpoint].family == preset.npnet_preset


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


def test_missing_builder_module_explains_how_to_build_it():
    ghost = dataclasses.replace(
        MODEL_PRESETS["micro"], builder="npnet.micro_absent.pipeline:load_micro_pipeline"
    )
    with pytest.raises(ValueError, match="python -m npnet.micro"):
        import_builder(ghost)
    assert "python -m npnet.micro" in unavailable_reason(ghost)
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
