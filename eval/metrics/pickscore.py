"""PickScore (Kirstain et al. 2023): logit_scale x cos(image, text) (paper: ~21-23).

Model: transformers ``CLIPModel`` from ``yuvalkirstain/PickScore_v1``; processor (image
transform + tokenizer) from ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, as in the official
PickScore example. Both may be local directories laid out like those hub repos.

Reference: the README example of yuvalkirstain/PickScore (transformers 4.27 ``AutoProcessor`` +
``AutoModel``): ``logit_scale.exp() * <img/|img|, txt/|txt|>``. On the same weights the project
matches it to 4e-6 (tests/test_parity_hfclip.py; float32, CPU) because it runs the same pipeline:
the PIL image processor (``hf_clip.load_clip_processor``) and transformers' fast CLIP tokenizer,
which, like the reference's, does not unescape HTML entities or run ftfy ("fish &amp; chips" stays
as written, unlike in CLIPScore, whose reference tokenizer is OpenAI's).

Precision: the reference runs in float32 (``AutoModel.from_pretrained`` default, on GPU), as does the
project's benchmark.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image

from eval.metrics.base import Scorer
from eval.metrics.hf_clip import (
    image_embeds,
    load_clip_model,
    load_clip_processor,
    processor_pixels,
    text_embeds,
)
from eval.metrics.hub import resolve_dir

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScoreScorer(Scorer):
    """PickScore v1: exp(logit_scale) * <img/|img|, txt/|txt|>."""

    name: ClassVar[str] = "pickscore"
    units: ClassVar[str] = "logit_scale x cos(image, text), PickScore v1 (paper: ~21-23)"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        model: str | Path = PICKSCORE_MODEL,
        processor: str | Path = PICKSCORE_PROCESSOR,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        self.model_source = model
        self.processor_source = processor
        self.cache_dir = cache_dir

    def _load(self) -> None:
        # resolve both repos before building anything, so a missing download is reported at once
        model_dir = resolve_dir(self.model_source, what="PickScore model", cache_dir=self.cache_dir)
        processor_dir = resolve_dir(
            self.processor_source,
            what="PickScore processor",
            required=(),
            weights=False,
            cache_dir=self.cache_dir,
        )
        self.model = load_clip_model(model_dir, what="PickScore model", device=self.device, dtype=self.dtype)
        self.processor = load_clip_processor(processor_dir, what="PickScore processor")

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        pixels = processor_pixels(self.processor, images)  # (b, 3, H, W)
        img = image_embeds(self.model, pixels, self.device, self.dtype)  # (b, D)
        txt = text_embeds(self.model, self.processor, prompts, self.device)  # (b, D)
        return self.model.logit_scale.exp().float() * (img * txt).sum(dim=-1)  # (b,)
