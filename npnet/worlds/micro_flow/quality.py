"""Verifier accuracy of the micro flow generator by step count (standard sampling, the pipeline's own Euler)."""

from __future__ import annotations

from pathlib import Path

from npnet.worlds.micro.quality import CORRECT_THRESHOLD, score_captions
from npnet.worlds.micro_flow.pipeline import MICRO_FLOW_GUIDANCE_SCALE, load_micro_flow_pipeline


def check_flow_generator(
    path: str | Path | None = None,
    n_prompts: int = 85,
    seeds: int = 4,
    steps: list[int] | tuple[int, ...] = (20,),
    guidance_scale: float | None = None,
    shift: float | None = None,
    split: str = "heldout",
    threshold: float = CORRECT_THRESHOLD,
    grid: str | Path | None = None,
) -> dict:
    """One ``score_captions`` report per step count (the grid shows the last), on the split's captions x seeds.

    ``shift`` replaces the FlowMatchEulerDiscreteScheduler's static shift (None: the saved one)."""
    guidance_scale = MICRO_FLOW_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
    pipe = load_micro_flow_pipeline(path=path)
    if shift is not None:
        pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, shift=shift)
    reports = [
        score_captions(
            pipe, split, n_prompts, seeds, n, guidance_scale, threshold, grid if i == len(steps) - 1 else None
        )
        for i, n in enumerate(steps)
    ]
    return {"shift": pipe.scheduler.config.shift, "by_steps": reports}
