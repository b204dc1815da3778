"""CLIPScore (Hessel et al. 2021): w * max(cos(image, text), 0) with w = 2.5 (paper: ~0.8).

Model: transformers ``CLIPModel`` ``openai/clip-vit-base-patch32`` (ViT-B/32), the backbone of the
reference implementation the paper follows (App. A.2 footnote: jmhessel/clipscore, ``clipscore.py``,
OpenAI ``clip`` ViT-B/32); ``model="openai/clip-vit-large-patch14"`` gives a ViT-L/14 variant. Everything
else follows the reference, so the scores equal its ``get_clip_score`` (to 5e-7 in float32 on the same
weights, tests/test_parity_hfclip.py):

- each caption is prefixed with "A photo depicts " (``prefix=""`` turns it off; a prefix without a
  trailing space gets one, as in the reference's ``CLIPCapDataset``);
- the text is cleaned as OpenAI's ``clip.tokenize`` does (``openai_clean``: ``ftfy.fix_text``,
  ``html.unescape`` twice, whitespace runs to one space, strip, lower case), so "fish &amp; chips"
  scores as "fish & chips" and curly quotes as straight ones; transformers' CLIP tokenizer does
  none of this by itself (it lower-cases and collapses whitespace only);
- images go through OpenAI's transform (``hf_clip.openai_pixels``: torchvision bicubic resize of
  the shortest side, centre crop with the offset rounded half to even), not the transformers
  processor, whose crop can sit one pixel off;
- cosines are clipped at 0 and scaled by ``weight`` = 2.5.

Precision: the reference ran OpenAI CLIP in float16 on GPU (the paper's numbers; on CPU it runs
float32 and warns that results then differ slightly from the paper's). The project's benchmark builds
scorers in float32, the computation the float16 run approximates, so numbers do not depend on which
GPU kernels a float16 run happened to use; ``dtype=torch.float16`` is there for speed.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import ClassVar

import ftfy  # a dependency of open-clip-torch; OpenAI's clip.tokenize applies ftfy.fix_text
import regex
import torch
from PIL import Image

from eval.metrics.base import Scorer
from eval.metrics.hf_clip import (
    image_embeds,
    load_clip_model,
    load_clip_processor,
    openai_pixels,
    text_embeds,
)

CLIPSCORE_MODEL = "openai/clip-vit-base-patch32"
CLIPSCORE_PREFIX = "A photo depicts "


def openai_clean(text: str) -> str:
    """OpenAI ``clip.simple_tokenizer``'s cleanup: ``whitespace_clean(basic_clean(text)).lower()``."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()  # basic_clean
    return regex.sub(r"\s+", " ", text).strip().lower()  # whitespace_clean, then lower()


class CLIPScoreScorer(Scorer):
    """CLIPScore = w * max(cos(E_img, E_txt), 0)."""

    name: ClassVar[str] = "clipscore"
    units: ClassVar[str] = "2.5 x max(cos(image, text), 0), CLIP ViT-B/32 (paper: ~0.8)"

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
        self.prefix = prefix if not prefix or prefix.endswith(" ") else prefix + " "
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
        pixels = openai_pixels(self.processor, images)  # (b, 3, H, W)
        img = image_embeds(self.model, pixels, self.device, self.dtype)  # (b, D)
        captions = [openai_clean(self.prefix + prompt) for prompt in prompts]
        txt = text_embeds(self.model, self.processor, captions, self.device)  # (b, D)
        return self.weight * (img * txt).sum(dim=-1).clamp(min=0.0)  # (b,)
