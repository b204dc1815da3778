"""CLIPScore (Hessel et al. 2021): w * max(cos(image, text), 0) with w = 2.5 (paper: ~0.8).

Model: transformers ``CLIPModel`` ``openai/clip-vit-large-patch14`` (ViT-L/14) by default. The
reference implementation the paper follows (jmhessel/clipscore) uses ViT-B/32 and prefixes each
caption with "A photo depicts"; pass ``model="openai/clip-vit-base-patch32"`` to match its
backbone. The prefix is on by default, as in the reference; ``prefix=""`` turns it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image

from eval.metrics.base import Scorer
from eval.metrics.hf_clip import image_embeds, load_clip_model, load_clip_processor, text_embeds

CLIPSCORE_MODEL = "openai/clip-vit-large-patch14"
CLIPSCORE_PREFIX = "A photo depicts "


class CLIPScoreScorer(Scorer):
    """CLIPScore = w * max(cos(E_img, E_txt), 0)."""

    name: ClassVar[str] = "clipscore"
    units: ClassVar[str] = "2.5 x max(cos(image, text), 0), CLIP ViT-L/14 (paper: ~0.8)"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        model: str | Path = CLIPSCORE_MODEL,
        processor: str | Path | None = None,
        weight: float = 2.5,
        prefix: str = CLIPSCORE_PREFIX,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        self.model_source = model
        self.processor_source = model if processor is None else processor
        self.weight = float(weight)
        self.prefix = prefix
        self.cache_dir = cache_dir

    def _load(self) -> None:
        self.model = load_clip_model(
            self.model_source,
            what="CLIPScore model",
            device=self.device,
            dtype=self.dtype,
            cache_dir=self.cache_dir,
        )
        self.processor = load_clip_processor(
            self.processor_source, what="CLIPScore processor", cache_dir=self.cache_dir
        )

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        img = image_embeds(self.model, self.processor, images, self.device, self.dtype)  # (b, D)
        txt = text_embeds(
            self.model, self.processor, [self.prefix + p for p in prompts], self.device
        )  # (b, D)
        return self.weight * (img * txt).sum(dim=-1).clamp(min=0.0)  # (b,)
