"""Random-weight checkpoints in each scorer's real on-disk layout (tests and throughput benchmarks).

``write_random_checkpoints(root, names, size)`` writes, per metric, files shaped exactly like the
hub repos the scorers download (a transformers CLIP directory with tokenizer and image processor,
``HPS_v2.1_compressed.pt`` with a ``state_dict`` nesting, the LAION MLP ``.pth``, imscore-style
``model.safetensors``) and returns the ``get_scorer`` kwargs that point each scorer at them, so the
scorers' real loading code runs offline. Scores from these weights are meaningless.
Sizes: "tiny" (tests, ~1 s), "small" (reduced widths/depths at 224 px), "full" (the real
architectures; several GB on disk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from eval.metrics.registry import PAPER_METRICS
from npnet.errors import UserError

CLIP_BOS, CLIP_EOS = 512, 513  # ids of <|startoftext|>, <|endoftext|> in the byte-level test vocabulary


@dataclass(frozen=True)
class ClipSize:
    """Widths/depths of a CLIP model; ``vocab`` must cover the byte-level test tokenizer (>= 514)."""

    image: int
    patch: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    projection: int
    vocab: int = 514


CLIP_SIZES: dict[str, dict[str, ClipSize]] = {
    "tiny": {
        "L": ClipSize(32, 8, 32, 2, 4, 32, 2, 4, 16),
        "B32": ClipSize(32, 8, 32, 2, 4, 32, 2, 4, 16),
        "H": ClipSize(32, 8, 32, 2, 4, 32, 2, 4, 16),
    },
    "small": {
        "L": ClipSize(224, 14, 256, 4, 4, 256, 4, 4, 256),
        "B32": ClipSize(224, 14, 256, 4, 4, 256, 4, 4, 256),
        "H": ClipSize(224, 14, 256, 4, 4, 256, 4, 4, 256),
    },
    "full": {
        "L": ClipSize(224, 14, 1024, 24, 16, 768, 12, 12, 768, 49408),
        "B32": ClipSize(224, 32, 768, 12, 12, 512, 12, 8, 512, 49408),
        "H": ClipSize(224, 14, 1280, 32, 16, 1024, 24, 16, 1024, 49408),
    },
}


def _byte_vocab() -> dict[str, int]:
    """CLIP's 256 byte-to-unicode symbols, the same with '</w>', then the two special tokens."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    symbols = [chr(code) for code in codes]
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": 256 + i for i, symbol in enumerate(symbols)})
    vocab.update({"<|startoftext|>": CLIP_BOS, "<|endoftext|>": CLIP_EOS})
    return vocab


def write_clip_processor(directory: Path, image_size: int, bpe: tuple[Path, Path] | None = None) -> Path:
    """Tokenizer + image processor files, laid out like a CLIP hub repo; ``bpe``: (vocab.json, merges.txt)
    to use (default: the byte-level test vocabulary, written here)."""
    from transformers import CLIPImageProcessor, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    if bpe is None:
        bpe = (directory / "vocab.json", directory / "merges.txt")
        bpe[0].write_text(json.dumps(_byte_vocab()))
        bpe[1].write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(bpe[0]), str(bpe[1]), model_max_length=77
    )  # positional: transformers 4 and 5
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(directory)
    return directory


def clip_config(size: ClipSize):
    from transformers import CLIPConfig

    text = dict(
        hidden_size=size.text_width,
        intermediate_size=4 * size.text_width,
        num_attention_heads=size.text_heads,
        num_hidden_layers=size.text_layers,
        vocab_size=size.vocab,
        bos_token_id=CLIP_BOS,
        eos_token_id=CLIP_EOS,
        pad_token_id=CLIP_EOS,
        max_position_embeddings=77,
    )
    vision = dict(
        hidden_size=size.vision_width,
        intermediate_size=4 * size.vision_width,
        num_attention_heads=size.vision_heads,
        num_hidden_layers=size.vision_layers,
        image_size=size.image,
        patch_size=size.patch,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=size.projection)


def write_clip_model(directory: Path, size: ClipSize) -> Path:
    """A random CLIPModel saved with save_pretrained, plus processor files (like openai/clip-*)."""
    from transformers import CLIPModel

    CLIPModel(clip_config(size)).save_pretrained(directory)
    return write_clip_processor(directory, size.image)


def write_hps(directory: Path, size: str) -> dict:
    import open_clip

    overrides = {}
    if size != "full":
        clip = CLIP_SIZES[size]["H"]
        overrides = dict(
            embed_dim=clip.projection,
            vision_cfg=dict(image_size=clip.image, layers=clip.vision_layers, width=clip.vision_width,
                            head_width=clip.vision_width // clip.vision_heads, patch_size=clip.patch),
            text_cfg=dict(context_length=77, vocab_size=49408, width=clip.text_width, heads=clip.text_heads,
                          layers=clip.text_layers),
        )  # fmt: skip
    model = open_clip.create_model("ViT-H-14", pretrained=None, pretrained_text=False, **overrides)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"epoch": 1, "name": "random", "state_dict": model.state_dict()}, directory / "HPS_v2.1_compressed.pt"
    )
    return {"checkpoint": str(directory), "arch_overrides": overrides}


