"""transformers CLIP loading and feature extraction shared by PickScore, CLIPScore and AES.

Two image pipelines, one per reference (both bit-identical to it on RGB input, see
tests/test_parity_hfclip.py):

- ``processor_pixels``: the transformers image processor, PIL backend (PickScore's reference is the
  transformers 4.x ``AutoProcessor`` of laion/CLIP-ViT-H-14, which is PIL-based);
- ``openai_pixels``: OpenAI ``clip``'s transform (torchvision bicubic shortest-side resize, centre
  crop, ``ToTensor``, normalise), which CLIPScore (jmhessel/clipscore) and the LAION aesthetic
  predictor use. It differs from the processor's crop: torchvision rounds the crop offset half to
  even (``round(1.5) = 2``), transformers floors it, so images whose resized long side exceeds the
  crop by 3 mod 4 pixels are cropped one pixel apart.

Precision: scorers run in the ``dtype`` they are built with; the project's benchmark builds them in
float32 (see each scorer's module docstring for what its reference used).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from eval.metrics.clip_utils import resize_center_crop, to_normalized_tensor
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
    """A CLIPProcessor (image processor + tokenizer) from a hub id or local directory.

    ``backend="pil"`` (transformers 5's spelling of ``use_fast=False``): the default torchvision
    image processor (``CLIPImageProcessor`` in transformers 5) differs from the PIL-based one the
    reference code used (transformers 4.x) by 1/255 in ~0.3% of pixel values;
    ``CLIPImageProcessorPil`` reproduces the reference pixels exactly. The tokenizer is the
    ``tokenizers``-backed ``CLIPTokenizer`` either way (the one transformers 4.x's ``AutoProcessor``
    picked too): NFC, whitespace runs to one space, lower case; it does not unescape HTML entities.
    """
    from transformers import CLIPProcessor

    local = resolve_dir(source, what=what, required=(), weights=False, cache_dir=cache_dir)
    try:
        return CLIPProcessor.from_pretrained(local, local_files_only=True, backend="pil")
    except (OSError, ValueError, TypeError) as err:
        raise UserError(
            f"{what}: {local} is not a CLIP processor directory (needs preprocessor_config.json and "
            f"tokenizer files): {err}"
        ) from err


def processor_pixels(processor, images: list[Image.Image]) -> torch.Tensor:
    """Pixels from the transformers image processor, (b, 3, H, W) float32."""
    return processor(images=images, return_tensors="pt")["pixel_values"]


def openai_pixels(processor, images: list[Image.Image]) -> torch.Tensor:
    """Pixels as OpenAI ``clip``'s transform makes them, with the processor's sizes, mean and std.

    Resize(shortest_edge, bicubic) -> CenterCrop(crop) -> ToTensor -> Normalize, all torchvision on
    PIL images, as ``clip.clip._transform`` and jmhessel/clipscore's ``_transform_test``; (b, 3, H, W).
    """
    config = processor.image_processor
    edge, crop = config.size.shortest_edge, [config.crop_size.height, config.crop_size.width]
    if edge is None or None in crop:
        raise UserError(
            f"this CLIP processor resizes to {config.size} and crops to {config.crop_size}; the OpenAI "
            "transform needs a shortest_edge size and a height/width crop"
        )
    cropped = [resize_center_crop(image, edge, crop) for image in images]  # offset rounded half to even
    return to_normalized_tensor(cropped, mean=config.image_mean, std=config.image_std)  # (b, 3, H, W)


def image_embeds(model, pixels: torch.Tensor, device, dtype) -> torch.Tensor:
    """L2-normalised projected image embeddings of (b, 3, H, W) pixels, (b, D) float32."""
    pixels = pixels.to(device=device, dtype=dtype)
    embeds = model.get_image_features(pixel_values=pixels).pooler_output  # (b, D)
    return F.normalize(embeds.float(), dim=-1)


def text_embeds(model, processor, prompts: list[str], device) -> torch.Tensor:
    """L2-normalised projected text embeddings, (b, D); prompts truncated to 77 tokens."""
    tokens = processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    tokens = {key: value.to(device) for key, value in tokens.items()}
    out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return F.normalize(out.pooler_output.float(), dim=-1)  # (b, D)
