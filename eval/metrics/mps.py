"""MPS (Zhang et al. 2024): Multi-dimensional Preference Score, overall condition.

MPS is pairwise: P(a preferred over b) = softmax([s_a, s_b])[0] where s = logit_scale x cos(text,
image-conditioned feature), as in the official ``infer_example``. ``score`` returns the per-image
logit s; ``compare`` (and the statistics, via sigmoid(s_a - s_b)) give the preference, which the
paper reports as the % by which a method is preferred over standard sampling (standard = 50%).

Weights: the official checkpoint is a pickled whole model on Google Drive (not loadable with
``weights_only``), so this uses imscore's safetensors conversion ``RE-N-Y/mpsv1``
(``model.safetensors``, keys ``mps.model.*`` = a CLIP ViT-H-14 and ``mps.cross_model.*``).
imscore's ``MPS.__init__`` downloads the full CLIP-ViT-H-14 weights inside the constructor and
casts inputs to fp16, so it is wrapped at the narrowest point: the CLIP architecture comes from
``config.json`` of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (plus its tokenizer and image
processor, no weights), the cross model is ``imscore.mps.cross.CrossModel``, and the forward
follows the official ``CLIPModel.forward`` with explicit dtype. The text-condition similarity is
normalised by each sample's own maximum (the official code scores one prompt at a time, so its
batch-wide maximum is the sample's; imscore's batch-wide maximum would make a score depend on its
batch-mates).

Condition mask: text tokens whose normalised similarity to the condition is <= ``condition_threshold``
are masked out of the cross attention. The official repository uses two values: 0.01 in
``trainer/models/clip_model.py`` (``CLIPModel.forward``, which the README's inference example
calls, and imscore's port) and 0.3 in its HPDv2/ImageReward evaluation scripts
(``infer_one_sample``). The default is 0.01, the README's inference path; pass 0.3 to reproduce the
paper's benchmark evaluation.

Precision: the reference runs an fp16 model on CUDA, and both of its scoring paths cast the pixels
with ``.half()`` whatever the model's dtype. This scorer runs in the ``dtype`` it is built with (the
project's benchmark builds it in float32) and rounds the pixels to fp16 first, as the reference
does: on random weights, skipping that rounding moves the logits by ~7e-4, keeping it matches both
reference paths (float32, CPU) to ~2e-6 (tests/test_parity_openclip.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from eval.metrics.base import PairwiseScorer
from eval.metrics.hf_clip import load_clip_processor, processor_pixels
from eval.metrics.hub import resolve_dir, resolve_file
from npnet.errors import UserError

MPS_REPO = "RE-N-Y/mpsv1"
MPS_FILE = "model.safetensors"
MPS_CLIP = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
MPS_CONDITION = (
    "light, color, clarity, tone, style, ambiance, artistry, shape, face, hair, hands, limbs, structure, "
    "instance, texture, quantity, attributes, position, number, location, word, things."
)

# 0.01: the official CLIPModel.forward (README inference) and imscore; 0.3: the official eval scripts
CONDITION_THRESHOLD = 0.01


def condition_mask(sim: torch.Tensor, threshold: float) -> torch.Tensor:
    """Additive attention mask from (b, 1, T) text-condition similarities: 0 where sim > threshold, else -inf."""
    sim = sim / sim.amax(dim=-1, keepdim=True)  # (b, 1, T), per-sample normalisation
    return torch.zeros_like(sim).masked_fill(~(sim > threshold), float("-inf"))  # (b, 1, T)


class MPSNet(nn.Module):
    """CLIP + cross model with the state-dict names of imscore's ``MPS.mps`` (``model.*``, ``cross_model.*``)."""

    def __init__(
        self,
        clip_config,
        cross_layers: int = 4,
        cross_heads: int = 16,
        condition_threshold: float = CONDITION_THRESHOLD,
    ) -> None:
        from imscore.mps.cross import CrossModel
        from transformers import CLIPModel

        super().__init__()
        self.model = CLIPModel(clip_config)
        self.model.text_model.eos_token_id = 2  # legacy argmax-EOS pooling, as the MPS port sets it
        self.cross_model = CrossModel(
            dim=clip_config.projection_dim, layer_num=cross_layers, heads=cross_heads
        )
        self.condition_threshold = condition_threshold

    def _text(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.text_model(input_ids=input_ids)
        tokens = self.model.text_projection(out.last_hidden_state)  # (b, 77, D)
        return tokens, self.model.text_projection(out.pooler_output)  # (b, 77, D), (b, D)

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, condition_ids: torch.Tensor
    ) -> torch.Tensor:
        """Per-image logit logit_scale * cos(text_eos, cross(image tokens | masked text tokens))."""
        text_tokens, text_eos = self._text(input_ids)  # (b, 77, D), (b, D)
        cond_tokens, _ = self._text(condition_ids)  # (b, 77, D)
        image_tokens = self.model.visual_projection(
            self.model.vision_model(pixel_values=pixels).last_hidden_state
        )
        sim = torch.einsum("bid,bjd->bji", text_tokens, cond_tokens)  # (b, 77 cond, 77 text)
        mask = condition_mask(sim.amax(dim=1, keepdim=True), self.condition_threshold)  # (b, 1, 77)
        mask = mask.expand(-1, image_tokens.shape[1], -1)  # (b, 1 + N, 77)
        image_feat = self.cross_model(image_tokens, text_tokens, mask)[:, 0, :]  # (b, D)
        cosine = (F.normalize(image_feat.float(), dim=-1) * F.normalize(text_eos.float(), dim=-1)).sum(-1)
        return self.model.logit_scale.exp().float() * cosine  # (b,)


