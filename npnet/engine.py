"""GoldenNoiseService: lazily loaded pipelines + NPNets per preset; standard / golden / inversion images.

Per request: x_T from the seed (CPU generator), prompt embeddings encoded once, golden = NPNet(x_T, c),
x'_T = re-denoise(x_T) for "inversion", then every method's image from one batched pipeline call
(sequential on OOM or on request) with a per-call scheduler, so the shared pipeline is never mutated.

Memory: at most ``max_loaded`` pipelines (least recently used evicted first) and, per pipeline, at most
``max_npnets`` NPNets (least recently used dropped first). A request holds its model (a lease) from load
to result, so eviction never takes a pipeline from under it: an evicted busy model is freed by its last
user, and a new pipeline is built only once fewer than ``max_loaded`` are in memory. Waiting for that
happens outside the service lock, so requests for loaded models go on meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import numbers
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from npnet.diffusion.families import get_family
from npnet.diffusion.loading import (
    load_npnet_for,
    load_pipeline,
    resolve_device,
    resolve_dtype,
    unavailable_reason,
)
from npnet.diffusion.presets import MODEL_PRESETS, ModelPreset, hub_offline, no_npnet_message, resolve_model
from npnet.diffusion.redenoise import REDENOISE_MODES, check_solver, first_timestep, redenoise_trace
from npnet.diffusion.sampling import (
    PromptEmbeds,
    check_prompt,
    check_size,
    denoise,
    encode_prompt,
    free_memory,
    initial_latents,
    run_pipeline,
    with_scheduler,
)
from npnet.diffusion.schedulers import check_scheduler_name
from npnet.errors import UserError

log = logging.getLogger(__name__)
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
    batched: bool = True
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


@dataclass(eq=False)
class LoadedModel:
    """A loaded pipeline, its NPNets (by checkpoint spec, least recently used first) and the lock
    serialising its use; ``users`` counts the requests holding it, ``evicted`` marks one dropped from
    the cache (its memory is freed when its last user finishes)."""

    preset: ModelPreset
    pipe: Any
    device: torch.device
    dtype: torch.dtype
    npnets: OrderedDict[str, torch.nn.Module] = field(default_factory=OrderedDict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    evicted: bool = False


def _methods(methods) -> tuple[str, ...]:
    items = tuple(m.strip() for m in methods.split(",")) if isinstance(methods, str) else tuple(methods)
    if not items:
        raise UserError(f"no methods given; choose from {', '.join(METHODS)}")
    unknown = [m for m in items if m not in METHODS]
    if unknown or len(set(items)) != len(items):
        raise UserError(f"methods {list(items)} must be distinct names from {', '.join(METHODS)}")
    return items


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be a positive integer; got {value!r}")
    return value


def _steps(name: str, value, preset: ModelPreset) -> int:
    """A positive step count within the preset's ``step_limit`` (``ModelPreset.max_steps``)."""
    value = _positive_int(name, value)
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


def _default(value, fallback):
    return fallback if value is None else value


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


