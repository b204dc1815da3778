"""Re-denoise sampling (paper Sec. 3.1, Eq. 1-2, Alg. 1 lines 5-6): x'_T = DDIM-Inversion(DDIM(x_T)).

One DDIM step from the first timestep with CFG w_l, then one DDIM-inversion step with CFG w_w,
using diffusers' ``DDIMScheduler`` / ``DDIMInverseScheduler`` built from the pipeline's scheduler
config and the pipeline's own denoiser call conventions. It is also the paper's "Inversion" method.

The DDIM step size is ``1000 / steps``; with ``steps`` equal to the sampling steps (the engine's
default) the round trip runs on the sampler's own schedule, so x'_T sits exactly at the sampler's first
noise level, as in the official code. The DDIM step uses the pipeline's CFG convention (w_l <= 1: the
conditional output only); the inversion step applies uncond + w_w (cond - uncond) for any w_w >= 0,
as the official code does (w_w = 1 is the conditional output).

Solvers (``solver``; the model preset's ``redenoise_solver``):
- ``"ddim"``: ``DDIMScheduler`` + ``DDIMInverseScheduler``, step size ``1000 // steps`` (SDXL, Hunyuan-DiT:
  paper App. A.5, official collection code).
- ``"dpmsolver"``: ``DPMSolverMultistepScheduler`` + ``DPMSolverMultistepInverseScheduler`` (paper App. A.5
  for DreamShaper-xl-v2-turbo: "DPMSolver inverse scheduler", 4 steps; that collection code was not
  released). The DPM step runs on the DPM scheduler's own schedule for ``steps`` (its spacing, e.g.
  leading ``1000 // (steps + 1)``): x_T at its first timestep (or ``start``), x_mid at the next one. Both
  steps are first order (a single step has no history), which for a deterministic solver is the DDIM
  update between the same two noise levels, so the solvers differ by their schedules. In "correct" mode
  the inverse scheduler's grid is set to the mirror of the forward step (x_mid's level -> x_T's level),
  so x'_T sits at x_T's noise level; in "official" mode the inverse scheduler keeps its own ascending grid
  and is called, as the official code calls its inverse scheduler, with the forward schedule's next
  timestep (a timestep missing from that grid makes diffusers take its last step, up to its noisiest
  level).

- ``"flow-euler"``: flow matching (SD3, Flux): one Euler step of the pipeline's
  ``FlowMatchEulerDiscreteScheduler`` from sigma = 1 on its own sigmas (shift / ``mu``) and the inverse
  Euler step back (``npnet.diffusion.flow_redenoise``, with Theorem E.1 redone for velocities).

Which solvers fit a pipeline is the family's decision (``Family.redenoise_solvers``).

Modes:
- ``"correct"``: the inversion evaluates eps at x_{T-k}'s own timestep T-k and steps T-k -> T, so
  x'_T has exactly x_T's noise level (the round trip of Eq. 11-12).
- ``"official"``: as the official collection code: eps is evaluated at timestep T and the inverse
  scheduler is called with the *next* timestep T-k, which ``DDIMInverseScheduler`` treats as the
  target, i.e. a step T-2k -> T-k: x'_T lands one step short of x_T's noise level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from npnet.diffusion.families import family_of
from npnet.diffusion.sampling import PromptEmbeds
from npnet.diffusion.schedulers import accepted_config
from npnet.errors import UserError

REDENOISE_MODES = ("correct", "official")
REDENOISE_SOLVERS = ("ddim", "dpmsolver", "flow-euler")


@dataclass(frozen=True)
class RedenoiseTrace:
    """Intermediate values of one re-denoise round trip (CPU float32 tensors, integer timesteps)."""

    x_T: torch.Tensor  # (B, C, h, w) source noise
    x_mid: torch.Tensor  # DDIM(x_T), Alg. 1 line 5
    x_prime: torch.Tensor  # DDIM-Inversion(x_mid), Alg. 1 line 6 (target noise)
    t_start: int  # timestep of x_T (first sampling timestep)
    t_mid: int  # noise level of x_mid
    t_eval: int  # timestep the inversion's model call uses
    t_from: int  # level the inverse step assumes for x_mid
    t_to: int  # level x'_T lands on
    mode: str
    solver: str = "ddim"
    sigma_start: float | None = None  # flow matching: sigma of x_T (1) and of x_mid
    sigma_mid: float | None = None


# -- guided model predictions (asked of the family) ---------------------------------------------
def _call(pipe, x: torch.Tensor, embeds: PromptEmbeds):
    """(family, x on the denoiser's device and dtype, embeddings with B rows on that device)."""
    family = family_of(pipe)
    x = x.to(device=pipe._execution_device, dtype=family.denoiser(pipe).dtype)
    return family, x, embeds.expand(x.shape[0]).to(device=x.device).tensors


def model_outputs(pipe, x: torch.Tensor, t, embeds: PromptEmbeds, guidance_scale: float = 1.0):
    """(uncond, cond) raw denoiser outputs (the scheduler's prediction type) at ``t``, in float32."""
    family, x, tensors = _call(pipe, x, embeds)
    with torch.inference_mode():
        uncond, cond = family.model_outputs(pipe, x, t, tensors, guidance_scale)
    return uncond.float(), cond.float()


def uses_cfg(pipe, guidance_scale: float) -> bool:
    """As the diffusers pipelines decide: CFG only for w > 1 and not for guidance-embedded models."""
    return family_of(pipe).uses_cfg(pipe, guidance_scale)


def guided_output(pipe, x: torch.Tensor, t, embeds: PromptEmbeds, guidance_scale: float) -> torch.Tensor:
    """The denoiser output the pipeline itself would use at ``t``: CFG-combined, or conditional only."""
    family, x, tensors = _call(pipe, x, embeds)
    with torch.inference_mode():
        return family.guided_output(pipe, x, t, tensors, guidance_scale).float()


def inversion_output(pipe, x: torch.Tensor, t, embeds: PromptEmbeds, guidance_scale: float) -> torch.Tensor:
    """The inversion step's output: uncond + w_w (cond - uncond) for any w_w (official code; Eq. 2)."""
    family, x, tensors = _call(pipe, x, embeds)
    with torch.inference_mode():
        return family.inversion_output(pipe, x, t, tensors, guidance_scale).float()


# -- the round trip ----------------------------------------------------------------------------
def redenoise_schedulers(pipe, steps: int):
    """(DDIMScheduler, DDIMInverseScheduler) from the pipeline's scheduler config, set to ``steps``."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    config = dict(pipe.scheduler.config)
    spacing = config.get("timestep_spacing", "leading")
    ddim = DDIMScheduler.from_config(
        accepted_config(DDIMScheduler, config), clip_sample=False
    )  # Eq. 1: no clipping
    inverse = DDIMInverseScheduler.from_config(
        accepted_config(DDIMInverseScheduler, config),
        clip_sample=False,
        timestep_spacing=spacing if spacing in ("leading", "trailing") else "leading",
    )
    ddim.set_timesteps(steps)
    inverse.set_timesteps(steps)
    return ddim, inverse


def first_timestep(view, steps: int) -> int:
    """The first timestep the sampler of ``view`` (a per-request pipeline view) uses for ``steps`` steps."""
    return family_of(view).first_timestep(view, steps)  # never touches the view's own scheduler


def check_solver(solver: str) -> str:
    if solver not in REDENOISE_SOLVERS:
        raise UserError(f"unknown re-denoise solver {solver!r}; choose one of {', '.join(REDENOISE_SOLVERS)}")
    return solver


def _check(steps: int, mode: str, solver: str = "ddim") -> None:
    check_solver(solver)
    if mode not in REDENOISE_MODES:
        raise UserError(f"unknown re-denoise mode {mode!r}; choose one of {', '.join(REDENOISE_MODES)}")
    if int(steps) < 2:
        raise UserError(f"re-denoise needs steps >= 2 (the DDIM step size is 1000/steps); got {steps}")


def check_guidance(name: str, value) -> float:
    """A CFG weight: a finite number >= 0 (diffusers' convention w; the paper's omega is w - 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a finite number >= 0 (diffusers CFG convention); got {value!r}")
    return float(value)


def redenoise_trace(
    pipe,
    x_T: torch.Tensor,
    embeds: PromptEmbeds,
    steps: int,
    guidance_scale: float,
    inversion_guidance_scale: float = 1.0,
    mode: str = "correct",
    start: int | None = None,
    solver: str = "ddim",
) -> RedenoiseTrace:
    """Re-denoise sampling with every intermediate value (see the module docstring for modes and solvers).

    ``start``: the timestep x_T is taken to sit at (the sampler's first timestep, ``first_timestep``);
    default: the solver's own first timestep for ``steps``. DDIM's step size is always ``1000 // steps``.
    """
    _check(steps, mode, solver)
    family = family_of(pipe)
    family.check_solver(solver)
    family.check_mode(mode)
    x = x_T.to(device=pipe._execution_device, dtype=torch.float32)  # (B, C, h, w)
    scales = (guidance_scale, inversion_guidance_scale)
    if solver == "flow-euler":
        from npnet.diffusion.flow_redenoise import flow_round_trip

        x_mid, x_prime, levels = flow_round_trip(pipe, x, embeds, steps, scales, (guided_output, inversion_output))
    else:
        trip = _ddim_round_trip if solver == "ddim" else _dpm_round_trip
        x_mid, x_prime, levels = trip(pipe, x, embeds, steps, scales, mode, start)
    return RedenoiseTrace(
        x_T=x_T.detach().float().cpu(),
        x_mid=x_mid.float().cpu(),
        x_prime=x_prime.float().cpu(),
        mode=mode,
        solver=solver,
        **levels,
    )


def _ddim_round_trip(pipe, x, embeds, steps: int, scales, mode: str, start):
    """(x_mid, x'_T, levels) with DDIM and DDIM inversion (Eq. 1-2)."""
    ddim, inverse = redenoise_schedulers(pipe, steps)
    t0 = int(ddim.timesteps[0]) if start is None else int(start)
    t_mid = t0 - ddim.config.num_train_timesteps // steps
    out = guided_output(pipe, x, t0, embeds, scales[0])
    x_mid = ddim.step(out, t0, x, return_dict=False)[0]  # Eq. 1 with CFG w_l
    t_eval, t_target = (t_mid, t0) if mode == "correct" else (t0, t_mid)
    out = inversion_output(pipe, x_mid, t_eval, embeds, scales[1])
    x_prime = inverse.step(out, t_target, x_mid, return_dict=False)[0]  # Eq. 2 with CFG w_w
    t_from = t_target - inverse.config.num_train_timesteps // steps
    levels = {"t_start": t0, "t_mid": t_mid, "t_eval": t_eval, "t_from": t_from, "t_to": t_target}
    return x_mid, x_prime, levels


# -- DPM-Solver re-denoise (DreamShaper-xl-v2-turbo, App. A.5) -----------------------------------
_GRID_OPTIONS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")


def dpm_schedulers(pipe, steps: int, start: int | None = None):
    """(DPMSolverMultistepScheduler, DPMSolverMultistepInverseScheduler) from the pipeline's scheduler
    config, set to ``steps``; with a ``start`` off the DPM schedule the forward one runs [start, start - its
    step] (custom timesteps, so its sigma-grid options are off)."""
    from diffusers import DPMSolverMultistepInverseScheduler, DPMSolverMultistepScheduler

    config = dict(pipe.scheduler.config)
    forward = DPMSolverMultistepScheduler.from_config(accepted_config(DPMSolverMultistepScheduler, config))
    inverse = DPMSolverMultistepInverseScheduler.from_config(
        accepted_config(DPMSolverMultistepInverseScheduler, config)
    )
    forward.set_timesteps(steps)
    inverse.set_timesteps(steps)
    own = [int(t) for t in forward.timesteps]
    if start is not None and int(start) not in own[:-1]:
        forward = DPMSolverMultistepScheduler.from_config(forward.config, **dict.fromkeys(_GRID_OPTIONS, False))
        forward.set_timesteps(timesteps=[int(start), max(int(start) - (own[0] - own[1]), 0)])
    return forward, inverse


def _mirror(inverse, forward, index: int) -> None:
    """Set the inverse scheduler's grid to the forward step ``index -> index + 1`` run backwards."""
    ts, sigmas = forward.timesteps, forward.sigmas
    inverse.timesteps = torch.stack([ts[index + 1], ts[index]]).to(torch.int64)
    inverse.sigmas = torch.stack([sigmas[index + 1], sigmas[index], sigmas[index]]).cpu()
    inverse.num_inference_steps = 2


def _dpm_round_trip(pipe, x, embeds, steps: int, scales, mode: str, start):
    """(x_mid, x'_T, levels) with one DPM-Solver step and one DPM-Solver inverse step."""
    forward, inverse = dpm_schedulers(pipe, steps, start)
    t0 = int(forward.timesteps[0]) if start is None else int(start)
    out = guided_output(pipe, x, t0, embeds, scales[0])
    x_mid = forward.step(out, t0, x, return_dict=False)[0]  # first order: the DDIM update, DPM levels
    index = forward.step_index - 1
    t_mid = int(forward.timesteps[index + 1])
    if mode == "correct":
        _mirror(inverse, forward, index)
    t_eval = t_mid if mode == "correct" else t0
    out = inversion_output(pipe, x_mid, t_eval, embeds, scales[1])
    x_prime = inverse.step(out, t_mid, x_mid, return_dict=False)[0]
    done = inverse.step_index - 1
    grid = [int(t) for t in inverse.timesteps] + [int(getattr(inverse, "noisiest_timestep", t0))]
    t_to = t0 if mode == "correct" else grid[done + 1]
    levels = {"t_start": t0, "t_mid": t_mid, "t_eval": t_eval, "t_from": grid[done], "t_to": t_to}
    return x_mid, x_prime, levels
