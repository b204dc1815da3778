"""Load the shipped micro flow generator (assets/micro/flow-generator) offline; its default sampling settings."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusion3Pipeline

from npnet.errors import UserError
from npnet.paths import MICRO_ASSETS
from npnet.worlds.micro_flow.null_tokens import compress_null_runs

FLOW_GENERATOR_DIR = MICRO_ASSETS / "flow-generator"
FLOW_NPNET_FILE = MICRO_ASSETS / "npnet-flow.safetensors"  # written by `cli train`, copied here (README)
MICRO_FLOW_GUIDANCE_SCALE = 5.0
# The micro-flow preset's few-step setting and re-denoise w_l, chosen on TRAINING captions only by
# `python -m cli micro-flow choose-steps` / `choose-wl` (rules in cli.micro_flow_select) on the shipped
# generator (transformer step 22500): standard accuracy on 120 training captions x 2 seeds was 35.4% at 6
# steps, shift 1.0 (target 0.35; shift 3.0: 22.5%); reports in the README's micro-flow section.
MICRO_FLOW_STEPS = 6
MICRO_FLOW_SHIFT = 1.0  # FlowMatchEulerDiscreteScheduler's static shift (the trained generator's config)
# choose-wl (80 training captions x seeds 200, 201 at 6 steps): inversion 47.5% at w_l 7 vs standard 35.0%
# (w_l 5: 45.0%, 9: 40.6%, 12: 22.5%)
MICRO_FLOW_REDENOISE_CFG = 7.0
TRAIN_COMMAND = (
    "python -m cli micro-flow --threads 1 train-generator --out runs/micro_flow_generator --vae-steps 300 "
    "--flow-steps 30000 --seed 0 --export-to assets/micro/flow-generator"
)


def load_micro_flow_pipeline(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None
) -> StableDiffusion3Pipeline:
    """The trained micro StableDiffusion3Pipeline (no T5) from ``path`` (default: the shipped one), offline.

    Sampling is the pipeline's own (``FlowMatchEulerDiscreteScheduler``, default ``max_sequence_length`` 256)."""
    folder = Path(path) if path is not None else FLOW_GENERATOR_DIR
    if not (folder / "model_index.json").exists():
        raise UserError(
            f"no micro flow generator at {folder} (model_index.json missing); produce it with "
            f"`{TRAIN_COMMAND}` or pass path= to a folder written by that command"
        )
    pipe = StableDiffusion3Pipeline.from_pretrained(
        folder, local_files_only=True, dtype=dtype, text_encoder_3=None, tokenizer_3=None
    )
    pipe.set_progress_bar_config(disable=True)
    compress_null_runs(pipe.transformer)  # the 256 zero T5 tokens computed as one: same images, ~9x cheaper
    return pipe.to(device)
