"""The GPU check's configuration and fixed inputs, and its measuring stages 1-3.

Device and dtype choice, device synchronisation, timing and memory helpers; stage 1 (the standard and
golden pairs), stage 2 (golden vs a float32 NPNet) and stage 3 (NPNet forward vs one CFG UNet step, and
NPNet's memory). The stages themselves are described in ``benchmarks/gpu_check/__main__.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from npnet.errors import UserError

# Four fixed (prompt, seed) pairs: the same images on every run of the same model, dtype and device.
PAIRS: tuple[tuple[str, int], ...] = (
    ("a photo of an astronaut riding a horse on the moon", 0),
    ("a red cube on top of a blue sphere, studio lighting", 1),
    ("a watercolor painting of a lighthouse at dusk", 2),
    ("two cats sitting on a windowsill, oil painting", 3),
)
# Golden vs fp32 tolerance, elementwise |golden - ref| <= GOLDEN_ATOL + GOLDEN_RTOL * |ref|.
# The engine runs NPNet in float32 (load_npnet always gives float32 weights; NPNet.forward upcasts the
# float16 prompt embeddings) and returns the golden latent in x_T's float32; only the pipeline casts it to
# float16 for the UNet. A second float32 NPNet from the same checkpoint on the same inputs therefore agrees
# to float32 round-off (exactly, on the same kernels). 2**-10 is two float16 ulps at 1.0: it admits a
# float16 rounding of the output (relative error <= 2**-11) but not NPNet computed in half precision
# (SVD and Swin in float16 are off by ~1e-2 and more) nor another checkpoint.
GOLDEN_RTOL = 2.0**-10
GOLDEN_ATOL = 2.0**-10
# NPNet's extra time as a share of the denoising loop (steps x one CFG UNet step), judged on real models
# only: the paper's Table 11 overhead is 0.41 s of 11.69 s (3.5%, DDIM) and 0.59 s of 9.84 s (6.0%,
# DPM-Solver); a forward of the network alone must stay below 10%.
MAX_NPNET_SHARE = 0.10
# NPNet's memory (fp32 weights + the forward's activation peak), judged on CUDA: paper Fig. 15 ~500 MB.
MAX_NPNET_MB = 1000.0
# model -> (the eval preset of eval/presets.py it runs, overrides); 10 prompts are set by --eval-limit.
EVAL_PRESET_FOR: dict[str, tuple[str, dict[str, Any]]] = {
    "sdxl": ("Table 2 — SDXL, Pick-a-Pic first 100, six metrics", {}),
    "tiny-sdxl": ("Offline — tiny SDXL plumbing check (toy metrics)", {"seeds": (0,)}),
}
DTYPE_CHOICES = ("float16", "bfloat16", "float32")
RANDOM_SIZES = ("tiny", "small", "full")
NO_CUDA = (
    "CUDA is not available on this machine, so the real check (SDXL and the official NPNet in float16 on "
    "a GPU) cannot run here; for the CPU plumbing run pass `--device cpu --model tiny-sdxl` "
    "(offline: add `--random-scorers tiny`)"
)


@dataclass(frozen=True)
class CheckConfig:
    """One check run; ``None`` device/dtype/steps take the defaults described on each field."""

    out: str
    model: str = "sdxl"  # a key of EVAL_PRESET_FOR
    device: str | None = None  # None: "cuda" when available, else a UserError (NO_CUDA)
    dtype: str | None = None  # None: float16 on CUDA, float32 elsewhere (the project refuses fp16 on CPU)
    random_scorers: str | None = None  # None: the real scorer weights; else a RANDOM_SIZES size
    repeats: int = 10  # timed runs per median (after warm-up)
    eval_limit: int = 10  # prompts of the eval preset
    steps: int | None = None  # sampling steps; None: the model preset's (SDXL: 50)
    scheduler: str | None = None  # None: the eval preset's (Table 2 SDXL: ddim), else the model preset's
    offline: bool | None = None  # None: HF_HUB_OFFLINE decides
    scorer_dtype: str = "float32"  # the scorers' dtype (eval.benchmark scores in float32 too)


# -- device, dtype, synchronisation, memory ------------------------------------------------------
def choose_device(name: str | None) -> torch.device:
    """``name`` as a device; None means CUDA, which must be there (else NO_CUDA says what to pass)."""
    wanted = name if name is not None else "cuda"
    if str(wanted).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(NO_CUDA)
    from npnet.diffusion.loading import resolve_device  # diffusers: imported after the quick check

    return resolve_device(wanted)


def choose_dtype(name: str | None, model: str, device: torch.device) -> torch.dtype:
    """``name``, or float16 on CUDA / float32 elsewhere, checked by the project's resolve_dtype."""
    from npnet.diffusion.loading import resolve_dtype
    from npnet.diffusion.presets import get_model_preset

    name = name if name is not None else ("float16" if device.type == "cuda" else "float32")
    return resolve_dtype(name, get_model_preset(model), device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA, MPS); a no-op on the CPU, which runs synchronously."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in ms over ``repeats`` runs, synchronised before and after each."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def memory_mb(peak: dict[str, int], device: torch.device) -> dict[str, Any]:
    """An engine ``PeakMemory`` result as {kind, mb}: CUDA max allocated, else the process peak RSS."""
    if device.type == "cuda":
        return {"kind": "cuda_max_memory_allocated", "mb": peak.get("cuda_max_allocated", 0) / 2**20}
    return {
        "kind": "process_peak_rss (CPU run: everything loaded so far)",
        "mb": peak["rss_high_water"] / 2**20,
    }


