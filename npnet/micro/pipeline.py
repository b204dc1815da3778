"""Load the shipped micro generator (assets/micro/generator) offline, and its default sampling settings."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline

from npnet.micro.grammar import IMAGE_SIZE

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "micro"
GENERATOR_DIR = ASSETS_DIR / "generator"
MICRO_STEPS = 20
MICRO_GUIDANCE_SCALE = 5.0
MICRO_WIDTH = IMAGE_SIZE
MICRO_HEIGHT = IMAGE_SIZE
MICRO_TEXT_DIM = 64
MICRO_LATENT_SIZE = 8
TRAIN_COMMAND = (
    "python -m npnet.micro --threads 1 train-generator --out runs/micro_generator --vae-steps 700 "
    "--unet-steps 6000 --seed 0 --export-to assets/micro/generator"
)


def load_micro_pipeline(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: str | Path | None = None
) -> StableDiffusionXLPipeline:
    """The trained micro StableDiffusionXLPipeline, loaded with ``local_files_only=True`` (never downloads)."""
    folder = Path(path) if path is not None else GENERATOR_DIR
    if not (folder / "model_index.json").exists():
        raise ValueError(
            f"no micro generator at {folder} (model_index.json missing); produce it with `{TRAIN_COMMAND}` "
            "or pass path= to a folder written by that command"
        )
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
