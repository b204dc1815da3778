"""A model family: every fact and call that differs between diffusers pipeline families, in one object.

The engine, collection, training, the app and the CLI ask the family (``family_of(pipe)`` or
``get_family(preset.family)``); they never test a family's name. A family owns:

* which diffusers pipeline classes it drives (``pipeline_classes``) and extra ``from_pretrained`` kwargs;
* the latent geometry (channels from the denoiser's config, the pipeline's ``vae_scale_factor``) and how
  x_T goes into ``pipeline(latents=...)`` (``pack`` / ``unpack``: identity except Flux);
* the text condition NPNet sees, from the pipeline's own ``encode_prompt`` (``encode``, ``text_shape``);
* the denoiser call (UNet or transformer; CFG, guidance-embedded or distilled guidance) used by
  re-denoise (``model_outputs``, ``guided_output``, ``inversion_output``);
* the scheduler kind ("noise": epsilon / v prediction, DDIM-style re-denoise; "flow": flow matching,
  Euler re-denoise) and the re-denoise solvers and samplers that fit it.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch

from npnet.diffusion.schedulers import scheduler_names
from npnet.errors import UserError

NOISE = "noise"  # epsilon / v-prediction samplers (DDIM, DPM-Solver, Euler on a VP schedule)
FLOW = "flow"  # flow matching (FlowMatchEulerDiscreteScheduler)


def cfg(uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Eq. 3 in diffusers' convention: out_u + w (out_c - out_u) (paper omega = w - 1)."""
    return uncond + guidance_scale * (cond - uncond)


