"""Parity fixtures shared by the reference scripts (scripts/parity/*_ref.py, run in throwaway reference
venvs with torch, numpy and PIL only) and the parity tests (tests/test_parity_*.py), so both sides build
identical seeded weights, images and vocabularies without storing the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from eval.metrics.random_weights import _byte_vocab, write_clip_processor
from npnet.errors import UserError

# ---------------------------------------------------------------- parity fixtures (issue 13)
# Shared by scripts/parity/{pickscore,clipscore,aes}_ref.py (run in a reference venv: torch, numpy and
# PIL only) and tests/test_parity_hfclip.py, so both sides build identical weights, images and vocabularies.

# Crop offsets (resized long side - 224) / 2 of 1.5 and 31.5 px: torchvision (OpenAI's transform) rounds
# them half to even, transformers floors them.
PARITY_IMAGES = (
    {"kind": "edges", "width": 227, "height": 224},  # no resize; crop offset 1.5 px
    {"kind": "gradient", "width": 300, "height": 173},  # upscaled, landscape
    {"kind": "disc", "width": 160, "height": 205},  # upscaled, portrait; crop offset 31.5 px
    {"kind": "stripes", "width": 517, "height": 330},  # downscaled
)

PARITY_PROMPTS = (
    "fish &amp; chips",  # HTML entity: clip.tokenize unescapes it, transformers' tokenizer does not
    "  a red   car\tparked \n by the  sea  ",  # whitespace runs, tab, newline, leading/trailing spaces
    "a chef\u2019s \u201cspecial\u201d soup",  # curly quotes: ftfy.fix_text straightens them
    "Tom &amp;amp; Jerry &lt;3",  # double-escaped: clip.tokenize unescapes twice
    "a cozy cabin in snowy pine woods at dusk, " * 8,  # > 77 tokens: truncated
)


def parity_image(kind: str, width: int, height: int):
    """A deterministic synthetic RGB image: smooth gradients, or sharp edges on a gradient."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float64)  # (H, W) pixel coordinates
    u, v = x / (width - 1), y / (height - 1)  # (H, W) in [0, 1]
    if kind == "gradient":
        channels = [u, v, 1.0 - 0.5 * (u + v)]
    elif kind == "edges":
        checker = (x // 16 + y // 16) % 2  # (H, W) 16-px checkerboard
        channels = [checker, 1.0 - checker, (x // 32) % 2 * v]
    elif kind == "disc":
        inside = ((x - 0.6 * width) ** 2 + (y - 0.4 * height) ** 2 < (0.3 * width) ** 2).astype(np.float64)
        channels = [inside, (1.0 - inside) * u, v]
    elif kind == "stripes":
        stripes = ((x + 2 * y) // 7) % 2  # (H, W) diagonal 1-px-sharp stripes
        channels = [stripes, u, stripes * v]
    else:
        raise UserError(f"unknown parity image kind {kind!r}")
    pixels = np.round(np.stack(channels, axis=-1) * 255.0).astype(np.uint8)  # (H, W, 3)
    return Image.fromarray(pixels, mode="RGB")


def image_sha256(image) -> str:
    """Hash of an image's RGB bytes, to check both sides scored the same pixels."""
    import hashlib

    return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()


def seeded_state_dict(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic float32 weights for a state-dict layout, reproducible in any environment.

    One ``torch.Generator().manual_seed(seed)`` draws ``randn`` for every key in sorted order; 1-d
    ``*.weight`` tensors (LayerNorm gains) become 1 + 0.1 n, other 1-d tensors 0.1 n, scalars (the
    logit scale) log(1/0.07) + 0.1 n, and >= 2-d tensors n / sqrt(fan_in). Values are rounded to
    float16 (like the released CLIP weights), so OpenAI ``clip``'s fp16 conversion loses nothing.
    """
    import math

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        shape = list(shapes[key])
        noise = torch.randn(shape, generator=generator)  # (*shape)
        if not shape:
            value = math.log(1 / 0.07) + 0.1 * noise
        elif len(shape) == 1:
            value = 1.0 + 0.1 * noise if key.endswith(".weight") else 0.1 * noise
        else:
            value = noise / math.sqrt(math.prod(shape[1:]))
        state[key] = value.half().float()
    return state


def openai_bpe_path() -> Path:
    """OpenAI CLIP's BPE merges (``bpe_simple_vocab_16e6.txt.gz``) as shipped in open_clip, which
    holds the same file as OpenAI's ``clip`` package; found without importing open_clip."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise UserError(
            "open_clip is not installed; it ships the CLIP BPE vocabulary (pip install open-clip-torch)"
        )
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def write_openai_bpe_files(directory: Path, bpe_gz: str | Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` of the hub's openai/clip-* repos, derived from OpenAI's BPE file.

    As OpenAI's ``SimpleTokenizer``: 48894 merges; the vocabulary is the 256 byte symbols, the same
    with '</w>', one token per merge, then '<|startoftext|>' and '<|endoftext|>' (49408 tokens).
    """
    import gzip

    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_symbols = [
        token for token, index in sorted(_byte_vocab().items(), key=lambda kv: kv[1]) if index < 512
    ]
    tokens = (
        byte_symbols + ["".join(merge.split()) for merge in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    directory.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False)
    )
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def write_openai_clip_processor(directory: Path, image_size: int, bpe_gz: str | Path | None = None) -> Path:
    """Tokenizer + image processor files like the hub's openai/clip-vit-* and laion/CLIP-ViT-H-14-*
    repos: the real 49408-token CLIP BPE vocabulary, shortest-edge resize and centre crop."""
    return write_clip_processor(
        directory, image_size, write_openai_bpe_files(directory, bpe_gz or openai_bpe_path())
    )


def parity_fixture_json(fixture: dict) -> str:
    """A fixture as JSON text, one key per line, each innermost list (shapes, scores) on one line."""
    import re

    text = json.dumps(fixture, indent=1)
    return re.sub(r"\[[^\[\]{}\"]*\]", lambda match: json.dumps(json.loads(match.group(0))), text) + "\n"


# ---------------------------------------------------------------- parity fixtures: HPSv2, ImageReward, MPS
# Used by scripts/parity/{hpsv2,imagereward,mps}_ref.py (reference venvs) and tests/test_parity_openclip.py.


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's keys and float32 values in sorted-key order (fixtures store it, not the weights)."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def checkout_commit(checkout: Path, commit: str | None = None) -> str:
    """A reference checkout's commit for the fixture: ``commit`` (an exported tree), else ``git rev-parse HEAD``."""
    import subprocess

    if commit:
        return commit
    result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown (not a git checkout; pass --commit)"


def parity_inputs(extra_specs=()) -> tuple[list[dict], list, list[str]]:
    """(image specs, images, prompts): ``extra_specs`` then ``PARITY_IMAGES``, prompts cycling ``PARITY_PROMPTS``."""
    specs = [*extra_specs, *PARITY_IMAGES]
    images = [parity_image(**spec) for spec in specs]
    return specs, images, [PARITY_PROMPTS[i % len(PARITY_PROMPTS)] for i in range(len(images))]


def write_traced_openai_clip(path: Path, arch: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights of OpenAI ``clip.model.CLIP(**arch)`` saved as a traced TorchScript archive, the format
    of OpenAI's released checkpoints (``clip.load``'s state-dict fallback re-reads a half-consumed file
    handle on torch 2.x). Reference venvs only: needs the ``clip`` package."""
    import clip

    model = clip.model.CLIP(**arch).eval()
    state = seeded_state_dict({key: list(value.shape) for key, value in model.state_dict().items()}, seed)
    model.load_state_dict(state)
    pixels = torch.zeros(1, 3, arch["image_resolution"], arch["image_resolution"])  # (1, 3, S, S)
    torch.jit.save(torch.jit.trace(model, (pixels, clip.tokenize(["a"]))), str(path))  # tokens (1, 77)
    return state


def check_state_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``model`` holds exactly ``state`` (clip.load rounds weights through float16; seeded ones are exact)."""
    assert sorted(model.state_dict()) == sorted(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