def load_mps_state(path: Path) -> dict[str, torch.Tensor]:
    """imscore's MPS safetensors minus the ``mps.`` prefix and the (non-persistent) position ids."""
    state = load_file(str(path))
    if not any(key.startswith("mps.") for key in state):
        raise UserError(f"MPS weights {path} have no 'mps.*' keys; expected imscore's RE-N-Y/mpsv1 layout")
    return {
        key[4:]: value for key, value in state.items() if key.startswith("mps.") and "position_ids" not in key
    }


class MPSScorer(PairwiseScorer):
    """MPS (overall): per-image logits; ``compare`` gives P(a preferred over b)."""

    name: ClassVar[str] = "mps"
    units: ClassVar[str] = "MPS logit (pairwise: % preferred over standard, standard = 50%)"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
        checkpoint: str | Path = MPS_REPO,
        clip: str | Path = MPS_CLIP,
        cross_layers: int = 4,
        cross_heads: int = 16,
        condition: str = MPS_CONDITION,
        condition_threshold: float = CONDITION_THRESHOLD,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__(device, dtype, batch_size)
        self.checkpoint = checkpoint
        self.clip_source = clip
        self.cross_layers = cross_layers
        self.cross_heads = cross_heads
        self.condition = condition
        if not condition_threshold < 1.0:
            raise UserError(
                f"condition_threshold must be below 1 (official: 0.01 or 0.3; at 1 every text token is "
                f"masked), got {condition_threshold!r}"
            )
        self.condition_threshold = float(condition_threshold)
        self.cache_dir = cache_dir

    def _load(self) -> None:
        from transformers import CLIPConfig

        path = resolve_file(self.checkpoint, MPS_FILE, what="MPS", cache_dir=self.cache_dir)
        clip_dir = resolve_dir(
            self.clip_source,
            what="MPS CLIP config",
            required=("config.json",),
            weights=False,
            cache_dir=self.cache_dir,
        )
        self.processor = load_clip_processor(clip_dir, what="MPS processor")
        config = CLIPConfig.from_pretrained(clip_dir)
        net = MPSNet(config, self.cross_layers, self.cross_heads, self.condition_threshold)
        missing, unexpected = net.load_state_dict(load_mps_state(path), strict=False)
        missing = [key for key in missing if "position_ids" not in key]
        if missing or unexpected:
            raise UserError(
                f"MPS weights {path} do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        self.net = net.to(device=self.device, dtype=self.dtype).eval()

    def _tokens(self, texts: list[str]) -> torch.Tensor:
        tokenizer = self.processor.tokenizer
        out = tokenizer(texts, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
        return out.input_ids.to(self.device)  # (b, 77)

    def _score_batch(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        pixels = processor_pixels(self.processor, images)  # (b, 3, 224, 224)
        pixels = pixels.half().to(device=self.device, dtype=self.dtype)  # rounded to fp16 like the reference
        condition = self._tokens([self.condition]).expand(len(images), -1)  # (b, 77)
        return self.net(pixels, self._tokens(prompts), condition)
