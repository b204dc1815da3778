"""Requests and results of the engine, and their settings: the model preset's defaults filled in, checked.

Everything a request asks for is validated here, before any model loads or any work starts (a
``UserError`` naming the fix): sizes, step counts, CFG scales, methods, the re-denoise settings, and
that the requests of one ``generate_many`` call agree in everything but prompt and seed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from npnet.diffusion.families import get_family
from npnet.diffusion.presets import ModelPreset, no_npnet_message
from npnet.diffusion.redenoise import REDENOISE_MODES, check_solver
from npnet.diffusion.sampling import check_prompt, check_size
from npnet.diffusion.schedulers import check_scheduler_name
from npnet.errors import UserError

METHODS = ("standard", "npnet", "inversion")
# Settings that may differ between the requests of one ``generate_many`` call (everything else must agree).
PER_SAMPLE_SETTINGS = ("prompt", "seed")
TINY_RANDOM_NPNET = "tiny-random(seed=0)"  # presets without a checkpoint (tiny-*) get a seeded random NPNet
NO_NPNET = "none"  # hub presets without a released NPNet (sd15, sd3.5-*, flux-*): the npnet method is refused


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and seed; ``None`` fields take the model preset's defaults."""

    model: str
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    width: int | None = None
    height: int | None = None
    methods: tuple[str, ...] = ("standard", "npnet")
    npnet: str | None = None  # NPNet checkpoint override (path, hub id or npnet.checkpoints name)
    inversion_guidance_scale: float | None = None
    batched: bool = True  # False: one image per pipeline call
    redenoise_mode: str = "correct"  # "correct" | "official" (see npnet.diffusion.redenoise)
    redenoise_steps: int | None = None  # DDIM step size 1000/N; default: the sampling steps (its schedule)
    redenoise_guidance_scale: float | None = None  # w_l of the DDIM step; default: the sampling CFG
    redenoise_solver: str | None = None  # "ddim" | "dpmsolver"; default: the preset's (App. A.5)


@dataclass(frozen=True)
class GenerationResult:
    """Images, latents (CPU float32 (1, 4, h, w)), the NPNet condition, timings (s) and peak memory (bytes)."""

    request: GenerationRequest
    settings: dict[str, Any]
    images: dict[str, Any]
    latents: dict[str, torch.Tensor]
    prompt_embeds: torch.Tensor
    timings: dict[str, float]
    peak_memory: dict[str, int]


def _methods(methods) -> tuple[str, ...]:
    items = tuple(m.strip() for m in methods.split(",")) if isinstance(methods, str) else tuple(methods)
    if not items:
        raise UserError(f"no methods given; choose from {', '.join(METHODS)}")
    unknown = [m for m in items if m not in METHODS]
    if unknown or len(set(items)) != len(items):
        raise UserError(f"methods {list(items)} must be distinct names from {', '.join(METHODS)}")
    return items


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer; got {value!r}")
    return value


def _steps(name: str, value, preset: ModelPreset) -> int:
    """A positive step count within the preset's ``step_limit`` (``ModelPreset.max_steps``)."""
    value = positive_int(name, value)
    if value > preset.step_limit:
        raise UserError(
            f"{name} {value} is above the limit of {preset.step_limit} steps for {preset.name} "
            f"(its max_steps); choose at most {preset.step_limit}"
        )
    return value


