"""Build the micro generator from configs with the real SDXL classes (random init, never downloads).

StableDiffusionXLPipeline with a small UNet2DConditionModel on 4x8x8 latents, a small AutoencoderKL
(4 latent channels, scale factor 8, 64x64 images), two small CLIP text encoders and a word-level
CLIPTokenizer whose every grammar word is a single token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from npnet.worlds.micro.grammar import IMAGE_SIZE, vocabulary
from npnet.worlds.tokenizers import clip_byte_chars

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
LATENT_CHANNELS = 4
LATENT_SIZE = IMAGE_SIZE // 8


@dataclass(frozen=True)
class MicroConfig:
    """Sizes of the micro generator; prompt_embeds width is ``2 * text_hidden`` (the NPNet text_dim)."""

    text_hidden: int = 32
    text_layers: int = 3
    text_heads: int = 4
    text_intermediate: int = 64
    unet_channels: tuple[int, ...] = (64, 128)
    unet_layers_per_block: int = 1
    unet_head_dim: tuple[int, ...] = (4, 8)
    unet_transformer_layers: tuple[int, ...] = (1, 1)
    addition_time_embed_dim: int = 8
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8

    @property
    def text_dim(self) -> int:
        return 2 * self.text_hidden


MICRO_CONFIG = MicroConfig()


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that build ``word</w>`` from its characters."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    merges, left = [], pieces[0]
    for piece in pieces[1:]:
        merges.append((left, piece))
        left = left + piece
    return merges


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word as CLIP does it (lowest-rank pair merged first)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
    return parts


def word_level_vocab(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP vocab + merges in which every word of ``words`` encodes to exactly one token.

    Base: the 256 byte characters, the same with ``</w>``, BOS (id 512) and EOS (id 513), so any text still
    tokenizes; then merges per word, extended until each word is a single BPE token.
    """
    chars = clip_byte_chars()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab[BOS], vocab[EOS] = 512, 513
    merges: list[tuple[str, str]] = []
    for word in words:
        merges += [m for m in _word_merges(word) if m not in merges]
    for _ in range(20):
        ranks = {m: i for i, m in enumerate(merges)}
        broken = [(w, _bpe(w, ranks)) for w in words if len(_bpe(w, ranks)) > 1]
        if not broken:
            break
        for _, parts in broken:
            left = parts[0]
            for piece in parts[1:]:
                if (left, piece) not in merges:
                    merges.append((left, piece))
                left = left + piece
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
        vocab.setdefault(a, len(vocab))
    return vocab, merges


def write_tokenizer_files(folder: str | Path, words: list[str] | None = None) -> Path:
    """Write vocab.json and merges.txt of the word-level tokenizer into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = word_level_vocab(words or vocabulary())
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def build_tokenizers(folder: str | Path, length: int = MAX_LENGTH) -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """The two CLIP tokenizers (the second pads with "!" like SDXL's and SD3's CLIP-G) from freshly
    written files, ``length`` tokens long."""
    folder = write_tokenizer_files(folder)
    vocab, merges = str(folder / "vocab.json"), str(folder / "merges.txt")
    tok1 = CLIPTokenizer(vocab, merges, model_max_length=length)
    tok2 = CLIPTokenizer(vocab, merges, model_max_length=length, pad_token="!")
    return tok1, tok2


def clip_text_config(config, vocab_size: int, length: int = MAX_LENGTH) -> CLIPTextConfig:
    """The small CLIP text encoder's config from a world config's ``text_*`` sizes."""
    return CLIPTextConfig(
        hidden_size=config.text_hidden,
        intermediate_size=config.text_intermediate,
        num_attention_heads=config.text_heads,
        num_hidden_layers=config.text_layers,
        vocab_size=vocab_size,
        projection_dim=config.text_hidden,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        max_position_embeddings=length,
    )


def build_unet(config: MicroConfig) -> UNet2DConditionModel:
    n = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=config.unet_channels,
        layers_per_block=config.unet_layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        attention_head_dim=config.unet_head_dim,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=config.addition_time_embed_dim,
        transformer_layers_per_block=config.unet_transformer_layers,
        projection_class_embeddings_input_dim=6 * config.addition_time_embed_dim + config.text_hidden,
        cross_attention_dim=config.text_dim,
        norm_num_groups=8,
    )


def build_vae(config: MicroConfig) -> AutoencoderKL:
    n = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=LATENT_CHANNELS,
        block_out_channels=config.vae_channels,
        layers_per_block=config.vae_layers_per_block,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=config.vae_norm_groups,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
        force_upcast=False,
    )


def build_scheduler() -> DDIMScheduler:
    """DDIM with the SDXL training schedule (scaled_linear betas, 1000 steps, epsilon prediction)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


def build_components(tokenizer_dir: str | Path, config: MicroConfig = MICRO_CONFIG, seed: int = 0) -> dict:
    """All pipeline components with seeded random weights (tokenizer files written to ``tokenizer_dir``)."""
    tok1, tok2 = build_tokenizers(tokenizer_dir)
    torch.manual_seed(seed)
    text_config = clip_text_config(config, vocab_size=len(tok1.get_vocab()))
    return {
        "unet": build_unet(config),
        "vae": build_vae(config),
        "text_encoder": CLIPTextModel(text_config),
        "text_encoder_2": CLIPTextModelWithProjection(text_config),
        "tokenizer": tok1,
        "tokenizer_2": tok2,
        "scheduler": build_scheduler(),
    }


def build_pipeline(components: dict) -> StableDiffusionXLPipeline:
    """The real SDXL pipeline; the empty prompt is encoded (not zeroed) for CFG, as in training."""
    pipe = StableDiffusionXLPipeline(**components, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