def write_aes(directory: Path, size: str) -> dict:
    from eval.metrics.aes import AES_MLP_FILE, AestheticMLP

    clip = CLIP_SIZES[size]["L"]
    write_clip_model(directory / "clip", clip)
    (directory / "mlp").mkdir(parents=True, exist_ok=True)
    torch.save(AestheticMLP(clip.projection).state_dict(), directory / "mlp" / AES_MLP_FILE)
    return {"backbone": str(directory / "clip"), "mlp": str(directory / "mlp")}


def write_pickscore(directory: Path, size: str) -> dict:
    clip = CLIP_SIZES[size]["H"]
    write_clip_model(directory / "model", clip)
    write_clip_processor(directory / "processor", clip.image)
    return {"model": str(directory / "model"), "processor": str(directory / "processor")}


def write_clipscore(directory: Path, size: str) -> dict:
    write_clip_model(directory / "model", CLIP_SIZES[size]["B32"])  # CLIPScore's ViT-B/32
    return {"model": str(directory / "model")}


def imagereward_arch(size: str):
    from eval.metrics.imagereward import ImageRewardArch

    if size == "full":
        return ImageRewardArch()
    width, depth, image = (32, 2, 32) if size == "tiny" else (256, 4, 224)
    bert = dict(hidden_size=width, intermediate_size=4 * width, num_attention_heads=4, num_hidden_layers=depth,
                max_position_embeddings=64, vocab_size=128, layer_norm_eps=1e-12, pad_token_id=0, type_vocab_size=2)  # fmt: skip
    return replace(
        ImageRewardArch(), image_size=image, vision_width=width, vision_depth=depth, vision_heads=4, bert=bert
    )


def write_bert_vocab(directory: Path, vocab_size: int) -> Path:
    """A WordPiece vocabulary (specials, characters, '##' characters) padded to ``vocab_size - 2``."""
    from transformers import BertTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    tokens = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(".,;:!?'\"-()")
        + chars
        + [f"##{c}" for c in chars]
    )
    if len(tokens) > vocab_size - 2:
        raise UserError(f"vocab_size {vocab_size} is too small for the test vocabulary ({len(tokens) + 2})")
    tokens += [f"[unused{i}]" for i in range(vocab_size - 2 - len(tokens))]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    return directory


def write_imagereward(directory: Path, size: str) -> dict:
    from safetensors.torch import save_file

    from eval.metrics.imagereward import IMAGEREWARD_FILE, ImageRewardNet

    arch = imagereward_arch(size)
    write_bert_vocab(directory / "tokenizer", arch.bert["vocab_size"])
    (directory / "weights").mkdir(parents=True, exist_ok=True)
    state = {key: value.contiguous() for key, value in ImageRewardNet(arch).state_dict().items()}
    save_file(state, str(directory / "weights" / IMAGEREWARD_FILE))
    return {"checkpoint": str(directory / "weights"), "tokenizer": str(directory / "tokenizer"), "arch": arch}


def write_mps(directory: Path, size: str) -> dict:
    from safetensors.torch import save_file

    from eval.metrics.mps import MPS_FILE, MPSNet

    clip = CLIP_SIZES[size]["H"]
    config = clip_config(clip)
    (directory / "clip").mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory / "clip")
    write_clip_processor(directory / "clip", clip.image)
    layers, heads = (4, 16) if size == "full" else (1, 2)
    state = {
        f"mps.{key}": value.contiguous() for key, value in MPSNet(config, layers, heads).state_dict().items()
    }
    (directory / "weights").mkdir(parents=True, exist_ok=True)
    save_file(state, str(directory / "weights" / MPS_FILE))
    return {"checkpoint": str(directory / "weights"), "clip": str(directory / "clip"), "cross_layers": layers,
            "cross_heads": heads}  # fmt: skip


WRITERS = {
    "hpsv2": write_hps,
    "pickscore": write_pickscore,
    "aes": write_aes,
    "imagereward": write_imagereward,
    "clipscore": write_clipscore,
    "mps": write_mps,
}


def write_random_checkpoints(
    root: str | Path, names: Iterable[str] = PAPER_METRICS, size: str = "tiny", seed: int = 0
) -> dict[str, dict]:
    """Write random checkpoints for ``names`` under ``root``; returns {name: get_scorer kwargs}."""
    if size not in CLIP_SIZES:
        raise UserError(f"unknown size {size!r}; choose one of {sorted(CLIP_SIZES)}")
    unknown = [name for name in names if name not in WRITERS]
    if unknown:
        raise UserError(f"no random-checkpoint writer for {unknown}; choose from {sorted(WRITERS)}")
    torch.manual_seed(seed)
    return {name: WRITERS[name](Path(root) / name, size) for name in names}