def _side(name: str, value, preset: ModelPreset) -> int:
    """A whole number of pixels no larger than the preset's ``side_limit`` (``ModelPreset.max_side``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{name} must be a whole number of pixels; got {value!r}")
    if not isinstance(value, numbers.Integral) and (
        not math.isfinite(value) or not float(value).is_integer()
    ):
        raise UserError(f"{name} must be a whole number of pixels; got {value!r}")
    if value > preset.side_limit:  # compared before int(): 1e308 stays a short message
        native = max(preset.width, preset.height)
        raise UserError(
            f"{name} {value} px is above the limit of {preset.side_limit} px for {preset.name} "
            f"(its max_side; the native side is {native} px); choose at most {preset.side_limit}"
        )
    return int(value)


def _scale(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise UserError(f"{name} must be a finite number >= 0 (diffusers CFG convention); got {value!r}")
    return float(value)


def _default(value, fallback):
    return fallback if value is None else value


def npnet_key(preset: ModelPreset, override: str | None = None) -> str:
    """The NPNet a request uses: the override, else the preset's checkpoint, else the tiny random one
    (offline presets) or ``NO_NPNET`` (hub models without a released NPNet: never silently standard noise).

    The one place this is decided; the key names the NPNet in ``LoadedModel.npnets`` and in settings.
    """
    if override:
        return str(override)
    return preset.npnet_checkpoint or (TINY_RANDOM_NPNET if preset.offline else NO_NPNET)


def npnet_spec(key: str, preset: ModelPreset | None = None) -> str | None:
    """What ``load_npnet_for`` loads for an ``npnet_key``: None for the seeded tiny random NPNet."""
    if key == NO_NPNET:
        raise UserError(no_npnet_message(preset))
    return None if key == TINY_RANDOM_NPNET else key


def resolve_sampling(
    preset: ModelPreset,
    steps: int | None = None,
    guidance_scale: float | None = None,
    inversion_guidance_scale: float | None = None,
    scheduler: str | None = None,
    width: int | None = None,
    height: int | None = None,
    methods=("standard", "npnet"),
    redenoise_mode: str = "correct",
    redenoise_steps: int | None = None,
    npnet: str | None = None,
    redenoise_guidance_scale: float | None = None,
    redenoise_solver: str | None = None,
) -> dict[str, Any]:
    """The sampling settings with the preset's defaults filled in, validated (UserError saying the fix).

    Sizes above ``preset.side_limit`` and steps above ``preset.step_limit`` are refused here, before work.
    Re-denoise (Eq. 1-2) defaults to the sampling schedule (``redenoise_steps`` = the sampling steps,
    starting at the sampler's first timestep) and to w_l = the sampling CFG; both can be set apart.
    """
    width = _side("width", _default(width, preset.width), preset)
    height = _side("height", _default(height, preset.height), preset)
    width, height = check_size(width, height, preset.size_multiple)
    if redenoise_mode not in REDENOISE_MODES:
        raise UserError(f"unknown redenoise_mode {redenoise_mode!r}; choose {', '.join(REDENOISE_MODES)}")
    methods = _methods(methods)
    steps = _steps("steps", _default(steps, preset.steps), preset)
    redenoise_steps = _steps("redenoise_steps", redenoise_steps or steps, preset)
    cfg = _scale("guidance_scale", _default(guidance_scale, preset.guidance_scale))
    if "inversion" in methods and redenoise_steps < 2:
        raise UserError(f"the inversion method needs redenoise_steps >= 2; got {redenoise_steps}")
    family = get_family(preset.family)
    key = npnet_key(preset, npnet)
    if "npnet" in methods and key == NO_NPNET:
        raise UserError(no_npnet_message(preset))
    if "inversion" in methods:
        family.check_mode(redenoise_mode)
    return {
        "model": preset.name,
        "family": preset.family,
        "steps": steps,
        "guidance_scale": cfg,
        "redenoise_guidance_scale": _scale(
            "redenoise_guidance_scale",
            _default(redenoise_guidance_scale, _default(preset.redenoise_guidance_scale, cfg)),
        ),
        "inversion_guidance_scale": _scale(
            "inversion_guidance_scale", _default(inversion_guidance_scale, preset.inversion_guidance_scale)
        ),
        "scheduler": family.check_scheduler(check_scheduler_name(scheduler or preset.scheduler)),
        "width": width,
        "height": height,
        "methods": list(methods),
        "npnet": key,
        "redenoise_mode": redenoise_mode,
        "redenoise_steps": redenoise_steps,
        "redenoise_solver": family.check_solver(check_solver(redenoise_solver or preset.redenoise_solver)),
    }


def resolve_settings(request: GenerationRequest, preset: ModelPreset) -> dict[str, Any]:
    """A request's full settings: prompt and seed checked, sampling settings from ``resolve_sampling``."""
    check_prompt(request.prompt)
    get_family(preset.family).check_negative(request.negative_prompt)
    if isinstance(request.seed, bool) or not isinstance(request.seed, int) or not 0 <= request.seed < 2**63:
        raise UserError(f"seed must be an integer in [0, 2**63); got {request.seed!r}")
    sampling = resolve_sampling(
        preset,
        steps=request.steps,
        guidance_scale=request.guidance_scale,
        inversion_guidance_scale=request.inversion_guidance_scale,
        scheduler=request.scheduler,
        width=request.width,
        height=request.height,
        methods=request.methods,
        redenoise_mode=request.redenoise_mode,
        redenoise_steps=request.redenoise_steps,
        npnet=request.npnet,
        redenoise_guidance_scale=request.redenoise_guidance_scale,
        redenoise_solver=request.redenoise_solver,
    )
    prompt = {"prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": request.seed}
    return {**sampling, **prompt, "batched": bool(request.batched)}


def resolve_batch(requests: Sequence[GenerationRequest], preset: ModelPreset) -> list[dict[str, Any]]:
    """Every request's settings (``resolve_settings``), checked to agree in all but prompt and seed."""
    settings = [resolve_settings(r, preset) for r in requests]
    first = {k: v for k, v in settings[0].items() if k not in PER_SAMPLE_SETTINGS}
    for index, (request, s) in enumerate(zip(requests, settings)):
        other = {k: v for k, v in s.items() if k not in PER_SAMPLE_SETTINGS}
        if request.model != requests[0].model or other != first:
            diff = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise UserError(
                "generate_many needs the same model and settings for every request but prompt and seed; "
                f"request {index} differs in {', '.join(diff) or 'model'}"
            )
    return settings
