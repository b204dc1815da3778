"""Flow-matching families (SD3, Flux): FlowMatchEulerDiscreteScheduler, Euler re-denoise on its sigmas."""

from __future__ import annotations

import abc

from npnet.diffusion.families.base import FLOW, Family
from npnet.diffusion.schedulers import DEFAULT_SCHEDULER
from npnet.errors import UserError

FLOW_SOLVER = "flow-euler"


class FlowFamily(Family):
    scheduler_kind = FLOW
    redenoise_solvers = (FLOW_SOLVER,)
    collect_scheduler = "default"  # the model's own FlowMatchEulerDiscreteScheduler

    def check_scheduler(self, name: str) -> str:
        if name != DEFAULT_SCHEDULER:
            raise UserError(
                f"scheduler {name!r} is a noise-prediction sampler; {self.label} model is flow matching and "
                "samples with its own FlowMatchEulerDiscreteScheduler: use scheduler 'default'"
            )
        return name

    def scheduler_names(self) -> list[str]:
        return [DEFAULT_SCHEDULER]

    def check_mode(self, mode: str) -> str:
        if mode != "correct":
            raise UserError(
                f"redenoise_mode {mode!r} reproduces the official DDIM code's timestep offset; flow-matching "
                "re-denoise has only the 'correct' round trip (Euler sigma_0 -> sigma_1 and back)"
            )
        return mode

    @abc.abstractmethod
    def set_flow_timesteps(self, pipe, scheduler, steps: int, latent_hw: tuple[int, int]) -> None:
        """Set ``scheduler`` (a copy) to the sigmas the pipeline itself samples ``steps`` steps with for
        unpacked latents of size ``latent_hw`` (static shift, or resolution-dependent ``mu``)."""

    def first_timestep(self, view, steps: int) -> int:
        """Flow matching starts at sigma = 1 for every shift and mu: timestep 1000 * sigma_0."""
        scheduler = type(view.scheduler).from_config(view.scheduler.config)
        self.set_flow_timesteps(view, scheduler, steps, (64, 64))  # sigma_0 = 1 whatever the size
        return int(round(float(scheduler.timesteps[0])))
