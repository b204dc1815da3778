"""App-level service: wraps ``GoldenNoiseService`` with scorers, download bundles and per-session cancel flags.

Nothing here is per-request state on a shared pipeline: the engine clones schedulers per call, scorers
are loaded once and are thread-safe, and a session's current pair lives in its ``gr.State`` (``Pair``).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from npnet.diffusion.presets import MODEL_PRESETS, get_model_preset
from npnet.engine import METHODS, GenerationRequest, GenerationResult, GoldenNoiseService
from npnet.errors import UserError
from npnet.io import versions
from studio.config import LaunchConfig, default_model, resolve_offline
from studio.sessions import Sessions
from studio.spaces_compat import on_zero_gpu
from studio.tempfiles import TempFiles

log = logging.getLogger("studio")

OFFLINE_METRICS = ("micro", "toy-brightness", "toy-colorfulness")
ONLINE_DEFAULT_METRICS = ("pickscore", "hpsv2")
METHOD_LABELS = {
    "standard": "Standard (x_T)",
    "npnet": "NPNet (golden noise)",
    "inversion": "Inversion (x'_T)",
}


@dataclass
class Pair:
    """One generation shown in the UI (a session's current pair): images, latents, scores and files."""

    result: GenerationResult
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> method -> value
    score_errors: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    bundle: Path | None = None

    @property
    def methods(self) -> list[str]:
        return list(self.result.images)

    @property
    def prompt(self) -> str:
        return self.result.settings["prompt"]


class StudioService:
    """What the tabs call: models, NPNet checkpoints, generation + scoring, bundles, cancel flags."""

    def __init__(
        self,
        config: LaunchConfig,
        temp: TempFiles,
        engine: GoldenNoiseService | None = None,
        offline: bool | None = None,
    ):
        self.config = config
        self.temp = temp
        self.offline = resolve_offline(config) if offline is None else offline
        self.engine = engine or GoldenNoiseService(
            device=config.device,
            dtype=config.dtype,
            offline=self.offline,
            cpu_offload=config.cpu_offload,
            max_loaded=config.max_loaded_models,
            progress=False,
        )
        self.has_gpu = self.engine.device.type == "cuda"
        self.default_model = config.model or default_model(self.offline, self.has_gpu)
        get_model_preset(self.default_model)  # unknown --model: fail at startup with the preset list
        self._scorers: dict[str, Any] = {}
        self._scorer_lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self.sessions = Sessions(config.publish)

    # -- models and checkpoints --------------------------------------------------------------------
    def models(self) -> list[str]:
        """Presets selectable now (offline: offline and cached ones); the default first."""
        names = self.engine.available_models()
        return [self.default_model, *[n for n in names if n != self.default_model]]

    def preset(self, model: str):
        return get_model_preset(model)

    def warm_up(self) -> list[str]:
        """On ZeroGPU (``spaces`` importable, ``SPACE_ID`` set), load the default pipeline, its NPNet and the
        default metrics' scorers now: at start-up, outside every ``@spaces.GPU`` function, as the ZeroGPU
        docs prescribe (each GPU call then finds them loaded instead of spending its seconds on it).
        Elsewhere nothing is loaded before first use. Returns what was loaded."""
        if not on_zero_gpu():
            return []
        model = self.default_model
        npnet = self.default_npnet(model) or None  # what the Generate form sends for the default model
        nets = list(self.engine.load(model, npnet).npnets)
        loaded = [f"pipeline {model}", *(f"NPNet {key}" for key in nets)]
        for metric in self.default_metrics(model):
            try:
                self.scorer(metric)
            except (UserError, OSError, ImportError) as err:  # a first request reports it as usual
                log.warning("metric %s not preloaded: %s", metric, str(err).splitlines()[0][:300])
                continue
            loaded.append(f"scorer {metric}")
        log.info("ZeroGPU start-up: loaded %s", ", ".join(loaded))
        return loaded

    def default_npnet(self, model: str) -> str:
        """The NPNet spec used for ``model`` when the user picks none (``--npnet`` for the default model)."""
        if model == self.default_model and self.config.npnet:
            return self.config.npnet
        return self.preset(model).npnet_checkpoint or ""

    def npnet_choices(self, model: str, session: str) -> list[str]:
        """Checkpoints offered for ``model``: its default, the released ones, the operator's allow-list and
        published checkpoints, and this session's own Train-tab outputs."""
        from npnet.checkpoints import HUB_CHECKPOINTS
        from npnet.paths import asset_path

        preset = self.preset(model)
        shipped = [c for c in preset.npnet_alternatives if (asset_path(c) or Path(c)).is_file()]
        choices = [self.default_npnet(model), *shipped]
        if not self.offline:
            choices += [n for n, c in HUB_CHECKPOINTS.items() if c.family == preset.npnet_preset]
        choices += [*self.config.allow_npnet, *self.sessions.checkpoints(session)]
        return list(dict.fromkeys(c for c in choices if c))

    def is_upload(self, path) -> bool:
        """Whether ``path`` is a file Gradio stored as an upload of this app (its own temporary folder)."""
        try:
            return Path(path).resolve().is_relative_to(self.temp.gradio_dir.resolve()) and Path(path).is_file()
        except (OSError, ValueError):
            return False

    def npnet_override(self, model: str, chosen: Any, session: str) -> str | None:
        """The NPNet a form's field asks for: None for the preset's own (an empty field or that checkpoint),
        else ``chosen`` (or ``--npnet`` for the default model) if this server lets the visitor use it."""
        spec = str(chosen or "").strip() or self.default_npnet(model) or None
        if spec == self.preset(model).npnet_checkpoint:
            return None
        return self.check_npnet(model, spec, session)

    def check_npnet(self, model: str, spec: str | None, session: str) -> str | None:
        """The NPNet ``spec`` a visitor chose, if this server lets them use it (always, unless shared)."""
        if spec and "://" in spec:
            raise UserError(
                f"NPNet checkpoint {spec.split('://')[0][:20]}://...: URLs are not read; choose a checkpoint from "
                "the list, type a hub id (owner/repo/file) or upload the file"
            )
        if not spec or not self.config.shared or spec in self.npnet_choices(model, session) or self.is_upload(spec):
            return spec
        raise UserError(
            f"NPNet {spec[:120]!r} is not offered on this shared server; choose one from the list or upload "
            "a checkpoint (the operator can allow more with --allow-npnet)"
        )

    def metric_choices(self) -> list[str]:
        from eval.metrics import available_scorers

        return list(OFFLINE_METRICS) if self.offline else available_scorers()

    def is_micro(self, model: str) -> bool:
        """A micro-world preset (micro, micro-turbo): its captions, verifier and prompt sets apply."""
        return self.preset(model).npnet_preset == "micro"

    def default_metrics(self, model: str) -> list[str]:
        if self.is_micro(model):
            return ["micro"]
        if self.preset(model).offline:
            return ["toy-brightness", "toy-colorfulness"]
        return list(ONLINE_DEFAULT_METRICS)

    def banner(self) -> str:
        """Markdown saying what runs here and how to get the real models."""
        preset = self.preset(self.default_model)
        if not preset.offline:
            return ""
        why = "no GPU" if not self.has_gpu else "no model hub access"
        if self.offline and not self.has_gpu:
            why = "no GPU and no model hub access"
        what = (
            f"the **micro world** (`{preset.name}`: {preset.description}): a small SDXL-class pipeline trained "
            "on procedural shapes, with its own trained NPNet and a rule-based verifier as the metric"
            if self.is_micro(preset.name)
            else f"**{preset.name}**, a random-weight pipeline for plumbing (its images are noise)"
        )
        return (
            f"**Offline mode** ({why}): running {what}. For the paper's models (SDXL + the official "
            "NPNet, DreamShaper, Hunyuan-DiT) start `python app.py --model sdxl` on a CUDA GPU with hub "
            "access, or download them first with `huggingface-cli download stabilityai/stable-diffusion-"
            "xl-base-1.0` and `huggingface-cli download Klayand/GoldenNoiseModel`."
        )

    # -- generation and scoring --------------------------------------------------------------------
    def generate(self, request: GenerationRequest, metrics: list[str] | tuple[str, ...] = ()) -> Pair:
        """Generate every requested method from one seed, score the images and write the download bundle."""
        _check_methods(request.methods)
        return self._pair(self.engine.generate(request), metrics)

    def generate_many(self, requests, metrics: list[str] | tuple[str, ...] = ()) -> list[Pair]:
        """``generate`` for requests differing only in prompt/seed, batched by the model preset's batch_size."""
        requests = list(requests)
        if not requests:
            return []
        methods = requests[0].methods
        _check_methods(methods)
        batch = self.engine.preset(requests[0].model).batch_size
        results = self.engine.generate_many(requests, samples_per_call=batch)
        return [self._pair(result, metrics) for result in results]

    def _pair(self, result, metrics) -> Pair:
        """A generation result scored with ``metrics`` and written as a download bundle."""
        pair = Pair(result)
        self.score_pair(pair, metrics)
        pair.bundle = self.write_bundle(pair)
        return pair

    def scorer(self, name: str):
        """The scorer ``name`` on the engine's device (built once, loaded on first use)."""
        from eval.metrics import get_scorer

        with self._scorer_lock:
            if name not in self._scorers:
                self._scorers[name] = get_scorer(name, device=str(self.engine.device))
            return self._scorers[name]

    def score_pair(self, pair: Pair, metrics) -> None:
        """Fill ``pair.scores`` for each metric; a metric that cannot run records its error instead."""
        methods = pair.methods
        images = [pair.result.images[m] for m in methods]
        for metric in metrics:
            try:
                values = self.scorer(metric)(images, [pair.prompt] * len(images)).tolist()
            except (UserError, OSError, ImportError) as err:  # a scorer that cannot run here (weights, offline)
                log.warning("metric %s unavailable: %s", metric, str(err).splitlines()[0][:300])
                pair.score_errors[metric] = str(err).split("\n")[0][:300]
                continue
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as err:
                error_id = uuid.uuid4().hex[:8]
                log.error("metric %s failed (internal error %s)", metric, error_id, exc_info=err)
                pair.score_errors[metric] = f"internal error, logged as {error_id}"
                continue
            pair.scores[metric] = dict(zip(methods, values))

    def npnet_info(self, result: GenerationResult) -> dict[str, Any]:
        """Parameter count and memory of the NPNet used for ``result`` vs the diffusion pipeline."""
        loaded = self.engine.load(result.settings["model"], with_npnet=False)
        uses_npnet = "npnet" in result.images
        net = self.engine.npnet(result.settings["model"], result.request.npnet) if uses_npnet else None
        npnet_params = sum(p.numel() for p in net.parameters()) if net is not None else 0
        pipe_params = sum(
            p.numel()
            for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")
            if getattr(loaded.pipe, name, None) is not None
            for p in getattr(loaded.pipe, name).parameters()
        )
        return {
            "npnet_parameters": npnet_params,
            "npnet_bytes_fp32": npnet_params * 4,
            "pipeline_parameters": pipe_params,
            "npnet_parameter_share": npnet_params / max(1, npnet_params + pipe_params),
        }

    def timing_rows(self, pair: Pair) -> list[dict[str, Any]]:
        """Per image: seconds (shared encode + its latent step + its share of denoising), extra step share."""
        t = pair.result.timings
        extra = {"standard": 0.0, "npnet": t.get("npnet", 0.0), "inversion": t.get("redenoise", 0.0)}
        peak = pair.result.peak_memory
        peak_mb = peak.get("cuda_max_allocated", peak.get("rss_high_water", 0)) / 2**20
        rows = []
        for method in pair.methods:
            total = t.get("encode", 0.0) + extra[method] + t.get("denoise_per_image", 0.0)
            rows.append(
                {
                    "method": METHOD_LABELS.get(method, method),
                    "seconds": round(total, 4),
                    "noise step (s)": round(extra[method], 4),
                    "noise step share": f"{100 * extra[method] / max(total, 1e-9):.1f}%",
                    "peak memory (MB)": round(peak_mb, 1),
                    "memory kind": "CUDA max allocated"
                    if "cuda_max_allocated" in peak
                    else "process RSS peak",
                }
            )
        return rows

    def meta(self, pair: Pair) -> dict[str, Any]:
        r = pair.result
        return {
            "settings": r.settings,
            "timings_s": r.timings,
            "peak_memory_bytes": r.peak_memory,
            "scores": pair.scores,
            "score_errors": pair.score_errors,
            "npnet": self.npnet_info(r),
            "versions": versions("gradio"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def write_bundle(self, pair: Pair) -> Path:
        """A zip of one PNG per method, ``latents.safetensors`` and ``meta.json`` in a request folder."""
        from safetensors.torch import save

        path = self.temp.download_dir() / f"npnet_pair_seed{pair.result.settings['seed']}.zip"
        latents = {k: v.contiguous() for k, v in pair.result.latents.items()}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for method, image in pair.result.images.items():
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                zf.writestr(f"{method}.png", buf.getvalue())
            zf.writestr("latents.safetensors", save(latents))
            zf.writestr("meta.json", json.dumps(self.meta(pair), indent=2, default=str))
        return path

    # -- cancellation ------------------------------------------------------------------------------
    def stop_flag(self, session: str) -> threading.Event:
        """A fresh cancel flag for ``session``'s next long job; ``release`` it when the job ends."""
        event = threading.Event()
        self._stops[session] = event
        return event

    def release(self, session: str, event: threading.Event) -> None:
        """Forget a finished job's cancel flag (a newer job of the session keeps its own)."""
        if self._stops.get(session) is event:
            del self._stops[session]

    def request_stop(self, session: str) -> bool:
        event = self._stops.get(session)
        if event is None:
            return False
        event.set()
        return True


def preset_summary(model: str) -> str:
    p = MODEL_PRESETS[model]
    return f"{p.description} — {p.width}x{p.height}, {p.steps} steps, CFG {p.guidance_scale}, {p.scheduler}"


def _check_methods(methods) -> None:
    if not methods or any(m not in METHODS for m in methods):
        raise UserError(f"choose at least one method from {', '.join(METHODS)}")