def generation_memory(results: list, device: torch.device) -> dict[str, Any]:
    """The engine's peak memory over the pair generations (CUDA max allocated, else process peak RSS)."""
    peaks = [memory_mb(r.peak_memory, device) for r in results]
    return {"kind": peaks[0]["kind"], "generation_peak_mb": max(p["mb"] for p in peaks)}


# -- stage 1: pairs ------------------------------------------------------------------------------
def generate_pairs(service, config: CheckConfig, scheduler: str, out: Path) -> list:
    """A standard and a golden image per fixed (prompt, seed), saved as OUT/images/pair<i>-<method>.png."""
    from npnet.engine import GenerationRequest
    from npnet.io import atomic_write_with

    results = []
    for index, (prompt, seed) in enumerate(PAIRS):
        request = GenerationRequest(
            model=config.model,
            prompt=prompt,
            seed=seed,
            steps=config.steps,
            scheduler=scheduler,
            methods=("standard", "npnet"),
        )
        result = service.generate(request)
        for method, image in result.images.items():
            path = out / "images" / f"pair{index}-{method}.png"
            atomic_write_with(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
        results.append(result)
    return results


def check_pairs(results: list, latent_shape: tuple[int, ...], image_size: tuple[int, int]) -> dict[str, Any]:
    """Latents of the expected shape and finite, golden != x_T, images of the preset's size."""
    rows = []
    for (prompt, seed), result in zip(PAIRS, results):
        x_T, golden = result.latents["standard"], result.latents["npnet"]  # (1, C, h, w) each
        rows.append(
            {
                "prompt": prompt,
                "seed": seed,
                "latent_shape": list(golden.shape),
                "finite": bool(torch.isfinite(golden).all() and torch.isfinite(x_T).all()),
                "golden_minus_xT_rms": float((golden - x_T).pow(2).mean().sqrt()),
                "image_sizes": sorted({image.size for image in result.images.values()}),
                "seconds": result.timings.get("total"),
            }
        )
    passed = all(
        r["finite"]
        and tuple(r["latent_shape"]) == latent_shape
        and r["golden_minus_xT_rms"] > 0
        and r["image_sizes"] == [image_size]
        for r in rows
    )
    return {"passed": passed, "expected_latent_shape": list(latent_shape), "pairs": rows}


# -- stage 2: golden vs fp32 -------------------------------------------------------------------
def compare_golden(
    golden: torch.Tensor, reference: torch.Tensor, rtol: float = GOLDEN_RTOL, atol: float = GOLDEN_ATOL
) -> dict[str, Any]:
    """Max abs diff, norm-wise relative error and pass/fail of ``|golden - ref| <= atol + rtol |ref|``."""
    if golden.shape != reference.shape:
        return {
            "passed": False,
            "reason": f"shapes differ: {tuple(golden.shape)} vs {tuple(reference.shape)}",
        }
    golden, reference = golden.double().cpu(), reference.double().cpu()
    diff = (golden - reference).abs()  # (B, C, h, w)
    rel = float(diff.norm() / reference.norm().clamp_min(1e-12))
    return {
        "passed": bool((diff <= atol + rtol * reference.abs()).all()),
        "max_abs_diff": float(diff.max()),
        "relative_error": rel,
        "bitwise_equal": bool(diff.max() == 0),
        "rtol": rtol,
        "atol": atol,
    }


def check_golden_vs_fp32(service, config: CheckConfig, results: list, device: torch.device) -> dict[str, Any]:
    """Each golden latent against a second float32 NPNet (loaded as the engine loads it), then freed."""
    from npnet.diffusion.loading import load_npnet_for
    from npnet.diffusion.sampling import free_memory
    from npnet.engine import npnet_key, npnet_spec

    with service.lease(config.model) as loaded:
        key = npnet_key(loaded.preset)
        engine_dtype = str(loaded.npnets[key].param_dtype)
        reference = load_npnet_for(loaded.preset, loaded.pipe, npnet_spec(key), device)
    goldens, refs = [], []
    with torch.inference_mode():
        for result in results:
            x_T = result.latents["standard"].to(device)  # (1, 4, h, w) float32, the engine's x_T
            cond = result.prompt_embeds.to(device)  # (1, 77, D): the engine's condition, upcast
            refs.append(reference(x_T, cond).float().cpu())  # (1, 4, h, w)
            goldens.append(result.latents["npnet"])  # (1, 4, h, w)
    del reference
    free_memory()
    report = compare_golden(torch.cat(goldens), torch.cat(refs))  # (4, 4, h, w) each
    return {**report, "npnet": key, "engine_npnet_dtype": engine_dtype, "reference_dtype": "torch.float32"}


# -- stage 3: timing and memory ------------------------------------------------------------------
def unet_step_inputs(pipe, embeds, x_T: torch.Tensor, width: int, height: int) -> tuple[tuple, dict]:
    """Positional and keyword inputs of one CFG SDXL UNet step for one image (batch 2: uncond, cond)."""
    unet, device = pipe.unet, pipe._execution_device
    t = embeds.tensors
    hidden = torch.cat([t["negative_prompt_embeds"], t["prompt_embeds"]])  # (2, 77, D)
    pooled = torch.cat([t["negative_pooled_prompt_embeds"], t["pooled_prompt_embeds"]])  # (2, P)
    time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2)  # (2, 6): size, crop, target
    sample = x_T.repeat(2, 1, 1, 1)  # (2, 4, h, w)
    timestep = torch.tensor(pipe.scheduler.config.num_train_timesteps - 1, device=device)
    added = {
        "text_embeds": pooled.to(device=device, dtype=unet.dtype),
        "time_ids": time_ids.to(device=device, dtype=unet.dtype),
    }
    args = (sample.to(device=device, dtype=unet.dtype), timestep)
    return args, {
        "encoder_hidden_states": hidden.to(device=device, dtype=unet.dtype),
        "added_cond_kwargs": added,
        "return_dict": False,
    }