def pairs(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """[uncond; cond] stacks of every tensor that has a ``negative_`` twin, as pipelines build for CFG:
    (2B, ...) under the positive name."""
    out = {}
    for key, value in tensors.items():
        if key.startswith("negative_"):
            name = key[len("negative_") :]
            out[name] = torch.cat([value, tensors[name]])
    return out


class Family(abc.ABC):
    """Base family; subclasses override what differs. Instances are registered by ``name``."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # "an SDXL-family": used in "the model is {label} pipeline"
    models: ClassVar[str] = ""  # which presets to choose for this family's NPNets (error messages)
    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    embed_keys: ClassVar[tuple[str, ...]] = ()  # names of ``encode_prompt``'s outputs, in order
    scheduler_kind: ClassVar[str] = NOISE
    redenoise_solvers: ClassVar[tuple[str, ...]] = ("ddim", "dpmsolver")
    collect_scheduler: ClassVar[str] = "ddim"  # the paper collects with DDIM (App. A.5)
    hub_kwargs: ClassVar[dict[str, Any]] = {}
    text_pool: ClassVar[int] = 0  # NPNet presets for this family pool the text to this many tokens (0: none)
    records_family: ClassVar[bool] = True  # tiny NPNets built for it record the family in their config

    # -- geometry --------------------------------------------------------------------------------
    def denoiser(self, pipe) -> torch.nn.Module:
        return pipe.unet

    def latent_channels(self, pipe) -> int:
        return int(self.denoiser(pipe).config.in_channels)

    def latent_shape(self, pipe, width: int, height: int) -> tuple[int, int, int]:
        """(channels, height // vae_scale_factor, width // vae_scale_factor) of the *unpacked* latents."""
        factor = pipe.vae_scale_factor
        return self.latent_channels(pipe), height // factor, width // factor

    def pack(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> what ``pipeline(latents=...)`` takes (identity but Flux)."""
        return latents

    def unpack(self, pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Inverse of ``pack``: the pipeline's latents -> (B, C, h, w)."""
        return latents

    def call_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of every pipeline call (e.g. no resolution binning)."""
        return {}

    # -- text ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, pipe, prompt: str, negative: str | None, device) -> dict[str, torch.Tensor]:
        """The pipeline's own ``encode_prompt`` (cond and uncond) as named tensors; "prompt_embeds" is the
        NPNet condition."""

    @abc.abstractmethod
    def text_shape(self, pipe) -> tuple[int, int]:
        """(tokens, width) of the NPNet condition ``prompt_embeds`` this pipeline's ``encode_prompt`` gives."""

    def check_negative(self, negative_prompt: str) -> None:
        """Refuse a negative prompt where the family has no unconditional branch (distilled guidance)."""
        return None  # families with a CFG branch take any negative prompt

    # -- NPNet fit -------------------------------------------------------------------------------
    def npnet_shape(self, pipe) -> dict[str, Any]:
        """NPNetConfig fields this pipeline fixes (text length x width, latent channels, family)."""
        length, width = self.text_shape(pipe)
        shape: dict[str, Any] = {"text_dim": width, "text_len": length, "latent_channels": self.latent_channels(pipe)}
        if self.records_family:
            shape["family"] = self.name
        return shape

    # -- denoiser calls (re-denoise) -----------------------------------------------------------------
    @abc.abstractmethod
    def model_outputs(self, pipe, x: torch.Tensor, t, embeds: dict[str, torch.Tensor], guidance_scale: float):
        """(uncond, cond) raw denoiser outputs at ``t`` for a (B, C, h, w) batch; ``embeds``: B rows."""

    def guidance_embedded(self, pipe) -> bool:
        """Whether the guidance weight is a model input instead of a CFG combination (LCM, Flux-dev)."""
        return False

    def uses_cfg(self, pipe, guidance_scale: float) -> bool:
        """As the diffusers pipelines decide: CFG only for w > 1 and not for guidance-embedded models."""
        return not self.guidance_embedded(pipe) and guidance_scale > 1

    def guided_output(self, pipe, x, t, embeds, guidance_scale: float) -> torch.Tensor:
        """The output the pipeline itself would use at ``t`` (float32): CFG-combined, or conditional only."""
        uncond, cond = (o.float() for o in self.model_outputs(pipe, x, t, embeds, guidance_scale))
        return cfg(uncond, cond, guidance_scale) if self.uses_cfg(pipe, guidance_scale) else cond

    def inversion_output(self, pipe, x, t, embeds, guidance_scale: float) -> torch.Tensor:
        """The inversion step's output: uncond + w_w (cond - uncond) for any w_w (official code; Eq. 2)."""
        uncond, cond = (o.float() for o in self.model_outputs(pipe, x, t, embeds, guidance_scale))
        return cond if self.guidance_embedded(pipe) else cfg(uncond, cond, guidance_scale)

    # -- samplers --------------------------------------------------------------------------------
    def check_scheduler(self, name: str) -> str:
        """``name`` if it fits the family's scheduler kind, else a UserError."""
        return name

    def scheduler_names(self) -> list[str]:
        """The sampler names this family's models accept (what a scheduler menu offers)."""
        return scheduler_names()

    def check_solver(self, solver: str) -> str:
        if solver not in self.redenoise_solvers:
            raise UserError(
                f"re-denoise solver {solver!r} does not fit {self.label} model ({self.scheduler_kind} "
                f"sampler); choose {', '.join(self.redenoise_solvers)}"
            )
        return solver

    def check_mode(self, mode: str) -> str:
        return mode

    def first_timestep(self, view, steps: int) -> int:
        """The first timestep the sampler of ``view`` uses for ``steps`` steps (never touching its scheduler)."""
        scheduler = type(view.scheduler).from_config(view.scheduler.config)
        scheduler.set_timesteps(steps)
        return int(round(float(scheduler.timesteps[0])))


def embeds_rows(tensors: dict[str, torch.Tensor], batch: int, device) -> dict[str, torch.Tensor]:
    """Every tensor with ``batch`` rows (one prompt repeated, or already ``batch``) on ``device``."""
    out = {}
    for key, value in tensors.items():
        if value.shape[0] == 1 and batch > 1:
            value = value.repeat(batch, *([1] * (value.ndim - 1)))  # (B, ...)
        out[key] = value.to(device)
    return out
