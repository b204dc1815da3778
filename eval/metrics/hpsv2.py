"""HPSv2.1: Human Preference Score v2.1 (Wu et al. 2023), reported as 100 x cos (paper: ~26-34).

Architecture: open_clip ViT-H-14 (open_clip ships the BPE vocabulary, so no tokenizer download;
no LAION weights are fetched), weights from the official ``HPS_v2.1_compressed.pt`` in the hub repo
``xswu/HPSv2``, passed to ``open_clip.create_model`` as a file: open_clip's ``load_checkpoint``
reads it with ``torch.load(weights_only=True)``, unwraps the ``{'state_dict': ...}`` nesting and a
``module.`` prefix, and loads strictly.
Preprocessing is ``hpsv2`` 1.2.0's eval transform (``clip_utils.hps_pixels``): ``ToTensor``, then
``ResizeMaxSize(224)`` on the float tensor (longest side to 224, torchvision antialiased bicubic,
no clamping; other side ``round``ed), centre-pad with 0, OpenAI CLIP normalisation.
Score = 100 * <f_img/|f_img|, f_txt/|f_txt|> (open_clip normalises both features); the reference
``hpsv2.score`` returns the plain cosine.
Precision: the reference runs the fp32 model under ``torch.cuda.amp.autocast()`` (fp16 matmuls on
GPU; a no-op on CPU). This scorer runs in the ``dtype`` it is built with, without autocast; the
project's benchmark builds it in float32. Parity with ``hpsv2.score`` (float32, CPU, random
weights): within 1e-4 in cos, measured ~1e-7 (tests/test_parity_openclip.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import open_clip
import torch
from PIL import Image

from eval.metrics.base import Scorer
from eval.metrics.clip_utils import hps_pixels
from eval.metrics.hub import resolve_file
from npnet.errors import UserError

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}


class HPSv2Scorer(Scorer):
    """HPSv2 (v2.1 by default) as 100 x cosine similarity of open_clip ViT-H-14 features."""

    name: ClassVar[str] = "hpsv2"
    units: ClassVar[str] = "100 x cos(image, text), HPSv2.1 (paper: ~26-34)"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        checkpoint: str | Path = HPS_REPO,
        version: str = "v2.1",
        arch: str = "ViT-H-14",
        arch_overrides: dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        if version not in HPS_FILES:
            raise UserError(f"unknown HPS version {version!r}; choose one of {sorted(HPS_FILES)}")
        self.checkpoint = checkpoint
        self.version = version
        self.arch = arch
        self.arch_overrides = dict(arch_overrides or {})
        self.cache_dir = cache_dir

    def _load(self) -> None:
        path = resolve_file(
            self.checkpoint, HPS_FILES[self.version], what=f"HPSv2 {self.version}", cache_dir=self.cache_dir
        )
        try:
            model = open_clip.create_model(
                self.arch,
                pretrained=str(path),
                weights_only=True,
                output_dict=True,
                pretrained_text=False,
                **self.arch_overrides,
            )
        except RuntimeError as err:
            raise UserError(f"HPSv2 checkpoint {path} does not match open_clip {self.arch}: {err}") from err
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        self.image_size = int(self.model.visual.image_size[0])

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        pixels = hps_pixels(images, self.image_size)  # (b, 3, 224, 224)
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        tokens = self.tokenizer(prompts).to(self.device)  # (b, 77)
        out = self.model(pixels, tokens)
        cosine = (out["image_features"] * out["text_features"]).sum(dim=-1)  # (b,)
        return 100.0 * cosine
