"""Load the shipped micro generator (assets/micro/generator) offline; the world's default sampling settings."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline

from npnet.errors import UserError
from npnet.paths import MICRO_ASSETS

GENERATOR_DIR = MICRO_ASSETS / "generator"
NPNET_FILE = MICRO_ASSETS / "npnet.safetensors"
MICRO_STEPS = 20  # the micro preset's sampling defaults (npnet.diffusion.presets reads them here)
MICRO_GUIDANCE_SCALE = 5.0
MICRO_TURBO_STEPS = 5  # the few-step preset: DDIM with trailing spacing (see npnet.diffusion.presets)
MICRO_TURBO_REDENOISE_CFG = 12.0  # w_l chosen on training captions: 5 -> 51%, 7 -> 58%, 9 -> 66%, 12 -> 79% (std 41%)
TRAIN_COMMAND = (
    "python -m cli micro --threads 1 train-generator --out runs/micro_generator --vae-steps 700 "
    "--unet-steps 6000 --seed 0 --export-to assets/micro/generator"
)


def load_micro_pipeline(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None
) -> StableDiffusionXLPipeline:
    """The trained micro StableDiffusionXLPipeline from ``path`` (default: the shipped one), never downloading."""
    folder = Path(path) if path is not None else GENERATOR_DIR
    if not (folder / "model_index.json").exists():
        raise UserError(
            f"no micro generator at {folder} (model_index.json missing); produce it with `{TRAIN_COMMAND}` "
            "or pass path= to a folder written by that command"
        )
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
