"""GoldenNoiseService: standard / golden / inversion images for batches of (prompt, seed) requests.

Per request: x_T from the seed (CPU generator), prompt embeddings encoded once per distinct prompt,
golden = NPNet(x_T, c), x'_T = re-denoise(x_T) for "inversion", then every method's image with a
per-call scheduler, so the shared pipeline is never mutated. ``generate(r)`` is ``generate_many([r])[0]``:
one code path, and one out-of-memory fallback (the batch is halved and the chunk retried).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from npnet.diffusion.presets import ModelPreset
from npnet.diffusion.redenoise import first_timestep, redenoise_trace
from npnet.diffusion.sampling import (
    PromptEmbeds,
    encode_prompt,
    free_memory,
    initial_latents,
    run_pipeline,
    with_scheduler,
)
from npnet.engine.models import LoadedModel, ModelCache
from npnet.engine.settings import GenerationRequest, GenerationResult, positive_int, resolve_batch

log = logging.getLogger(__name__)


class PeakMemory:
    """Peak memory of a block: CUDA max allocated (reset at entry) and the process RSS high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.result: dict[str, int] = {}

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        import resource

        unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        self.result["rss_high_water"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * unit
        if self.device.type == "cuda":
            self.result["cuda_max_allocated"] = int(torch.cuda.max_memory_allocated(self.device))
        return False


@contextlib.contextmanager
def _large_image_tiling(loaded: LoadedModel, settings: dict[str, Any]):
    """On CUDA, decode images larger than the preset's native size with VAE tiling (restored after).

    Runs under the model's lock, so no other request sees the temporary setting.
    """
    vae = loaded.pipe.vae
    large = settings["width"] * settings["height"] > loaded.preset.width * loaded.preset.height
    switch = loaded.device.type == "cuda" and large and not getattr(vae, "use_tiling", False)
    if switch:
        vae.enable_tiling()
    try:
        yield
    finally:
        if switch:
            vae.disable_tiling()


def in_chunks(fn: Callable[[list[int]], Any], n: int, size: int, what: str, pad: bool) -> tuple[list, int]:
    """``fn(indices)`` (rows indexable by position) over [0, n) in chunks of ``size`` indices.

    Returns (the n rows in order, the chunk size in use at the end). ``pad``: every call gets exactly
    ``size`` indices (the last chunk repeats its last index, the extra rows dropped), so a row's floats
    depend on its own inputs and the batch size only, not on how many samples happened to share its
    call. On ``torch.OutOfMemoryError`` the chunk size is halved (and kept for the later chunks) and
    the chunk retried; at 1 it propagates.
    """
    rows: list = []
    lo = 0
    while lo < n:
        hi = min(n, lo + size)
        indices = list(range(lo, hi)) + ([hi - 1] * (lo + size - hi) if pad else [])  # this call's rows
        try:
            out = fn(indices)
        except torch.OutOfMemoryError:
            if len(indices) <= 1:
                raise
            free_memory()
            size = max(1, len(indices) // 2)
            log.warning("out of memory at batch %d: retrying at %d (%s)", len(indices), size, what)
            continue
        rows.extend(out[: hi - lo])
        lo = hi
    return rows, size


class GoldenNoiseService(ModelCache):
    """Loads models lazily (cached, thread-safe) and generates standard / golden / inversion images.

    ``max_loaded`` pipelines and ``max_npnets`` NPNets per pipeline stay in memory, least recently used
    evicted first (``npnet.engine.models``: eviction waits for busy models).
    """

    def __init__(
        self,
        device="auto",
        dtype=None,
        offline: bool | None = None,
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        max_loaded: int = 1,
        progress: bool = True,
        presets: Mapping[str, ModelPreset] | None = None,
        max_npnets: int = 4,
    ):
        super().__init__(device, dtype, offline, cpu_offload, vae_tiling, max_loaded, presets, max_npnets)
        self.progress = progress

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Images for every requested method from the same seed, prompt embeddings and sampler noise:
        ``generate_many([request])[0]`` (one sample's methods share a pipeline call)."""
        return self.generate_many([request])[0]

    def generate_seeds(self, request: GenerationRequest, seeds) -> list[GenerationResult]:
        """One result per seed (same prompt and settings)."""
        return [self.generate(dataclasses.replace(request, seed=int(s))) for s in seeds]

    def generate_many(
        self, requests, samples_per_call: int | None = None, exact_latents: bool = False, pad: bool = False
    ) -> list[GenerationResult]:
        """``generate`` for many (prompt, seed) requests, ``samples_per_call`` samples per model call.

        The requests must share the model and every setting but prompt and seed (``UserError`` otherwise).
        Each distinct prompt is encoded once; every x_T comes from its own seed; NPNet and re-denoise run
        on ``samples_per_call`` samples per call; then all (sample, method) latents are denoised
        ``samples_per_call`` x (number of methods) images per pipeline call (default 1 sample: exactly
        ``generate``'s calls), each image with a sampler generator seeded by its sample's seed. A request
        with ``batched=False`` gets one image (and one sample) per call. On ``torch.OutOfMemoryError`` the
        batch is halved (down to one image per call) and the chunk retried.
        Result i belongs to ``requests[i]``. CPU kernels give a row results that depend on the batch size
        (float summation order), so at other batch sizes latents match ``generate(requests[i])`` within
        ~1e-5 and images within one 8-bit level (see tests/test_batching.py); x_T is always exact.
        ``exact_latents``: NPNet and re-denoise one sample per call, so every latent equals ``generate``'s
        bit for bit (they cost 1 and 2 model calls per sample; the denoising loop stays batched).
        ``pad``: every call is filled to the full batch (the last chunk repeats a row), so a sample's
        results depend on its own prompt, seed and the batch size only, not on its batch mates: runs
        split differently (resume, sharding) give identical floats.
        """
        requests = list(requests)
        if not requests:
            return []
        start = time.perf_counter()
        samples = 1 if samples_per_call is None else positive_int("samples_per_call", samples_per_call)
        preset = self.preset(requests[0].model)
        settings = resolve_batch(requests, preset)
        common = settings[0]
        if not common["batched"]:
            samples = 1
        batches = _Batches(
            latents=1 if exact_latents else samples,
            images=samples * len(common["methods"]) if common["batched"] else 1,
            pad=pad,
        )
        with self.lease(preset.name, requests[0].npnet, with_npnet="npnet" in common["methods"]) as loaded:
            return self._generate_locked(loaded, requests, settings, batches, start)

    def _generate_locked(self, loaded: LoadedModel, requests, settings, batches, start):
        common = settings[0]
        methods = common["methods"]
        timings: dict[str, float] = {}
        with PeakMemory(loaded.device) as peak, _large_image_tiling(loaded, common):
            view = with_scheduler(loaded.pipe, common["scheduler"], progress=self.progress)
            redenoise_start = first_timestep(view, common["steps"])  # the sampler's first level
            embeds = _timed(timings, "encode", _encode, loaded.pipe, settings)
            x_T = torch.cat(
                [initial_latents(loaded.pipe, s["seed"], common["width"], common["height"]) for s in settings]
            )  # (N, C, h, w)
            latents = {"standard": x_T}
            if "npnet" in methods:
                net = loaded.npnets[common["npnet"]]
                latents["npnet"] = _timed(timings, "npnet", batches.golden, net, loaded.device, x_T, embeds)
            if "inversion" in methods:
                latents["inversion"] = _timed(
                    timings, "redenoise", batches.inversion, loaded.pipe, x_T, embeds, common, redenoise_start
                )
            pictures = _timed(timings, "denoise", batches.denoise, view, embeds, latents, settings)
        shared = {
            "scheduler_class": type(view.scheduler).__name__,
            "redenoise_start": redenoise_start,
            "device": str(loaded.device),
            "dtype": str(loaded.dtype).replace("torch.", ""),
            "batched_used": batches.images > 1,
            "image_batch_used": batches.images,
            "latent_batch_used": batches.latents,
        }
        n, total = len(requests), time.perf_counter() - start
        share = {k: v / n for k, v in timings.items()}
        share.update(
            denoise_per_image=timings["denoise"] / (n * len(methods)), total=total / n, batch_total=total
        )
        return [
            GenerationResult(
                request=request,
                settings={**s, **shared},
                images={m: pictures[i * len(methods) + j] for j, m in enumerate(methods)},
                latents={m: latents[m][i : i + 1] for m in methods},  # (1, C, h, w) each
                prompt_embeds=embeds[i].condition.detach().float().cpu(),
                timings=dict(share),
                peak_memory=dict(peak.result),
            )
            for i, (request, s) in enumerate(zip(requests, settings))
        ]


def _timed(timings: dict[str, float], name: str, fn, *args):
    """``fn(*args)``, its seconds recorded as ``timings[name]``."""
    tick = time.perf_counter()
    out = fn(*args)
    timings[name] = time.perf_counter() - tick
    return out


def _encode(pipe, settings: list[dict[str, Any]]) -> list[PromptEmbeds]:
    """Every sample's prompt embeddings, each distinct prompt encoded once."""
    encoded: dict[str, PromptEmbeds] = {}
    for s in settings:
        if s["prompt"] not in encoded:
            encoded[s["prompt"]] = encode_prompt(pipe, s["prompt"], s["negative_prompt"])
    return [encoded[s["prompt"]] for s in settings]


@dataclasses.dataclass
class _Batches:
    """The batch sizes of one ``generate_many`` call and its stages: ``latents`` samples per NPNet /
    re-denoise call, ``images`` per pipeline call; each stage halves its size on out-of-memory and
    keeps it for the rest of the call (NPNet's size carries over to re-denoise)."""

    latents: int
    images: int
    pad: bool

    def golden(self, net, device, x_T: torch.Tensor, embeds: list[PromptEmbeds]) -> torch.Tensor:
        """NPNet(x_T, c) for every sample: (N, C, h, w) CPU float32."""

        def call(idx):
            with torch.inference_mode():
                cond = PromptEmbeds.stack([embeds[i] for i in idx]).condition  # (B, 77, D)
                return net(x_T[idx].to(device), cond).float().cpu()  # (B, C, h, w)

        rows, self.latents = in_chunks(call, len(embeds), self.latents, "NPNet", self.pad)
        return torch.stack(rows)

    def inversion(self, pipe, x_T, embeds: list[PromptEmbeds], common, start: int) -> torch.Tensor:
        """x'_T = re-denoise(x_T) for every sample: (N, C, h, w) CPU float32."""

        def call(idx):
            return redenoise_trace(
                pipe,
                x_T[idx],
                PromptEmbeds.stack([embeds[i] for i in idx]),
                common["redenoise_steps"],
                common["redenoise_guidance_scale"],
                common["inversion_guidance_scale"],
                mode=common["redenoise_mode"],
                start=start,
                solver=common["redenoise_solver"],
            ).x_prime  # (B, C, h, w)

        rows, self.latents = in_chunks(call, len(embeds), self.latents, "re-denoise", self.pad)
        return torch.stack(rows)

    def denoise(self, view, embeds: list[PromptEmbeds], latents: dict[str, torch.Tensor], settings) -> list:
        """Every (sample, method) image, sample-major (one sample's methods stay together)."""
        methods = settings[0]["methods"]
        order = [(i, m) for i in range(len(embeds)) for m in methods]
        stacked = torch.stack([latents[m][i] for i, m in order])  # (N*M, C, h, w)

        def call(idx):
            return list(
                run_pipeline(
                    view,
                    PromptEmbeds.stack([embeds[order[k][0]] for k in idx]),
                    stacked[idx],
                    settings[0]["steps"],
                    settings[0]["guidance_scale"],
                    settings[0]["width"],
                    settings[0]["height"],
                    seed=[settings[order[k][0]]["seed"] for k in idx],
                )
            )

        images, self.images = in_chunks(call, len(order), self.images, "denoise", self.pad)
        return images
