"""Sampler names -> diffusers schedulers (the paper's Table 11 set, plus LCM and the model's own)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import diffusers

from npnet.errors import UserError


@dataclass(frozen=True)
class SchedulerSpec:
    """A diffusers scheduler class and the options that turn it into the named sampler."""

    class_name: str
    options: tuple[tuple[str, Any], ...] = ()
    description: str = ""

    @property
    def cls(self):
        return getattr(diffusers, self.class_name)


SCHEDULER_CLASSES: dict[str, SchedulerSpec] = {
    "ddim": SchedulerSpec("DDIMScheduler", (), "DDIM (deterministic; used to collect the NPD)"),
    "dpm++2m": SchedulerSpec(
        "DPMSolverMultistepScheduler",
        (("algorithm_type", "dpmsolver++"), ("solver_order", 2)),
        "DPM-Solver++ 2M (multistep)",
    ),
    "euler": SchedulerSpec("EulerDiscreteScheduler", (), "Euler"),
    "euler-a": SchedulerSpec("EulerAncestralDiscreteScheduler", (), "Euler ancestral (stochastic)"),
    "ddpm": SchedulerSpec("DDPMScheduler", (), "DDPM (stochastic)"),
    "pndm": SchedulerSpec("PNDMScheduler", (("skip_prk_steps", True),), "PNDM (PLMS)"),
    "heun": SchedulerSpec("HeunDiscreteScheduler", (), "Heun (2 model calls per step)"),
    "kdpm2-a": SchedulerSpec("KDPM2AncestralDiscreteScheduler", (), "KDPM2 ancestral (stochastic)"),
    "lcm": SchedulerSpec("LCMScheduler", (), "LCM (for latent-consistency UNets)"),
}
DEFAULT_SCHEDULER = "default"  # keep the scheduler the model was loaded with
SCHEDULERS: tuple[str, ...] = tuple(SCHEDULER_CLASSES)


def scheduler_names() -> list[str]:
    """Every name ``make_scheduler`` accepts."""
    return [DEFAULT_SCHEDULER, *SCHEDULERS]


def check_scheduler_name(name: str) -> str:
    """Return ``name`` or raise a ValueError listing the choices."""
    if name == DEFAULT_SCHEDULER or name in SCHEDULER_CLASSES:
        return name
    raise UserError(f"unknown scheduler {name!r}; choose one of {', '.join(scheduler_names())}")


def accepted_config(cls, config) -> dict[str, Any]:
    """The part of a scheduler config that ``cls`` accepts (other keys only produce log noise)."""
    names = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in dict(config).items() if k in names}


def make_scheduler(name: str, base):
    """A fresh scheduler ``name`` built from ``base``'s config (``base`` itself is never modified)."""
    check_scheduler_name(name)
    if name == DEFAULT_SCHEDULER:
        return type(base).from_config(base.config)
    spec = SCHEDULER_CLASSES[name]
    return spec.cls.from_config(accepted_config(spec.cls, base.config), **dict(spec.options))
