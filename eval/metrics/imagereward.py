"""ImageReward (Xu et al. 2023): standardised reward x 100 (paper: ~-100..140).

Network: imscore's pure-PyTorch port of ImageReward (BLIP ViT-L/16 image encoder, BERT-base text
encoder with cross-attention, MLP head; reward = (mlp(h_cls) - 0.16717) / 1.03334). imscore's own
``ImageReward.__init__`` downloads ``bert-base-uncased`` inside the constructor and hard-codes the
sizes, so it is wrapped at the narrowest point: this module assembles the same submodules
(``imscore.imreward.vit.VisionTransformer``, ``imscore.imreward.bert.BertModel``,
``imscore.imreward.model.MLP``) under the same state-dict names from an explicit architecture, and
loads ``model.safetensors`` of the hub repo ``RE-N-Y/ImageReward`` (imscore's converted weights)
plus the tokenizer from ``google-bert/bert-base-uncased`` (both may be local directories).
The original ``image-reward`` package is not used: it pins timm 0.6.13 and fails on transformers 5.
Preprocessing is the package's ``_transform(224)`` (``clip_utils.resize_center_crop`` +
``to_normalized_tensor``): PIL bicubic ``Resize(224)`` of the shortest side, ``CenterCrop(224)``,
``ToTensor``, OpenAI CLIP normalisation; prompts are BLIP-tokenised, padded/truncated to 35 tokens.
(The reference converts to RGB after cropping, this project before resizing: the same on RGB input.)
Precision: the reference loads its float32 checkpoint as stored and scores without autocast, on GPU
too. This scorer runs in the ``dtype`` it is built with; the project's benchmark builds it in
float32. Parity with ``ImageReward.load(...).score`` (float32, CPU, random weights): rewards within
1e-4, measured ~1e-6 (tests/test_parity_openclip.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from eval.metrics.base import Scorer
from eval.metrics.clip_utils import resize_center_crop, to_normalized_tensor
from eval.metrics.hub import resolve_dir, resolve_file
from npnet.errors import UserError

IMAGEREWARD_REPO = "RE-N-Y/ImageReward"
IMAGEREWARD_FILE = "model.safetensors"
IMAGEREWARD_TOKENIZER = "google-bert/bert-base-uncased"
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
_BERT_BASE = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=512,
    vocab_size=30524,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    type_vocab_size=2,
)


@dataclass(frozen=True)
class ImageRewardArch:
    """Sizes of the ImageReward network (defaults: the released ViT-L/16 + BERT-base model)."""

    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 1024
    vision_depth: int = 24
    vision_heads: int = 16
    bert: dict = field(default_factory=lambda: dict(_BERT_BASE))
    max_text_length: int = 35


class _BLIP(nn.Module):
    def __init__(self, arch: ImageRewardArch) -> None:
        from imscore.imreward.bert import BertModel
        from imscore.imreward.vit import VisionTransformer
        from transformers import BertConfig

        super().__init__()
        self.visual_encoder = VisionTransformer(
            img_size=arch.image_size,
            patch_size=arch.patch_size,
            embed_dim=arch.vision_width,
            depth=arch.vision_depth,
            num_heads=arch.vision_heads,
        )
        config = BertConfig.from_dict({**arch.bert, "add_cross_attention": True})
        config.encoder_width = arch.vision_width
        self.text_encoder = BertModel(config=config)
        self.vision_proj = nn.Linear(arch.vision_width, 256)
        self.text_proj = nn.Linear(config.hidden_size, 256)


class ImageRewardNet(nn.Module):
    """Same module tree (and state-dict names) as ``imscore.imreward.model.ImageReward``."""

    def __init__(self, arch: ImageRewardArch) -> None:
        from imscore.imreward.model import MLP

        super().__init__()
        self.blip = _BLIP(arch)
        self.mlp = MLP(arch.bert["hidden_size"])

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        embeds = self.blip.visual_encoder(pixels)  # (b, 1 + N, vision_width)
        image_mask = torch.ones(embeds.shape[:2], device=embeds.device, dtype=torch.bool)  # (b, 1 + N)
        hidden = self.blip.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=embeds,
            encoder_attention_mask=image_mask,
        )  # (b, T, hidden)
        reward = self.mlp(hidden[:, 0, :]).squeeze(-1)  # (b,)
        return (reward - REWARD_MEAN) / REWARD_STD


def load_imagereward_tokenizer(source: str | Path, cache_dir=None):
    """bert-base-uncased + BLIP's [DEC] bos and [ENC] tokens, as ImageReward's BLIP does."""
    from transformers import BertTokenizer

    local = resolve_dir(
        source, what="ImageReward tokenizer", required=("vocab.txt",), weights=False, cache_dir=cache_dir
    )
    tokenizer = BertTokenizer.from_pretrained(local, local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


class ImageRewardScorer(Scorer):
    """ImageReward v1.0 reward, standardised, x 100 as in the paper's tables."""

    name: ClassVar[str] = "imagereward"
    units: ClassVar[str] = "100 x standardised ImageReward v1.0 reward (paper: ~-100..140)"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        checkpoint: str | Path = IMAGEREWARD_REPO,
        tokenizer: str | Path = IMAGEREWARD_TOKENIZER,
        arch: ImageRewardArch | dict | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        self.checkpoint = checkpoint
        self.tokenizer_source = tokenizer
        self.arch = ImageRewardArch(**arch) if isinstance(arch, dict) else (arch or ImageRewardArch())
        self.cache_dir = cache_dir

    def _load(self) -> None:
        path = resolve_file(self.checkpoint, IMAGEREWARD_FILE, what="ImageReward", cache_dir=self.cache_dir)
        self.tokenizer = load_imagereward_tokenizer(self.tokenizer_source, self.cache_dir)
        if len(self.tokenizer) != self.arch.bert["vocab_size"]:
            raise UserError(
                f"ImageReward tokenizer has {len(self.tokenizer)} tokens but the text encoder expects "
                f"{self.arch.bert['vocab_size']}; use the bert-base-uncased vocabulary"
            )
        net = ImageRewardNet(self.arch)
        try:
            net.load_state_dict(load_file(str(path)), strict=True)
        except RuntimeError as err:
            raise UserError(f"ImageReward weights {path} do not match {asdict(self.arch)}: {err}") from err
        self.net = net.to(device=self.device, dtype=self.dtype).eval()

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        size = self.arch.image_size
        pixels = to_normalized_tensor([resize_center_crop(image, size) for image in images])
        pixels = pixels.to(device=self.device, dtype=self.dtype)  # (b, 3, 224, 224)
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=self.arch.max_text_length,
            return_tensors="pt",
        )
        reward = self.net(pixels, tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device))
        return 100.0 * reward.float()  # (b,)
