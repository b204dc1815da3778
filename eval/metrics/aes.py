"""AES: LAION improved aesthetic predictor (Schuhmann 2022), a 1-10 rating (paper: ~5-6).

Backbone: CLIP ViT-L/14 image embeddings (transformers ``openai/clip-vit-large-patch14``, the
same weights as OpenAI's ``clip.load("ViT-L/14")``), L2-normalised, into the released MLP
768 -> 1024 -> 128 -> 64 -> 16 -> 1 (dropouts are inactive at eval). MLP weights:
``sac+logos+ava1-l14-linearMSE.pth`` (a plain state dict, read with ``weights_only=True``)
from the hub mirror ``camenduru/improved-aesthetic-predictor`` of
github.com/christophschuhmann/improved-aesthetic-predictor.

Reference: that repo's ``simple_inference.py``: ``clip.load("ViT-L/14")`` and its ``preprocess``
(OpenAI's transform, reproduced by ``hf_clip.openai_pixels``: torchvision bicubic resize and a
centre crop whose offset rounds half to even, which the transformers processor does not), image
features L2-normalised in numpy, then the MLP. AES reads no text. On the same weights the project
matches it to 2e-7 (tests/test_parity_hfclip.py; float32, CPU).

Precision: the reference ran CLIP in float16 on GPU (``clip.load`` keeps fp16 weights on CUDA, and
the fp16 features are normalised in numpy) and the MLP in float32. The project's benchmark builds
the scorer in float32, the computation the float16 run approximates, so scores do not depend on
which GPU kernels a float16 run happened to use; ``dtype=torch.float16`` is there for speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from torch import nn

from eval.metrics.base import Scorer
from eval.metrics.hf_clip import image_embeds, load_clip_model, load_clip_processor, openai_pixels
from eval.metrics.hub import resolve_file
from npnet.errors import UserError

AES_BACKBONE = "openai/clip-vit-large-patch14"
AES_MLP_REPO = "camenduru/improved-aesthetic-predictor"
AES_MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"


class AestheticMLP(nn.Module):
    """The LAION improved-aesthetic-predictor head; state-dict keys ``layers.{0,2,4,6,7}.*``."""

    def __init__(self, in_dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds).squeeze(-1)  # (b, D) -> (b,)


def load_aesthetic_mlp(path: Path) -> AestheticMLP:
    """Read the released .pth (``layers.*`` keys; a bare Sequential's ``0.*`` keys are accepted)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise UserError(f"AES MLP file {path} does not hold a state dict")
    state = {(key if key.startswith("layers.") else f"layers.{key}"): value for key, value in state.items()}
    if "layers.0.weight" not in state:
        raise UserError(f"AES MLP file {path} has no first Linear layer (keys: {sorted(state)[:6]})")
    mlp = AestheticMLP(in_dim=int(state["layers.0.weight"].shape[1]))
    try:
        mlp.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"AES MLP file {path} does not match the LAION head: {err}") from err
    return mlp


class AestheticScorer(Scorer):
    """LAION aesthetic score = MLP(normalised CLIP ViT-L/14 image embedding)."""

    name: ClassVar[str] = "aes"
    units: ClassVar[str] = "LAION improved aesthetic predictor rating, 1-10 (paper: ~5-6)"
    needs_prompts: ClassVar[bool] = False

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        backbone: str | Path = AES_BACKBONE,
        mlp: str | Path = AES_MLP_REPO,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        self.backbone_source = backbone
        self.mlp_source = mlp
        self.cache_dir = cache_dir

    def _load(self) -> None:
        mlp_path = resolve_file(self.mlp_source, AES_MLP_FILE, what="AES MLP", cache_dir=self.cache_dir)
        self.mlp = load_aesthetic_mlp(mlp_path).to(self.device).eval()
        self.clip = load_clip_model(
            self.backbone_source,
            what="AES CLIP backbone",
            device=self.device,
            dtype=self.dtype,
            cache_dir=self.cache_dir,
        )
        self.processor = load_clip_processor(
            self.backbone_source, what="AES CLIP processor", cache_dir=self.cache_dir
        )
        width = self.clip.config.projection_dim
        if self.mlp.layers[0].in_features != width:
            raise UserError(
                f"AES MLP expects {self.mlp.layers[0].in_features}-d embeddings but the backbone gives {width}"
            )

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        pixels = openai_pixels(self.processor, images)  # (b, 3, 224, 224)
        embeds = image_embeds(self.clip, pixels, self.device, self.dtype)  # (b, 768)
        return self.mlp(embeds)  # (b,) float32
