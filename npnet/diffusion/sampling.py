"""Thin diffusers glue: latent geometry, x_T from a seed, encode_prompt per family, batched pipeline calls.

Every fact that differs between pipelines (latent channels, packing, ``encode_prompt``, the denoiser)
is asked of the pipeline's family (``npnet.diffusion.families``). CFG follows diffusers:
``eps = eps_u + w (eps_c - eps_u)`` (the paper's Eq. 3 with omega = w - 1).
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from npnet.diffusion.families import FAMILIES, family_of
from npnet.diffusion.schedulers import DEFAULT_SCHEDULER, make_scheduler
from npnet.errors import UserError
from npnet.model import describe_text_width, models_for_text_width


# -- geometry and validation -------------------------------------------------------------------
def denoiser(pipe) -> torch.nn.Module:
    return family_of(pipe).denoiser(pipe)


def latent_shape(pipe, width: int, height: int) -> tuple[int, int, int]:
    """(channels, height // vae_scale_factor, width // vae_scale_factor) of the pipeline's (unpacked) latents."""
    return family_of(pipe).latent_shape(pipe, width, height)


def initial_latents(pipe, seed: int, width: int, height: int) -> torch.Tensor:
    """x_T ~ N(0, I) from ``seed`` on CPU in float32 (same on every device): (1, C, h, w), unpacked."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, *latent_shape(pipe, width, height)), generator=generator, dtype=torch.float32)


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("prompt is empty: give a text prompt describing the image")
    return prompt


def check_size(width: int, height: int, multiple: int = 8) -> tuple[int, int]:
    """Raise a ValueError naming the nearest valid sizes unless both sides are multiples of ``multiple``."""
    bad = [(n, v) for n, v in (("width", width), ("height", height)) if int(v) <= 0 or int(v) % multiple]
    if not bad:
        return int(width), int(height)

    def near(v: int) -> str:
        low = max(multiple, (int(v) // multiple) * multiple)
        return f"{low} or {low + multiple}" if low < int(v) else str(low)

    detail = "; ".join(f"{n} {v} -> use {near(v)}" for n, v in bad)
    raise UserError(f"image size {width}x{height} must be a multiple of {multiple} on both sides ({detail})")


def embedding_width(pipe) -> int:
    """Width D of the NPNet condition (1, L, D) this pipeline produces."""
    return family_of(pipe).text_shape(pipe)[1]


def check_npnet_matches(net, pipe) -> None:
    """Raise a ValueError when an NPNet does not fit the pipeline: another family recorded in its config
    (e.g. a Flux NPNet on SDXL), another text width (e.g. DiT NPNet on SDXL), length or latent channels."""
    family = family_of(pipe)
    cfg = net.config
    recorded = getattr(cfg, "family", None)
    if recorded and recorded != family.name:
        trained = FAMILIES.get(recorded)
        what = f"{trained.label} model" if trained else f"the {recorded!r} model family"
        raise UserError(
            f"this NPNet was trained for {what} ({recorded}: "
            f"{cfg.text_len}x{cfg.text_dim} prompt embeddings, {cfg.latent_channels}-channel latents), but the "
            f"model is {family.label} pipeline; choose {trained.models if trained else 'a model of that family'}, "
            "or the NPNet trained for this model"
        )
    length, want = family.text_shape(pipe)
    got = int(cfg.text_dim)
    if want != got:
        raise UserError(
            f"this NPNet expects {cfg.text_len}x{got} prompt embeddings: this is {describe_text_width(got)}, but "
            f"the model is {family.label} pipeline with {length}x{want} embeddings; choose "
            f"{models_for_text_width(got)}, or the NPNet trained for this model"
        )
    channels = family.latent_channels(pipe)
    if channels != cfg.latent_channels or length < cfg.text_len:
        raise UserError(
            f"this NPNet works on {cfg.latent_channels}-channel latents and {cfg.text_len} text tokens, but "
            f"the model is {family.label} pipeline with {channels}-channel latents and {length} tokens; choose "
            "the NPNet trained for this model"
        )


# -- prompt embeddings -------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptEmbeds:
    """Everything the pipeline needs for one prompt (batch 1), from the family's own ``encode_prompt``."""

    family: str
    tensors: dict[str, torch.Tensor]

    @property
    def condition(self) -> torch.Tensor:
        """The NPNet condition ``prompt_embeds``: SDXL (1, 77, 2048); Hunyuan-DiT (1, 77, 1024) BERT embeds;
        SD 1.5 / 2.1 (1, 77, 768 / 1024); SD3 joint CLIP + T5 (1, 333, 4096); Flux T5 (1, 512, 4096)."""
        return self.tensors["prompt_embeds"]

    @property
    def batch(self) -> int:
        """How many prompts these embeddings hold (1 from ``encode_prompt``, B from ``stack``)."""
        return int(self.condition.shape[0])

    def repeat(self, n: int) -> PromptEmbeds:
        """The same embeddings for a batch of ``n`` latents."""
        reps = {k: v.repeat(n, *([1] * (v.ndim - 1))) for k, v in self.tensors.items()}  # (n, ...)
        return PromptEmbeds(self.family, reps)

    def expand(self, n: int) -> PromptEmbeds:
        """Embeddings for ``n`` latents: one prompt repeated ``n`` times, or a stack of exactly ``n``."""
        if self.batch == n:
            return self
        if self.batch == 1:
            return self.repeat(n)
        raise ValueError(f"embeddings of {self.batch} prompts do not fit a batch of {n} latents")

    @staticmethod
    def stack(items: Sequence[PromptEmbeds]) -> PromptEmbeds:
        """Several prompts' embeddings as one batch, row i = ``items[i]`` (same family and keys)."""
        first = items[0]
        if any(e.family != first.family or e.tensors.keys() != first.tensors.keys() for e in items):
            raise ValueError("cannot stack prompt embeddings of different families")
        if len(items) == 1:
            return first
        return PromptEmbeds(first.family, {k: torch.cat([e.tensors[k] for e in items]) for k in first.tensors})

    def to(self, device=None, dtype: torch.dtype | None = None) -> PromptEmbeds:
        """Move; ``dtype`` applies to float tensors only (attention masks stay integer)."""
        out = {
            k: v.to(device=device, dtype=dtype if v.is_floating_point() and dtype else v.dtype)
            for k, v in self.tensors.items()
        }
        return PromptEmbeds(self.family, out)


def encode_prompt(pipe, prompt: str, negative_prompt: str = "", device=None) -> PromptEmbeds:
    """Encode once with the pipeline's own ``encode_prompt`` (cond and uncond), reused for every image."""
    check_prompt(prompt)
    negative = negative_prompt if negative_prompt and negative_prompt.strip() else None
    device = device if device is not None else pipe._execution_device
    family = family_of(pipe)
    family.check_negative(negative_prompt)
    with torch.inference_mode():
        tensors = family.encode(pipe, prompt, negative, device)
    return PromptEmbeds(family.name, tensors)


# -- denoising ---------------------------------------------------------------------------------
def with_scheduler(pipe, scheduler: str = DEFAULT_SCHEDULER, progress: bool = True):
    """A shallow copy of ``pipe`` sharing its modules, with a fresh scheduler; ``pipe`` is untouched."""
    view = copy.copy(pipe)
    view.scheduler = make_scheduler(scheduler, pipe.scheduler)
    view.set_progress_bar_config(disable=not progress)
    return view


def sampler_generators(seed: int | Sequence[int], n: int) -> list[torch.Generator]:
    """One CPU generator per image for stochastic samplers: all seeded with ``seed`` (fair pairs), or
    with ``seed[i]`` for image i (a batch across samples: each image gets its own sample's seed)."""
    seeds = [int(seed)] * n if isinstance(seed, (int, float)) else [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} images")
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def run_pipeline(
    view,
    embeds: PromptEmbeds,
    latents: torch.Tensor,
    steps: int,
    guidance_scale: float,
    width: int,
    height: int,
    seed: int | Sequence[int] = 0,
    output_type: str = "pil",
):
    """One pipeline call on a batch of x_T (B, C, h, w): one prompt's embeddings repeated B times, or a
    stack of B prompts' (``PromptEmbeds.stack``); ``seed``: one for all images or one per image."""
    batch = latents.shape[0]
    family = family_of(view)
    kwargs = embeds.expand(batch).to(device=view._execution_device).tensors
    x = latents.to(device=view._execution_device, dtype=family.denoiser(view).dtype)  # (B, C, h, w)
    x = family.pack(view, x)  # what pipeline(latents=...) takes (Flux: (B, hw/4, 4C)); it scales by sigma
    with torch.inference_mode():
        out = view(
            **kwargs,
            **family.call_kwargs(),
            latents=x,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            generator=sampler_generators(seed, batch),
            output_type=output_type,
        )
    return out.images


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

