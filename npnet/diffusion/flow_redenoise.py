"""Re-denoise sampling for flow matching (paper Eq. 1-2 and Theorem E.1 translated to velocity prediction).

SD3 / SD3.5 and Flux sample with ``FlowMatchEulerDiscreteScheduler`` on x_sigma = (1 - sigma) x_0 +
sigma eps, where x_T ~ N(0, I) is exactly the state at sigma = 1 and the model predicts the velocity
v = dx/dsigma = eps - x_0. The round trip (solver ``"flow-euler"``):

1. the sampler's own sigmas for ``steps`` steps (the family sets them as its pipeline does: SD3's
   static ``shift``; Flux's linspace(1, 1/N) with the resolution-dependent ``mu = calculate_shift``),
   so sigma_0 = 1 and sigma_1 is the sampler's next level;
2. one Euler step of the scheduler from sigma_0 with guidance w_l (Eq. 1):
   x_mid = x_T + (sigma_1 - sigma_0) v_{w_l}(x_T, sigma_0);
3. the inverse Euler step back to sigma_0 with guidance w_w, the velocity evaluated at x_mid's own
   level (Eq. 2, the mirror of step 2; diffusers has no inverse flow scheduler):
   x'_T = x_mid + (sigma_0 - sigma_1) v_{w_w}(x_mid, sigma_1).

"Guidance" is what the family's pipeline uses: SD3's CFG v_w = v_u + w (v_c - v_u) (the forward step as
the pipeline decides, CFG only for w > 1; the inverse step uses v_u + w_w (v_c - v_u) for any w_w, as the
DDIM inversion does); Flux-dev's distilled ``guidance`` input (no unconditional branch); Flux-schnell has
no guidance input at all, so w_l and w_w do not enter.

Theorem E.1 for velocity prediction. With Delta = sigma_0 - sigma_1 > 0,

    x'_T = x_T - Delta [ v_{w_l}(x_T, sigma_0) - v_{w_w}(x_mid, sigma_1) ].

As in the paper's proof, evaluate both velocities at the midpoint (x_bar, sigma_bar) of the step (each
differs from it by O(Delta)); the unconditional parts cancel and

    x'_T ~= x_T - Delta (w_l - w_w) [ v(x_bar, sigma_bar | c) - v(x_bar, sigma_bar | empty) ].   (Eq. 10')

With x_0-prediction x0_hat = x - sigma v, the bracket is -(x0_hat(x_bar | c) - x0_hat(x_bar | empty)) /
sigma_bar: re-denoise moves x_T by (w_l - w_w) Delta / sigma_bar along the direction in which the prompt
changes the predicted clean image, the velocity counterpart of Eq. 10's coefficient
(alpha_T sigma_{T-k} - alpha_{T-k} sigma_T) / alpha_{T-k} on eps_c - eps_empty. The component of
x'_T - x_T along v_c - v_empty therefore grows linearly with w_l - w_w (negative sign: x'_T goes
against the velocity difference), and for w_l = w_w only the O(Delta^2) remainder
Delta [v_w(x_mid, sigma_1) - v_w(x_T, sigma_0)] is left, so x'_T returns to x_T as the step shrinks.
For Flux-dev the same expansion gives x'_T ~= x_T - Delta (w_l - w_w) dv/dg: the distilled model's
stand-in for the CFG direction. For Flux-schnell only the remainder is left: re-denoise has no guidance
inconsistency to exploit there, and its "inversion" images are close to the standard ones.
"""

from __future__ import annotations

import torch

from npnet.diffusion.families import family_of
from npnet.errors import UserError


def flow_scheduler(pipe, steps: int, latent_hw: tuple[int, int]):
    """A fresh copy of the pipeline's flow scheduler set to the sigmas its pipeline samples ``steps`` with."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    if getattr(scheduler.config, "stochastic_sampling", False):
        raise UserError("flow re-denoise needs a deterministic Euler scheduler (stochastic_sampling is on)")
    family_of(pipe).set_flow_timesteps(pipe, scheduler, steps, tuple(latent_hw))
    return scheduler


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
    """One Euler step of dx/dsigma = v from ``sigma_from`` to ``sigma_to`` (either direction)."""
    return x + (sigma_to - sigma_from) * v


def flow_round_trip(pipe, x, embeds, steps: int, scales, outputs):
    """(x_mid, x'_T, levels): an Euler step sigma_0 -> sigma_1 with w_l, then back with w_w (module doc).

    ``outputs``: (guided, inversion) velocity functions ``f(pipe, x, t, embeds, w)`` (``npnet.diffusion.
    redenoise.guided_output`` / ``inversion_output``). x_T always sits at sigma_0 = 1 (no start level).
    """
    scheduler = flow_scheduler(pipe, steps, x.shape[-2:])
    t0, t1 = scheduler.timesteps[0], scheduler.timesteps[1]
    s0, s1 = float(scheduler.sigmas[0]), float(scheduler.sigmas[1])
    v = outputs[0](pipe, x, t0, embeds, scales[0])  # (B, C, h, w), float32
    x_mid = scheduler.step(v, t0, x, return_dict=False)[0]  # x_T + (s1 - s0) v: Eq. 1 with w_l
    v_back = outputs[1](pipe, x_mid, t1, embeds, scales[1])
    x_prime = euler_step(x_mid, v_back, s1, s0)  # Eq. 2 with w_w: back to sigma_0
    a, b = int(round(float(t0))), int(round(float(t1)))
    levels = {"t_start": a, "t_mid": b, "t_eval": b, "t_from": b, "t_to": a, "sigma_start": s0, "sigma_mid": s1}
    return x_mid, x_prime, levels