def _in_chunks(fn, n: int, batch: list[int], what: str, pad: bool = False) -> list:
    """``fn(indices)`` (rows indexable by position) over [0, n) in chunks of ``batch[0]``, concatenated.

    ``pad``: every call gets exactly ``batch[0]`` indices (the last chunk repeats its last index, the
    extra rows dropped), so a row's floats depend on its own inputs and the batch size only, not on how
    many samples happened to share its call. On ``torch.OutOfMemoryError`` the batch is halved
    (``batch[0]`` is updated for the caller's later stages) and the chunk retried; at 1 it propagates.
    """
    out: list = []
    lo = 0
    while lo < n:
        size = batch[0]
        hi = min(n, lo + size)
        indices = list(range(lo, hi))
        if pad:
            indices += [hi - 1] * (size - len(indices))
        size = len(indices)  # the images of this call
        try:
            rows = fn(indices)
        except torch.OutOfMemoryError:
            if size <= 1:
                raise
            free_memory()
            batch[0] = max(1, size // 2)
            log.warning("out of memory at batch %d: retrying at %d (%s)", size, batch[0], what)
            continue
        out.append(rows[: hi - lo])
        lo = hi
    return out


class GoldenNoiseService:
    """Loads models lazily (cached, thread-safe) and generates standard / golden / inversion images.

    ``max_loaded`` pipelines and ``max_npnets`` NPNets per pipeline stay in memory, least recently used
    evicted first (see the module docstring for how eviction waits for busy models).
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
        self.device = resolve_device(device)
        self.presets = dict(MODEL_PRESETS if presets is None else presets)
        self.dtype = dtype
        self.offline = offline
        self.cpu_offload = cpu_offload
        self.vae_tiling = vae_tiling
        self.max_loaded = max(1, int(max_loaded))
        self.max_npnets = max(1, int(max_npnets))
        self.progress = progress
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._draining: list[LoadedModel] = []  # evicted while in use; freed by their last user
        self._lock = threading.Condition(threading.RLock())  # guards the two above and users/evicted
        self._held = threading.local()  # this thread's leases (a nested lease must not wait on itself)

    # -- models --------------------------------------------------------------------------------
    def preset(self, model: str) -> ModelPreset:
        """The preset ``model`` of this service's registry, checked to be loadable (offline: cached)."""
        return resolve_model(model, self.offline, self.presets)

    def available_models(self) -> list[str]:
        """Presets loadable now (offline: offline presets and fully cached hub presets)."""
        names = []
        for name in self.presets:
            try:
                preset = self.preset(name)
            except ValueError:
                continue
            if unavailable_reason(preset) is None:
                names.append(name)
        return names

    def loaded_models(self) -> list[str]:
        """The cached models, least recently used first (the next to be evicted)."""
        with self._lock:
            return list(self._loaded)

    def resident_models(self) -> list[str]:
        """Models whose pipelines are in memory now: the cached ones and evicted ones still in use."""
        with self._lock:
            models = [*self._draining, *self._loaded.values()]
            return [m.preset.name for m in models if m.pipe is not None]

    def npnet(self, model: str, override: str | None = None) -> torch.nn.Module:
        """The NPNet a request for ``model`` with NPNet ``override`` uses (loaded on first use)."""
        with self.lease(model, override) as loaded:
            return loaded.npnets[npnet_key(loaded.preset, override)]

    def load(self, model: str, npnet: str | None = None, with_npnet: bool = True) -> LoadedModel:
        """The loaded ``model`` (cached) with the NPNet ``npnet`` (or the preset's) unless ``with_npnet=False``.

        The result is not held: a later load of another model may evict it (then its ``pipe`` becomes
        None). Use ``lease`` to hold a model while using it.
        """
        with self.lease(model, npnet, with_npnet) as loaded:
            return loaded

    @contextlib.contextmanager
    def lease(self, model: str, npnet: str | None = None, with_npnet: bool = True) -> Iterator[LoadedModel]:
        """Hold ``model`` for the block: loaded (with its NPNet unless ``with_npnet=False``) and its lock held.

        An eviction meanwhile does not free it; it is freed when the block (and every other holder) ends.
        Do not lease another model inside the block (with ``max_loaded=1`` that would wait on itself).
        """
        preset = self.preset(model)
        loaded = self._acquire(preset)
        try:
            with loaded.lock:
                if loaded.pipe is None:  # first user, or an earlier load failed: load it now
                    loaded.pipe = load_pipeline(
                        preset, self.device, loaded.dtype, hub_offline(self.offline), self.cpu_offload,
                        self.vae_tiling,
                    )  # fmt: skip
                if with_npnet:
                    self._npnet_locked(loaded, npnet_key(preset, npnet))
                yield loaded
        finally:
            self._release(loaded)

    def unload(self, model: str | None = None) -> None:
        """Drop one loaded model (or all): freed now if idle, else when its in-flight requests finish."""
        with self._lock:
            idle = []
            for name in [model] if model else list(self._loaded):
                if name in self._loaded:
                    idle += self._evict_locked(self._loaded.pop(name))
        self._drop(idle)

    def _acquire(self, preset: ModelPreset) -> LoadedModel:
        """Count a user of ``preset``'s cache entry, created (after LRU eviction) when missing.

        A new entry is created only while fewer than ``max_loaded`` pipelines are in memory; evicted
        busy models count until their last user leaves, and the wait for that releases the lock.
        """
        dtype = resolve_dtype(self.dtype, preset, self.device)
        held = self._held_models()
        while True:
            with self._lock:
                loaded = self._loaded.get(preset.name)
                idle: list[LoadedModel] = []
                if loaded is None:
                    while len(self._loaded) >= self.max_loaded:
                        idle += self._evict_locked(self._loaded.popitem(last=False)[1])
                    if not idle and self._resident_locked() < self.max_loaded:
                        loaded = self._loaded[preset.name] = LoadedModel(preset, None, self.device, dtype)
                    elif not idle:
                        if any(m in held for m in self._draining):
                            raise RuntimeError(
                                f"this thread holds {[m.preset.name for m in held]} and asks for "
                                f"{preset.name!r} with max_loaded={self.max_loaded}: it would wait on "
                                "itself; end the first lease first or raise max_loaded"
                            )
                        self._lock.wait()  # every slot is a busy evicted model: wait until one is freed
                        continue
                if loaded is not None:
                    self._loaded.move_to_end(preset.name)
                    loaded.users += 1
                    held.append(loaded)
                    return loaded
            self._drop(idle)  # free the idle victims (outside the lock), then try again

    def _release(self, loaded: LoadedModel) -> None:
        with contextlib.suppress(ValueError):  # a lease ended by another thread (generator finalised)
            self._held_models().remove(loaded)
        with self._lock:
            loaded.users -= 1
            if loaded.users:
                return
            if not loaded.evicted:
                if loaded.pipe is None:  # its load failed: drop the empty entry
                    if self._loaded.get(loaded.preset.name) is loaded:
                        del self._loaded[loaded.preset.name]
                    self._lock.notify_all()
                return
        self._drop([loaded])

    def _evict_locked(self, loaded: LoadedModel) -> list[LoadedModel]:
        """Mark an entry removed from the cache as evicted; it counts as resident (``_draining``) until
        freed. Returns it if idle (the caller frees it with ``_drop``), else its last user frees it."""
        loaded.evicted = True
        self._draining.append(loaded)
        return [] if loaded.users else [loaded]

    def _drop(self, models: list[LoadedModel]) -> None:
        """Free evicted idle models (outside the service lock), then let waiting loads go on."""
        if not models:
            return
        for loaded in models:
            with loaded.lock:
                loaded.npnets.clear()
                loaded.pipe = None
        free_memory()
        with self._lock:
            for loaded in models:
                if loaded in self._draining:
                    self._draining.remove(loaded)
            self._lock.notify_all()

    def _resident_locked(self) -> int:
        return len(self._loaded) + len(self._draining)

    def _held_models(self) -> list[LoadedModel]:
        """The models this thread holds leases on."""
        if not hasattr(self._held, "models"):
            self._held.models = []
        return self._held.models

    def _npnet_locked(self, loaded: LoadedModel, key: str) -> torch.nn.Module:
        """The NPNet ``key`` of ``loaded`` (under its lock): cached, least recently used dropped first."""
        nets = loaded.npnets
        if key in nets:
            nets.move_to_end(key)
            return nets[key]
        while len(nets) >= self.max_npnets:
            nets.popitem(last=False)
        nets[key] = load_npnet_for(loaded.preset, loaded.pipe, npnet_spec(key, loaded.preset), self.device)
        return nets[key]

    # -- generation ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Images for every requested method from the same seed, prompt embeddings and sampler noise."""
        start = time.perf_counter()
        preset = self.preset(request.model)
        settings = resolve_settings(request, preset)
        with self.lease(preset.name, request.npnet, with_npnet="npnet" in settings["methods"]) as loaded:
            return self._generate_locked(loaded, request, settings, start)

    def _generate_locked(self, loaded: LoadedModel, request, settings, start: float) -> GenerationResult:
        with PeakMemory(loaded.device) as peak, _large_image_tiling(loaded, settings):
            timings: dict[str, float] = {}
            view = with_scheduler(loaded.pipe, settings["scheduler"], progress=self.progress)
            settings["scheduler_class"] = type(view.scheduler).__name__
            settings["redenoise_start"] = first_timestep(view, settings["steps"])  # the sampler's first level
            latents, embeds = self._latents(loaded, settings, timings)
            settings.update(device=str(loaded.device), dtype=str(loaded.dtype).replace("torch.", ""))
            methods = settings["methods"]
            tick = time.perf_counter()
            images, used_batched = denoise(
                view,
                embeds,
                torch.cat([latents[m] for m in methods]),  # (M, C, h, w)
                settings["steps"],
                settings["guidance_scale"],
                settings["width"],
                settings["height"],
                seed=settings["seed"],
                batched=settings["batched"],
            )
            timings["denoise"] = time.perf_counter() - tick
            timings["denoise_per_image"] = timings["denoise"] / len(methods)
        settings["batched_used"] = used_batched
        timings["total"] = time.perf_counter() - start
        return GenerationResult(
            request=request,
            settings=settings,
            images=dict(zip(methods, images)),
            latents=latents,
            prompt_embeds=embeds.condition.detach().float().cpu(),
            timings=timings,
            peak_memory=peak.result,
        )

    def _latents(self, loaded: LoadedModel, settings, timings):
        """x_T, and the golden / re-denoised latents the request asks for (CPU float32)."""
        pipe = loaded.pipe
        tick = time.perf_counter()
        embeds = encode_prompt(pipe, settings["prompt"], settings["negative_prompt"])
        timings["encode"] = time.perf_counter() - tick
        x_T = initial_latents(pipe, settings["seed"], settings["width"], settings["height"])  # (1, C, h, w)
        latents = {"standard": x_T}
        if "npnet" in settings["methods"]:
            net = loaded.npnets[settings["npnet"]]
            tick = time.perf_counter()
            with torch.inference_mode():
                golden = net(x_T.to(loaded.device), embeds.condition)  # (1, C, h, w)
            latents["npnet"] = golden.float().cpu()
            timings["npnet"] = time.perf_counter() - tick
        if "inversion" in settings["methods"]:
            tick = time.perf_counter()
            latents["inversion"] = redenoise_trace(
                pipe,
                x_T,
                embeds,
                settings["redenoise_steps"],
                settings["redenoise_guidance_scale"],
                settings["inversion_guidance_scale"],
                mode=settings["redenoise_mode"],
                start=settings["redenoise_start"],
                solver=settings["redenoise_solver"],
            ).x_prime
            timings["redenoise"] = time.perf_counter() - tick
        return latents, embeds

    def generate_many(
        self, requests, batch_size: int | None = None, exact_latents: bool = False, pad: bool = False
    ) -> list[GenerationResult]:
        """``generate`` for many (prompt, seed) requests with up to ``batch_size`` images per pipeline call.

        The requests must share the model and every setting but prompt and seed (``UserError`` otherwise).
        Each distinct prompt is encoded once; every x_T comes from its own seed; NPNet and re-denoise run
        on batches of samples; then all (sample, method) latents are denoised ``batch_size`` images per
        call (default: one sample's methods per call, exactly ``generate``'s calls), each image with a
        sampler generator seeded by its sample's seed; NPNet and re-denoise take ``batch_size // methods``
        samples per call. On ``torch.OutOfMemoryError`` the batch is halved and the chunk retried.
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
        preset = self.preset(requests[0].model)
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
        methods = settings[0]["methods"]
        if batch_size is None:
            batch_size = len(methods)
        batch_size = _positive_int("batch_size", batch_size)
        if not settings[0]["batched"]:
            batch_size = 1
        with self.lease(preset.name, requests[0].npnet, with_npnet="npnet" in methods) as loaded:
            return self._generate_many_locked(
                loaded, requests, settings, batch_size, start, exact_latents, pad
            )

    def _generate_many_locked(
        self, loaded: LoadedModel, requests, settings, batch_size, start, exact_latents, pad
    ):
        common = settings[0]
        methods = common["methods"]
        n = len(requests)
        batch = [batch_size]  # images per call, halved on OOM and kept for the rest of the call
        per_sample = [
            1 if exact_latents else max(1, batch_size // len(methods))
        ]  # samples per NPNet / re-denoise call
        with PeakMemory(loaded.device) as peak, _large_image_tiling(loaded, common):
            timings: dict[str, float] = {}
            view = with_scheduler(loaded.pipe, common["scheduler"], progress=self.progress)
            scheduler_class = type(view.scheduler).__name__
            redenoise_start = first_timestep(view, common["steps"])
            pipe = loaded.pipe
            tick = time.perf_counter()
            encoded: dict[str, PromptEmbeds] = {}
            for s in settings:
                if s["prompt"] not in encoded:
                    encoded[s["prompt"]] = encode_prompt(pipe, s["prompt"], common["negative_prompt"])
            embeds = [encoded[s["prompt"]] for s in settings]
            timings["encode"] = time.perf_counter() - tick
            x_T = torch.cat(
                [initial_latents(pipe, s["seed"], common["width"], common["height"]) for s in settings]
            )
            latents = {"standard": x_T}  # (N, C, h, w)
            if "npnet" in methods:
                net = loaded.npnets[common["npnet"]]
                tick = time.perf_counter()

                def golden(idx):
                    with torch.inference_mode():
                        cond = PromptEmbeds.stack([embeds[i] for i in idx]).condition
                        return net(x_T[idx].to(loaded.device), cond).float().cpu()

                latents["npnet"] = torch.cat(_in_chunks(golden, n, per_sample, "NPNet", pad))
                timings["npnet"] = time.perf_counter() - tick
            if "inversion" in methods:
                tick = time.perf_counter()

                def inversion(idx):
                    return redenoise_trace(
                        pipe,
                        x_T[idx],
                        PromptEmbeds.stack([embeds[i] for i in idx]),
                        common["redenoise_steps"],
                        common["redenoise_guidance_scale"],
                        common["inversion_guidance_scale"],
                        mode=common["redenoise_mode"],
                        start=redenoise_start,
                        solver=common["redenoise_solver"],
                    ).x_prime

                latents["inversion"] = torch.cat(_in_chunks(inversion, n, per_sample, "re-denoise", pad))
                timings["redenoise"] = time.perf_counter() - tick
            # every (sample, method) image, sample-major: one sample's methods stay together
            order = [(i, m) for i in range(n) for m in methods]
            stacked = torch.stack([latents[m][i] for i, m in order])  # (N*M, C, h, w)
            tick = time.perf_counter()

            def images(idx):
                return list(
                    run_pipeline(
                        view,
                        PromptEmbeds.stack([embeds[order[k][0]] for k in idx]),
                        stacked[idx],
                        common["steps"],
                        common["guidance_scale"],
                        common["width"],
                        common["height"],
                        seed=[settings[order[k][0]]["seed"] for k in idx],
                    )
                )

            pictures = [
                image for chunk in _in_chunks(images, len(order), batch, "denoise", pad) for image in chunk
            ]
            timings["denoise"] = time.perf_counter() - tick
            timings["denoise_per_image"] = timings["denoise"] / len(order)
        total = time.perf_counter() - start
        results = []
        for i, (request, s) in enumerate(zip(requests, settings)):
            s = dict(s)
            s.update(
                scheduler_class=scheduler_class,
                redenoise_start=redenoise_start,
                device=str(loaded.device),
                dtype=str(loaded.dtype).replace("torch.", ""),
                batched_used=batch[0] > 1,
                batch_size_used=batch[0],
            )
            share = {k: v / n for k, v in timings.items() if k != "denoise_per_image"}
            share.update(denoise_per_image=timings["denoise_per_image"], total=total / n, batch_total=total)
            results.append(
                GenerationResult(
                    request=request,
                    settings=s,
                    images={m: pictures[i * len(methods) + j] for j, m in enumerate(methods)},
                    latents={m: latents[m][i : i + 1] for m in methods},
                    prompt_embeds=embeds[i].condition.detach().float().cpu(),
                    timings=share,
                    peak_memory=dict(peak.result),
                )
            )
        return results

    def generate_seeds(self, request: GenerationRequest, seeds) -> list[GenerationResult]:
        """One result per seed (same prompt and settings)."""
        return [self.generate(dataclasses.replace(request, seed=int(s))) for s in seeds]