def npnet_memory_mb(net, x_T: torch.Tensor, cond: torch.Tensor, device: torch.device) -> dict[str, Any]:
    """NPNet's weights and, on CUDA, the activation peak of one forward above what was allocated."""
    from npnet.engine import PeakMemory

    weights = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    if device.type != "cuda":
        return {"weights_mb": weights, "forward_peak_mb": None, "total_mb": None}
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode(), PeakMemory(device) as measured:
        net(x_T, cond)
        synchronize(device)
    peak = (measured.result["cuda_max_allocated"] - before) / 2**20
    return {"weights_mb": weights, "forward_peak_mb": peak, "total_mb": weights + peak}


def time_npnet_vs_unet(service, config: CheckConfig, device: torch.device, steps: int) -> dict[str, Any]:
    """Median ms of one NPNet forward (as the engine calls it) and one CFG UNet step, and NPNet's memory."""
    from npnet.diffusion.sampling import encode_prompt, initial_latents
    from npnet.engine import npnet_key

    prompt, seed = PAIRS[0]
    with service.lease(config.model) as loaded:
        pipe, preset = loaded.pipe, loaded.preset
        net = loaded.npnets[npnet_key(preset)]
        embeds = encode_prompt(pipe, prompt)
        x_T = initial_latents(pipe, seed, preset.width, preset.height).to(device)  # (1, 4, h, w) float32
        cond = embeds.condition  # (1, 77, D) in the pipeline's dtype, as the engine passes it
        args, kwargs = unet_step_inputs(pipe, embeds, x_T, preset.width, preset.height)
        npnet_ms = median_ms(lambda: net(x_T, cond), device, config.repeats)
        unet_ms = median_ms(lambda: pipe.unet(*args, **kwargs), device, config.repeats)
        memory = npnet_memory_mb(net, x_T, cond, device)
    share = npnet_ms / (steps * unet_ms)
    real = not preset.offline
    return {
        "npnet_forward_ms": npnet_ms,
        "unet_cfg_step_ms": unet_ms,
        "npnet_over_unet_step": npnet_ms / unet_ms,
        "steps": steps,
        "npnet_share_of_denoising": share,
        "max_share": MAX_NPNET_SHARE,
        "passed": share <= MAX_NPNET_SHARE if real else None,
        "note": None if real else "offline random-weight model: timings show the plumbing, not SDXL",
        "repeats": config.repeats,
        "npnet_memory": {
            **memory,
            "max_mb": MAX_NPNET_MB,
            "passed": memory["total_mb"] <= MAX_NPNET_MB if memory["total_mb"] is not None else None,
        },
    }
