"""Thin diffusers glue: latent geometry, x_T from a seed, encode_prompt per family, batched pipeline calls.

Two pipeline families are supported: SDXL-style ``StableDiffusionXLPipeline`` (UNet, prompt
embeddings (1, 77, 2048) = NPNet condition) and ``HunyuanDiTPipeline`` (DiT, BERT/CLIP embeddings
(1, 77, 1024) = NPNet condition, plus mT5 embeddings). CFG follows diffusers:
``eps = eps_u + w (eps_c - eps_u)`` (the paper's Eq. 3 with omega = w - 1).
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from npnet.diffusion.schedulers import DEFAULT_SCHEDULER, make_scheduler
from npnet.errors import UserError
from npnet.model import describe_text_width, models_for_text_width

SDXL_KEYS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds",
)
HUNYUAN_KEYS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "prompt_attention_mask",
    "negative_prompt_attention_mask",
    "prompt_embeds_2",
    "negative_prompt_embeds_2",
    "prompt_attention_mask_2",
    "negative_prompt_attention_mask_2",
)

_FAMILY_LABEL = {"sdxl": "an SDXL-family", "hunyuan-dit": "a Hunyuan-DiT"}


# -- geometry and validation -------------------------------------------------------------------
def family_of(pipe) -> str:
    """ "hunyuan-dit" for DiT pipelines (a ``transformer``), "sdxl" for UNet pipelines."""
    if getattr(pipe, "transformer", None) is not None:
        return "hunyuan-dit"
    if getattr(pipe, "unet", None) is not None:
        return "sdxl"
    raise UserError(f"{type(pipe).__name__} is neither an SDXL-style nor a Hunyuan-DiT pipeline")


def denoiser(pipe) -> torch.nn.Module:
    return pipe.transformer if family_of(pipe) == "hunyuan-dit" else pipe.unet


def latent_shape(pipe, width: int, height: int) -> tuple[int, int, int]:
    """(channels, height // vae_scale_factor, width // vae_scale_factor) of the pipeline's latents."""
    channels = denoiser(pipe).config.in_channels
    factor = pipe.vae_scale_factor
    return channels, height // factor, width // factor


def initial_latents(pipe, seed: int, width: int, height: int) -> torch.Tensor:
    """x_T ~ N(0, I) from ``seed`` on CPU in float32 (same on every device): (1, C, h, w)."""
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
    """Width D of the NPNet condition (1, 77, D) this pipeline produces."""
    if family_of(pipe) == "hunyuan-dit":
        return int(pipe.transformer.config.cross_attention_dim)
    return int(pipe.unet.config.cross_attention_dim)


def check_npnet_matches(net, pipe) -> None:
    """Raise a ValueError when an NPNet's text width does not fit the pipeline (e.g. DiT NPNet on SDXL)."""
    want, got = embedding_width(pipe), int(net.config.text_dim)
    if want == got:
        return
    raise UserError(
        f"this NPNet expects 77x{got} prompt embeddings: this is {describe_text_width(got)}, but the model "
        f"is {_FAMILY_LABEL[family_of(pipe)]} pipeline with 77x{want} embeddings; choose "
        f"{models_for_text_width(got)}, or the NPNet trained for this model"
    )


# -- prompt embeddings -------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptEmbeds:
    """Everything the pipeline needs for one prompt (batch 1), from the family's own ``encode_prompt``."""

    family: str
    tensors: dict[str, torch.Tensor]

    @property
    def condition(self) -> torch.Tensor:
        """The NPNet condition: SDXL (1, 77, 2048) prompt_embeds; Hunyuan-DiT (1, 77, 1024) BERT embeds."""
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
    with torch.inference_mode():
        if family_of(pipe) == "sdxl":
            out = pipe.encode_prompt(
                prompt=prompt, device=device, do_classifier_free_guidance=True, negative_prompt=negative
            )
            return PromptEmbeds("sdxl", dict(zip(SDXL_KEYS, out)))
        dtype = pipe.transformer.dtype
        first = pipe.encode_prompt(prompt, device=device, dtype=dtype, negative_prompt=negative)
        second = pipe.encode_prompt(
            prompt,
            device=device,
            dtype=dtype,
            negative_prompt=negative,
            max_sequence_length=256,
            text_encoder_index=1,
        )
    return PromptEmbeds("hunyuan-dit", dict(zip(HUNYUAN_KEYS, (*first, *second))))


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
    net = denoiser(view)
    kwargs = embeds.expand(batch).to(device=view._execution_device).tensors
    extra = {"use_resolution_binning": False} if embeds.family == "hunyuan-dit" else {}
    x = latents.to(device=view._execution_device, dtype=net.dtype)  # (B, C, h, w); pipeline scales by sigma
    with torch.inference_mode():
        out = view(
            **kwargs,
            **extra,
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

