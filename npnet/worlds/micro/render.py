"""Render micro-world scenes to 64x64 RGB images and stream seeded (image, caption) pairs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw

from npnet.errors import UserError
from npnet.worlds.micro.grammar import BACKGROUND, IMAGE_SIZE, PALETTE, Scene, sample_scene


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, colour: str, x: float, y: float, size: float) -> None:
    half = size / 2
    fill = PALETTE[colour]
    if shape == "circle":
        draw.ellipse([x - half, y - half, x + half, y + half], fill=fill)
    elif shape == "square":
        draw.rectangle([x - half, y - half, x + half, y + half], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x - half, y + half), (x + half, y + half), (x, y - half)], fill=fill)
    else:
        raise UserError(f"unknown shape {shape!r}")


def render_scene(scene: Scene) -> Image.Image:
    """Flat-colour shapes on a plain white 64x64 background."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj.shape, obj.colour, obj.x, obj.y, obj.size)
    return image


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images -> float tensor in [-1, 1]."""
    array = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])  # (B, H, W, 3)
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2)  # (B, 3, H, W)
    return tensor / 127.5 - 1.0


def sample_batch(
    rng: np.random.Generator, batch_size: int, split: str = "train"
) -> tuple[torch.Tensor, list[str]]:
    """A batch of rendered scenes as a (B, 3, 64, 64) tensor in [-1, 1] and their captions."""
    scenes = [sample_scene(rng, split) for _ in range(batch_size)]
    return to_tensor([render_scene(s) for s in scenes]), [s.caption for s in scenes]


def stream(seed: int, split: str = "train") -> Iterator[tuple[Image.Image, Scene]]:
    """Infinite seeded stream of (image, scene) pairs."""
    rng = np.random.default_rng(seed)
    while True:
        scene = sample_scene(rng, split)
        yield render_scene(scene), scene
