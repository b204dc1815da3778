"""Content-addressed image cache for benchmarks: one PNG per (model, latent kind, prompt, seed, settings).

The key holds everything that changes the pixels, so a standard image is generated once and shared by
every comparison (and every best-of-N candidate that reuses its seed), across resumed runs.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from npnet.io import atomic_write_bytes


def image_key(
    model: str, kind: str, prompt: str, seed: int, settings: dict[str, Any], npnet_hash: str | None
) -> str:
    """sha256 of the generation inputs; ``kind`` is "standard", "npnet" or "inversion"."""
    fields = {
        "model": model,
        "kind": kind,
        "prompt": prompt,
        "seed": int(seed),
        "npnet": npnet_hash if kind == "npnet" else None,
        **settings,
    }
    if kind != "inversion":
        fields = {k: v for k, v in fields.items() if not k.startswith(("redenoise", "inversion"))}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def module_hash(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, bytes): identifies an NPNet checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class ImageCache:
    """PNG files under ``root/<key[:2]>/<key>.png``, written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def get(self, key: str) -> Image.Image | None:
        path = self.path(key)
        if not path.exists():
            return None
        with Image.open(path) as image:
            return image.convert("RGB")

    def put(self, key: str, image: Image.Image) -> Path:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return atomic_write_bytes(self.path(key), buffer.getvalue())
