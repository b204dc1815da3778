"""Image preprocessing shared by the CLIP-based scorers (PIL in, normalised tensors out)."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_max_size(image: Image.Image, size: int, fill: int = 0) -> Image.Image:
    """HPSv2's eval resize: longest side to ``size`` (bicubic), then centre-pad to a square."""
    width, height = image.size
    scale = size / float(max(width, height))
    new_w, new_h = round(width * scale), round(height * scale)
    if (new_w, new_h) != (width, height):
        image = TF.resize(image, [new_h, new_w], interpolation=InterpolationMode.BICUBIC)
    pad_w, pad_h = size - new_w, size - new_h
    padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]
    return TF.pad(image, padding, fill=fill)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """OpenAI CLIP / BLIP eval resize: shortest side to ``size`` (bicubic), then centre crop."""
    image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC)
    return TF.center_crop(image, [size, size])


def to_normalized_tensor(
    images: list[Image.Image], mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
) -> torch.Tensor:
    """Stack same-size RGB images into a normalised batch."""
    pixels = torch.stack([TF.to_tensor(image) for image in images])  # (B, 3, H, W) in [0, 1]
    return TF.normalize(pixels, mean=list(mean), std=list(std))  # (B, 3, H, W)
