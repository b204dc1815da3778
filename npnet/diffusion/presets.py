"""Model presets: one place for hub ids, default settings, NPNet checkpoints and offline builders."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from npnet.errors import UserError

# Request limits per preset (overridable per preset with ``max_side`` / ``max_steps``): 4x the native
# side (SDXL 1024 -> 4096 px, 16x the pixels; micro / tiny 64 -> 256 px) keeps one request's latents and
# VAE decode within reach of one GPU (CPU for the offline worlds); 150 steps is 3x the paper's 50
# (DDIM / DPM++ converge well before), 100 for the offline models, which default to 4-20 on a CPU.
SIDE_LIMIT_FACTOR = 4
HUB_MAX_STEPS = 150
OFFLINE_MAX_STEPS = 100


@dataclass(frozen=True)
class ModelPreset:
    """A text-to-image model, its paper settings and the NPNet that goes with it.

    ``npnet_checkpoint`` is a spec for ``npnet.checkpoints.load_npnet`` (a known name such as "sdxl",
    a hub id, or an ``assets/...`` path of the repository); ``None`` means a seeded tiny random NPNet.
    ``builder`` (called as ``builder(device=..., dtype=...)``) builds offline presets locally; hub
    presets load ``hub_id`` with ``pipeline_class.from_pretrained``.

    Request limits (refused before any work, see ``npnet.engine.resolve_sampling``): ``side_limit``
    (``max_side``, default ``SIDE_LIMIT_FACTOR`` x the native side) and ``step_limit`` (``max_steps``,
    default ``HUB_MAX_STEPS`` for hub models, ``OFFLINE_MAX_STEPS`` for offline ones); the same limit
    applies to ``redenoise_steps``.
    """

    name: str
    family: str  # npnet.diffusion.families name: "sdxl" | "hunyuan-dit" | "sd15" | "sd3" | "flux"
    pipeline_class: str  # diffusers class name
    hub_id: str | None
    npnet_preset: str  # npnet.model.NPNET_PRESETS key
    npnet_checkpoint: str | None
    width: int
    height: int
    steps: int
    guidance_scale: float  # diffusers convention: eps_u + w (eps_c - eps_u)
    scheduler: str  # npnet.diffusion.schedulers name or "default"
    inversion_guidance_scale: float = 1.0
    redenoise_guidance_scale: float | None = None  # w_l of re-denoise; None: the sampling CFG
    dtype: str = "float16"  # on CUDA; float32 on CPU
    offline: bool = False
    description: str = ""
    builder: Callable[..., Any] | None = None
    variant: str | None = None  # hub weight variant used with float16 ("fp16")
    unet_id: str | None = None  # replacement UNet repo (SDXL-Lightning, LCM)
    unet_file: str | None = None  # single-file UNet weights inside unet_id
    scheduler_overrides: tuple[tuple[str, Any], ...] = ()  # applied to the loaded scheduler config
    base_scheduler: str | None = None  # scheduler class set at load time (e.g. LCM), else the hub's
    collect_steps: int = 10  # re-denoise/collection steps used by the paper (App. A.5)
    # re-denoise solver (npnet.diffusion.redenoise): "ddim" (SDXL, Hunyuan-DiT) or "dpmsolver" (App. A.5:
    # DreamShaper-xl-v2-turbo was collected with a DPMSolver inverse scheduler at 4 steps)
    redenoise_solver: str = "ddim"  # flow-matching families (SD3, Flux): "flow-euler"
    size_multiple: int = 8
    assets: tuple[str, ...] = ()  # shipped files (``assets/...``) the builder needs
    max_side: int | None = None  # largest image side in px; None: SIDE_LIMIT_FACTOR x the native side
    max_steps: int | None = None  # most (re-)denoising steps; None: HUB_MAX_STEPS / OFFLINE_MAX_STEPS
    batch_size: int = 1  # samples per pipeline call in evaluation, collection and the seed grid
    # other shipped NPNets for this model, offered next to ``npnet_checkpoint`` (app, ``--npnet``)
    npnet_alternatives: tuple[str, ...] = ()

    @property
    def side_limit(self) -> int:
        """The largest width or height a request may ask for, in pixels."""
        return self.max_side or SIDE_LIMIT_FACTOR * max(self.width, self.height)

    @property
    def step_limit(self) -> int:
        """The most sampling (and re-denoise) steps a request may ask for."""
        return self.max_steps or (OFFLINE_MAX_STEPS if self.offline else HUB_MAX_STEPS)


_SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
# Families without a released NPNet (npnet_checkpoint None: the npnet method says how to train one). Settings
# from the model cards: SD 1.5 / 2.1 50 steps CFG 7.5 (their default PNDM / DDIM samplers; DPM++ 2M here
# as for SDXL); SD3.5 Medium 40 steps CFG 4.5, Large Turbo 4 steps CFG 0; FLUX.1 schnell 4 steps, no
# guidance, max_sequence_length 256 on its card (512 here: the pipeline default, the NPNet's T5 length);
# FLUX.1 dev 50 steps, distilled guidance 3.5. SD3 / Flux sample with their own flow-matching Euler.
HUB_FAMILY_PRESETS = (
    ModelPreset(
        name="sd15",
        family="sd15",
        pipeline_class="StableDiffusionPipeline",
        hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        npnet_preset="sd15",
        npnet_checkpoint=None,
        width=512,
        height=512,
        steps=50,
        guidance_scale=7.5,
        scheduler="dpm++2m",
        variant="fp16",
        batch_size=4,
        description="Stable Diffusion 1.5 (no released NPNet: collect and train one)",
    ),
    ModelPreset(
        name="sd21",
        family="sd15",
        pipeline_class="StableDiffusionPipeline",
        hub_id="stabilityai/stable-diffusion-2-1",
        npnet_preset="sd21",
        npnet_checkpoint=None,
        width=768,
        height=768,
        steps=50,
        guidance_scale=7.5,
        scheduler="dpm++2m",
        variant="fp16",
        batch_size=2,
        description="Stable Diffusion 2.1 (768 px, v-prediction; no released NPNet: collect and train one)",
    ),
    ModelPreset(
        name="sd3.5-medium",
        family="sd3",
        pipeline_class="StableDiffusion3Pipeline",
        hub_id="stabilityai/stable-diffusion-3.5-medium",
        npnet_preset="sd3",
        npnet_checkpoint=None,
        width=1024,
        height=1024,
        steps=40,
        guidance_scale=4.5,
        scheduler="default",
        dtype="bfloat16",
        redenoise_solver="flow-euler",
        size_multiple=16,
        description="Stable Diffusion 3.5 Medium (flow matching; no released NPNet: collect and train one)",
    ),
    ModelPreset(
        name="sd3.5-large-turbo",
        family="sd3",
        pipeline_class="StableDiffusion3Pipeline",
        hub_id="stabilityai/stable-diffusion-3.5-large-turbo",
        npnet_preset="sd3",
        npnet_checkpoint=None,
        width=1024,
        height=1024,
        steps=4,
        guidance_scale=0.0,
        redenoise_guidance_scale=3.5,  # w_l > w_w = 1 so that re-denoise injects the prompt (Theorem E.1)
        scheduler="default",
        dtype="bfloat16",
        redenoise_solver="flow-euler",
        collect_steps=4,
        size_multiple=16,
        description="Stable Diffusion 3.5 Large Turbo (4 steps, no CFG; no released NPNet: collect and train one)",
    ),
    ModelPreset(
        name="flux-schnell",
        family="flux",
        pipeline_class="FluxPipeline",
        hub_id="black-forest-labs/FLUX.1-schnell",
        npnet_preset="flux",
        npnet_checkpoint=None,
        width=1024,
        height=1024,
        steps=4,
        guidance_scale=0.0,
        scheduler="default",
        dtype="bfloat16",
        redenoise_solver="flow-euler",
        collect_steps=4,
        size_multiple=16,
        description="FLUX.1 schnell (4 steps, no guidance input: re-denoise has no guidance gap to exploit; "
        "no released NPNet)",
    ),
    ModelPreset(
        name="flux-dev",
        family="flux",
        pipeline_class="FluxPipeline",
        hub_id="black-forest-labs/FLUX.1-dev",
        npnet_preset="flux",
        npnet_checkpoint=None,
        width=1024,
        height=1024,
        steps=50,
        guidance_scale=3.5,
        redenoise_guidance_scale=5.5,  # distilled guidance w_l of the forward Euler step
        inversion_guidance_scale=1.0,
        scheduler="default",
        dtype="bfloat16",
        redenoise_solver="flow-euler",
        size_multiple=16,
        description="FLUX.1 dev (distilled guidance 3.5; re-denoise with guidance 5.5 -> 1; no released NPNet)",
    ),
)
MODEL_PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="sdxl",
            family="sdxl",
            pipeline_class="StableDiffusionXLPipeline",
            hub_id=_SDXL,
            npnet_preset="sdxl",
            npnet_checkpoint="sdxl",
            width=1024,
            height=1024,
            steps=50,
            guidance_scale=5.5,
            scheduler="dpm++2m",
            variant="fp16",
            description="Stable Diffusion XL base 1.0 with the official SDXL NPNet (paper setting)",
        ),
        ModelPreset(
            name="dreamshaper-xl-v2-turbo",
            family="sdxl",
            pipeline_class="StableDiffusionXLPipeline",
            hub_id="lykon/dreamshaper-xl-v2-turbo",
            npnet_preset="sdxl",
            npnet_checkpoint="dreamshaper",
            width=1024,
            height=1024,
            steps=8,
            guidance_scale=3.5,
            scheduler="dpm++2m",
            variant="fp16",
            collect_steps=4,
            redenoise_solver="dpmsolver",
            description="DreamShaper-xl-v2-turbo (few steps) with the official DreamShaper NPNet; re-denoise "
            "with DPM-Solver and its inverse (App. A.5)",
        ),
        ModelPreset(
            name="hunyuan-dit",
            family="hunyuan-dit",
            pipeline_class="HunyuanDiTPipeline",
            hub_id="Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers",
            npnet_preset="dit",
            npnet_checkpoint="dit",
            width=1024,
            height=1024,
            steps=50,
            guidance_scale=5.0,
            scheduler="dpm++2m",
            size_multiple=16,
            description="Hunyuan-DiT v1.2 with the official DiT NPNet (77x1024 BERT/CLIP condition)",
        ),
        ModelPreset(
            name="sdxl-lightning-4step",
            family="sdxl",
            pipeline_class="StableDiffusionXLPipeline",
            hub_id=_SDXL,
            npnet_preset="sdxl",
            npnet_checkpoint="sdxl",
            width=1024,
            height=1024,
            steps=4,
            guidance_scale=0.0,
            scheduler="euler",
            variant="fp16",
            unet_id="ByteDance/SDXL-Lightning",
            unet_file="sdxl_lightning_4step_unet.safetensors",
            scheduler_overrides=(("timestep_spacing", "trailing"),),
            collect_steps=4,
            batch_size=2,
            description="SDXL-Lightning 4-step UNet on SDXL base, trailing Euler, no CFG; SDXL NPNet (Table 18)",
        ),
        ModelPreset(
            name="lcm-sdxl",
            family="sdxl",
            pipeline_class="StableDiffusionXLPipeline",
            hub_id=_SDXL,
            npnet_preset="sdxl",
            npnet_checkpoint="sdxl",
            width=1024,
            height=1024,
            steps=4,
            guidance_scale=8.0,
            scheduler="lcm",
            variant="fp16",
            unet_id="latent-consistency/lcm-sdxl",
            base_scheduler="lcm",
            collect_steps=4,
            batch_size=2,
            description="LCM-SDXL (guidance-embedded UNet, LCMScheduler); SDXL NPNet (Table 18)",
        ),
        *HUB_FAMILY_PRESETS,
    )
}


def register_presets(*presets: ModelPreset) -> None:
    """Add presets to ``MODEL_PRESETS`` (the offline worlds register theirs: ``npnet.worlds.presets``)."""
    for preset in presets:
        MODEL_PRESETS[preset.name] = preset


MICRO_BUILD_HINT = (
    "build the micro world with `python -m cli micro train-generator ... --export-to assets/micro/generator` "
    "and its NPNet with `python -m cli micro-npnet all ...` then `export` (see the README's micro section)"
)


def no_npnet_message(preset: ModelPreset | None) -> str:
    """What to say when a model has no released NPNet: that none exists yet, and how to make one."""
    name = preset.name if preset is not None else "this model"
    npnet = preset.npnet_preset if preset is not None else "PRESET"
    return (
        f"no NPNet has been released for {name} yet, so golden noise (the npnet method) needs one you "
        f"train: collect noise pairs with `python -m cli collect --model {name} --prompts PROMPTS "
        f"--scorer hpsv2 --out runs/{name}-npd`, train with `python -m cli train --data runs/{name}-npd "
        f"--preset {npnet} --out runs/{name}-npnet`, then pass --npnet runs/{name}-npnet/best/npnet.safetensors "
        "(the standard and inversion methods work without one)"
    )


def get_model_preset(name: str, presets: Mapping[str, ModelPreset] | None = None) -> ModelPreset:
    """The preset called ``name``, or a ValueError listing presets (and which work offline)."""
    presets = MODEL_PRESETS if presets is None else presets
    if name in presets:
        return presets[name]
    raise UserError(f"unknown model {name!r}. {describe_presets(presets)}")


def offline_presets(presets: Mapping[str, ModelPreset] | None = None) -> list[str]:
    return [name for name, p in (MODEL_PRESETS if presets is None else presets).items() if p.offline]


def describe_presets(presets: Mapping[str, ModelPreset] | None = None) -> str:
    """One sentence naming every preset and the offline ones."""
    presets = MODEL_PRESETS if presets is None else presets
    return (
        f"Available models: {', '.join(presets)}; "
        f"these work offline (no hub): {', '.join(offline_presets(presets))}"
    )


def hub_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether HF_HUB_OFFLINE is set to a true value."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def required_hub_repos(preset: ModelPreset) -> list[str]:
    """Hub repositories a preset downloads (pipeline, replacement UNet)."""
    return [r for r in (preset.hub_id, preset.unet_id) if r]


def is_cached(repo_id: str) -> bool:
    """Whether ``repo_id``'s model index (or config) is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model_index.json", "config.json", "unet/config.json"):
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return True
    return False


def resolve_model(
    name: str, offline: bool | None = None, presets: Mapping[str, ModelPreset] | None = None
) -> ModelPreset:
    """Preset ``name``, checking it can be loaded: offline mode allows offline or fully cached presets."""
    preset = get_model_preset(name, presets)
    if preset.offline or not hub_offline(offline):
        return preset
    missing = [r for r in required_hub_repos(preset) if not is_cached(r)]
    if not missing:
        return preset
    raise UserError(
        f"model {name!r} needs the hub ({', '.join(missing)} not in the local cache) but the hub is "
        f"offline (HF_HUB_OFFLINE=1 or offline=True). Download it where the hub is reachable with "
        f"`huggingface-cli download {missing[0]}`, or choose an offline model. {describe_presets()}"
    )


# The offline worlds (tiny pipelines, the micro world) register their presets themselves; this table
# defines none of them (a plugin hook: the module is imported by name, after everything above exists).
importlib.import_module("npnet.worlds.presets")
