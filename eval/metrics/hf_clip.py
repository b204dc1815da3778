"""transformers CLIP loading and feature extraction shared by PickScore, CLIPScore and AES."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from eval.metrics.hub import resolve_dir
from npnet.errors import UserError


def load_clip_model(source: str | Path, *, what: str, device, dtype, cache_dir=None):
    """A transformers CLIPModel from a hub id or a local directory laid out like the hub repo."""
    from transformers import CLIPModel

    local = resolve_dir(source, what=what, required=("config.json",), cache_dir=cache_dir)
    try:
        model, info = CLIPModel.from_pretrained(
            local, dtype=dtype, local_files_only=True, output_loading_info=True
        )
    except (OSError, ValueError) as err:
        raise UserError(f"{what}: could not load a CLIP model from {local}: {err}") from err
    missing = [key for key in info.get("missing_keys", ()) if not key.endswith("position_ids")]
    if missing or info.get("mismatched_keys"):
        raise UserError(
            f"{what}: weights in {local} do not fit CLIPModel (missing {sorted(missing)[:5]}, "
            f"mismatched {list(info.get('mismatched_keys', ()))[:5]})"
        )
    return model.to(device).eval()


def load_clip_processor(source: str | Path, *, what: str, cache_dir=None):
    """A CLIPProcessor (image processor + tokenizer) from a hub id or local directory."""
    from transformers import CLIPProcessor

    local = resolve_dir(source, what=what, required=(), weights=False, cache_dir=cache_dir)
    try:
        return CLIPProcessor.from_pretrained(local, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(
            f"{what}: {local} is not a CLIP processor directory (needs preprocessor_config.json and "
            f"tokenizer files): {err}"
        ) from err


def image_embeds(model, processor, images: list[Image.Image], device, dtype) -> torch.Tensor:
    """L2-normalised projected image embeddings, (b, D)."""
    pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)
    embeds = model.get_image_features(pixel_values=pixels).pooler_output  # (b, D)
    return F.normalize(embeds.float(), dim=-1)


def text_embeds(model, processor, prompts: list[str], device) -> torch.Tensor:
    """L2-normalised projected text embeddings, (b, D); prompts truncated to 77 tokens."""
    tokens = processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    tokens = {key: value.to(device) for key, value in tokens.items()}
    out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return F.normalize(out.pooler_output.float(), dim=-1)  # (b, D)
