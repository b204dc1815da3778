"""Seconds of GPU a ZeroGPU function asks for (``spaces.GPU(duration=...)``): a cost model of its work.

ZeroGPU refuses a call whose duration exceeds what the visitor has left, and shorter requests queue
first, so each GPU function asks for what its inputs need instead of one fixed number: denoiser passes
(steps x images, twice with classifier-free guidance) scaled by the image area, a per-image cost (VAE
decode, the metrics, PNG), a per-call cost (the ZeroGPU fork, prompt encoding, moving the metrics'
models to the GPU) and, for training, optimizer steps. The tab modules turn their inputs into these
numbers (``generate_seconds``, ``seeds_seconds`` here; the evaluation and training ones beside them).

Calibration (not measured on ZeroGPU): SDXL at 1024x1024 runs about 17 UNet passes per second in fp16 on
an A100-class GPU (50 CFG steps in ~6 s), which is what ZeroGPU's default half-H200 slice offers; the
constants allow about twice that. Durations are clamped to ``MIN_S`` .. ``MAX_S``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PASS_S = 0.12  # one denoiser pass (UNet or DiT) over one 1024x1024 image
IMAGE_S = 1.5  # VAE decode and PNG of one image
METRIC_IMAGE_S = 0.3  # one metric on one image
METRIC_LOAD_S = 8.0  # per metric and call: its model moved onto the GPU in the ZeroGPU fork
CALL_S = 15.0  # per call: the fork taking the preloaded pipeline onto the GPU, prompt encoding, the bundle
REDENOISE_PASSES = 2  # re-denoise (the inversion method, Eq. 1-2): one DDIM step and one inversion step
TRAIN_STEP_S = 0.35  # one NPNet optimizer step (SDXL NPNet, batch 64; smaller NPNets are faster)
MIN_S = 20
MAX_S = 900


def clamp(seconds: float) -> int:
    """Whole seconds within ``MIN_S`` .. ``MAX_S``."""
    return int(min(MAX_S, max(MIN_S, math.ceil(seconds))))


def number(value, default: float) -> float:
    """A form value as a positive finite number, else ``default`` (the function itself reports bad input)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float(default)
    return x if math.isfinite(x) and x > 0 else float(default)


def pass_seconds(width, height, guidance_scale) -> float:
    """One denoising step of one image: one pass, two with classifier-free guidance (CFG > 1)."""
    megapixels = number(width, 1024) * number(height, 1024) / 1024**2
    return (2 if number(guidance_scale, 1.0) > 1 else 1) * megapixels * PASS_S


def images_seconds(
    images: int, steps, width, height, guidance_scale, metrics: Sequence[str] = (), redenoised: int = 0
) -> float:
    """``images`` sampled images (``redenoised`` of them re-denoised first) and their metrics, per call."""
    per_pass = pass_seconds(width, height, guidance_scale)
    sampling = images * (number(steps, 50) * per_pass + IMAGE_S + len(metrics) * METRIC_IMAGE_S)
    return CALL_S + len(metrics) * METRIC_LOAD_S + sampling + redenoised * REDENOISE_PASSES * per_pass


def generate_seconds(
    steps, width, height, guidance_scale, methods=("standard", "npnet"), metrics=(), **_
) -> int:
    """One prompt and seed: one image per method (the Generate tab and its examples)."""
    methods, metrics = list(methods or ()), list(metrics or ())
    redenoised = int("inversion" in methods)
    return clamp(images_seconds(len(methods), steps, width, height, guidance_scale, metrics, redenoised))


def seeds_seconds(count, steps, width, height, guidance_scale, metric=None, **_) -> int:
    """The seed grid: standard and NPNet images for ``count`` seeds, one metric."""
    images = 2 * int(number(count, 1))
    return clamp(images_seconds(images, steps, width, height, guidance_scale, [metric] if metric else []))
