"""Image preprocessing shared by the CLIP-based scorers (PIL in, normalised tensors out).

Two eval transforms, each reproducing its reference's pixels exactly on RGB input
(tests/test_parity_openclip.py):

- ``hps_pixels`` (HPSv2): ``hpsv2`` 1.2.0's ``image_transform(..., is_train=False,
  resize_longest_max=True)``, i.e. ``ToTensor`` first, then ``ResizeMaxSize`` on the float tensor,
  then ``Normalize``. The resize is torchvision's tensor bicubic with ``antialias=True`` (the
  default since torchvision 0.17), unclamped and unquantised, so sharp edges keep their bicubic
  overshoot outside [0, 1]; resizing the 8-bit PIL image first (as this module did before issue 13)
  rounds and clips them: ~10% of photos' pixel values move by more than 0.5/255, scores on random
  weights by ~0.002 (photos, benchmarks/hps_preprocessing.py) to 0.12 (the parity fixture's sharp
  synthetic edges) in 100 x cos.
- ``resize_center_crop`` + ``to_normalized_tensor`` (ImageReward's BLIP ``_transform`` and OpenAI
  CLIP's): PIL bicubic ``Resize(n_px)`` of the shortest side, ``CenterCrop(n_px)`` (torchvision: the
  crop offset is rounded half to even), ``ToTensor``, ``Normalize``.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def max_size_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """ResizeMaxSize's target shape: longest side to ``size``, the other ``round``ed (half to even)."""
    scale = size / float(max(height, width))
    return round(height * scale), round(width * scale)


def resize_max_size(pixels: torch.Tensor, size: int, fill: float = 0.0) -> torch.Tensor:
    """HPSv2's ``ResizeMaxSize`` on a (3, H, W) float tensor in [0, 1]; returns (3, size, size).

    Bicubic, antialiased, on the float values (no clamping or rounding), then centre-padded with
    ``fill`` (0: black, before normalisation). The reference skips both steps when the longest side
    already equals ``size``, which leaves a non-square image non-square (its model then fails on
    it); here such images are padded to a square too.
    """
    height, width = pixels.shape[-2:]
    new_h, new_w = max_size_shape(height, width, size)
    if (new_h, new_w) != (height, width):
        pixels = TF.resize(
            pixels, [new_h, new_w], interpolation=InterpolationMode.BICUBIC, antialias=True
        )  # (3, new_h, new_w), may overshoot [0, 1]
    pad_h, pad_w = size - new_h, size - new_w
    padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]  # left, top, right, bottom
    return TF.pad(pixels, padding, fill=fill)  # (3, size, size)


def hps_pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """HPSv2's eval transform: ToTensor -> ResizeMaxSize(size) -> Normalize; (B, 3, size, size)."""
    pixels = [resize_max_size(TF.to_tensor(image), size) for image in images]  # B x (3, size, size)
    return normalize(torch.stack(pixels))  # (B, 3, size, size)


def resize_center_crop(image: Image.Image, size: int, crop: list[int] | None = None) -> Image.Image:
    """OpenAI CLIP / BLIP eval resize: shortest side to ``size`` (PIL bicubic), then centre crop to ``crop``
    ([height, width]; default size x size; torchvision rounds the offset half to even)."""
    image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC)
    return TF.center_crop(image, crop or [size, size])


def normalize(pixels: torch.Tensor, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD) -> torch.Tensor:
    """Per-channel (x - mean) / std of a (B, 3, H, W) batch."""
    return TF.normalize(pixels, mean=list(mean), std=list(std))  # (B, 3, H, W)


def to_normalized_tensor(
    images: list[Image.Image], mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD
) -> torch.Tensor:
    """Stack same-size RGB images into a normalised batch."""
    pixels = torch.stack([TF.to_tensor(image) for image in images])  # (B, 3, H, W) in [0, 1]
    return normalize(pixels, mean, std)  # (B, 3, H, W)
