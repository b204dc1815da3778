"""TOY scorers: offline, weight-free image statistics for tests and smoke runs.

They are NOT preference metrics and say nothing about the paper's claims; they exist so the
benchmark runner, statistics and charts can be exercised end to end without any model weights.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from eval.metrics.base import Scorer


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0  # (H, W, 3) in [0, 1]


class ToyBrightness(Scorer):
    """TOY: mean luma (ITU-R BT.601) of the image in [0, 1]; ignores the prompt."""

    name: ClassVar[str] = "toy-brightness"
    units: ClassVar[str] = "mean luma in [0, 1] (toy)"
    needs_prompts: ClassVar[bool] = False

    def _load(self) -> None:
        self._weights = np.array([0.299, 0.587, 0.114])

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        values = [float((_pixels(image) @ self._weights).mean()) for image in images]
        return torch.tensor(values, dtype=torch.float64)


class ToyColorfulness(Scorer):
    """TOY: Hasler & Suesstrunk (2003) colourfulness, sigma_rgyb + 0.3 * mu_rgyb on [0, 1] pixels."""

    name: ClassVar[str] = "toy-colorfulness"
    units: ClassVar[str] = "Hasler-Suesstrunk colourfulness on [0, 1] pixels (toy)"
    needs_prompts: ClassVar[bool] = False

    def _load(self) -> None:
        self._ready = True

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        values = []
        for image in images:
            rgb = _pixels(image)
            rg = rgb[..., 0] - rgb[..., 1]  # (H, W)
            yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]  # (H, W)
            sigma = np.hypot(rg.std(), yb.std())
            mu = np.hypot(rg.mean(), yb.mean())
            values.append(float(sigma + 0.3 * mu))
        return torch.tensor(values, dtype=torch.float64)
