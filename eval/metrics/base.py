"""The scorer interface every preference metric implements (paper Appendix A.2).

A scorer maps (images, prompts) to one float per image, in the units the paper reports. Models
load lazily on the first ``score`` call (or an explicit ``load()``), inputs are scored in chunks of
``batch_size``, and the result is always a float32 CPU tensor of shape (B,).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from npnet.errors import UserError


def _as_pil(image: object, index: int) -> Image.Image:
    """Accept a PIL image or an (H, W, 3) uint8 array; return an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
        return Image.fromarray(image, mode="RGB")
    raise UserError(
        f"image {index} is a {type(image).__name__}; scorers take PIL images "
        "(or (H, W, 3) uint8 numpy arrays) — convert tensors with torchvision.transforms.functional.to_pil_image"
    )


def check_inputs(images: Sequence[object], prompts: Sequence[str]) -> tuple[list[Image.Image], list[str]]:
    """Validate a batch: same length, non-empty, PIL images and string prompts."""
    if isinstance(prompts, str):
        raise UserError("prompts must be a list of strings (one per image), not a single string")
    images, prompts = list(images), list(prompts)
    if len(images) != len(prompts):
        raise UserError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise UserError(f"prompt {i} is a {type(prompt).__name__}; prompts must be strings")
    return [_as_pil(image, i) for i, image in enumerate(images)], prompts


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class Scorer(ABC):
    """A per-image metric: ``score(images, prompts) -> tensor[B]`` (float32, CPU).

    Subclasses set the class attributes, implement ``_load`` (build the model on ``self.device``
    with ``self.dtype``) and ``_score_batch`` (one chunk of at most ``batch_size`` items).
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    units: ClassVar[str]
    pairwise: ClassVar[bool] = False
    needs_prompts: ClassVar[bool] = True

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
    ) -> None:
        if not isinstance(dtype, torch.dtype):
            raise UserError(f"dtype must be a torch.dtype (e.g. torch.float16), got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = check_batch_size(batch_size)
        self._loaded = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"{type(self).__name__}(name={self.name!r}, device={self.device}, dtype={self.dtype}, {state})"

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> Scorer:
        """Build the model and read its weights once (thread-safe); later calls are no-ops."""
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    @abstractmethod
    def _load(self) -> None:
        """Build the model on ``self.device`` in ``self.dtype`` and load its weights."""

    @abstractmethod
    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        """Score one chunk; returns shape (b,) on any device/dtype."""

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """Score each (image, prompt) pair; returns a float32 CPU tensor of shape (B,)."""
        images, prompts = check_inputs(images, prompts)
        if not images:
            return torch.zeros(0, dtype=torch.float32)
        self.load()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                out = self._score_batch(images[start:stop], prompts[start:stop])
                chunks.append(out.detach().reshape(-1).to(device="cpu", dtype=torch.float32))
        scores = torch.cat(chunks)  # (B,)
        if scores.shape != (len(images),):
            raise RuntimeError(f"{self.name} returned {tuple(scores.shape)} scores for {len(images)} images")
        return scores

    __call__ = score


class PairwiseScorer(Scorer):
    """A preference model whose pairwise probability is a softmax over per-image logits (e.g. MPS).

    ``score`` gives each image's logit; ``compare`` gives P(image a preferred over image b) =
    exp(s_a) / (exp(s_a) + exp(s_b)) = sigmoid(s_a - s_b), the two probabilities summing to 1.
    """

    pairwise: ClassVar[bool] = True

    def compare(
        self,
        images_a: Sequence[Image.Image],
        images_b: Sequence[Image.Image],
        prompts: Sequence[str],
    ) -> torch.Tensor:
        """P(a preferred over b) for each pair; float32 CPU tensor of shape (B,)."""
        if len(images_a) != len(images_b):
            raise UserError(
                f"compare needs equal-length lists, got {len(images_a)} and {len(images_b)} images"
            )
        scores_a = self.score(images_a, prompts)  # (B,)
        scores_b = self.score(images_b, prompts)  # (B,)
        return torch.sigmoid(scores_a - scores_b)
