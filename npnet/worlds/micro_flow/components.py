"""Build the micro flow generator from configs with the real SD3 classes (random init, never downloads).

``StableDiffusion3Pipeline`` with a small ``SD3Transformer2DModel`` (MMDiT) on 16x8x8 latents, a small
``AutoencoderKL`` (16 latent channels, scale factor 8, SD3-style ``shift_factor`` / ``scaling_factor``, no quant
convs), two small CLIP text encoders with projection (CLIP-L / CLIP-G roles) sharing the micro world's word-level
tokenizer, no T5 (``text_encoder_3=None``: the pipeline then appends ``max_sequence_length`` zero tokens, which
the transformer computes as one, exactly: ``null_tokens``), and ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextModelWithProjection

from npnet.worlds.micro.components import build_tokenizers, clip_text_config
from npnet.worlds.micro.grammar import IMAGE_SIZE
from npnet.worlds.micro_flow.null_tokens import compress_null_runs

LATENT_CHANNELS = 16
LATENT_SIZE = IMAGE_SIZE // 8
# CLIP length: the longest grammar caption is 10 words + BOS/EOS; the pipeline reads it from the tokenizer
CLIP_LENGTH = 16
T5_LENGTH = 256  # StableDiffusion3Pipeline's default max_sequence_length: zero tokens without a T5


@dataclass(frozen=True)
class FlowConfig:
    """Sizes of the micro flow generator; ``prompt_embeds`` width is ``2 * text_hidden`` (joint_attention_dim)."""

    text_hidden: int = 32
    text_layers: int = 3
    text_heads: int = 4
    text_intermediate: int = 64
    patch_size: int = 2
    num_layers: int = 6
    num_heads: int = 4
    head_dim: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    scheduler_shift: float = 1.0

    @property
    def text_dim(self) -> int:
        return 2 * self.text_hidden


FLOW_CONFIG = FlowConfig()


def build_transformer(config: FlowConfig) -> SD3Transformer2DModel:
    width = config.num_heads * config.head_dim
    return SD3Transformer2DModel(
        sample_size=LATENT_SIZE,
        patch_size=config.patch_size,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=config.num_layers,
        attention_head_dim=config.head_dim,
        num_attention_heads=config.num_heads,
        joint_attention_dim=config.text_dim,
        caption_projection_dim=width,
        pooled_projection_dim=config.text_dim,
        pos_embed_max_size=LATENT_SIZE // config.patch_size,
    )


def build_vae(config: FlowConfig) -> AutoencoderKL:
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
        shift_factor=0.0,
        use_quant_conv=False,
        use_post_quant_conv=False,
        force_upcast=False,
    )


def build_scheduler(config: FlowConfig) -> FlowMatchEulerDiscreteScheduler:
    """Rectified-flow Euler with a static shift (SD3 uses 3.0 at 1024 px; 64 latent pixels need less)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=config.scheduler_shift)


def build_components(tokenizer_dir: str | Path, config: FlowConfig = FLOW_CONFIG, seed: int = 0) -> dict:
    """All pipeline components with seeded random weights (tokenizer files written to ``tokenizer_dir``)."""
    tok1, tok2 = build_tokenizers(tokenizer_dir, CLIP_LENGTH)  # SD3-style: CLIP-L and CLIP-G tokenizers
    torch.manual_seed(seed)
    text_config = clip_text_config(config, vocab_size=len(tok1.get_vocab()), length=CLIP_LENGTH)
    return {
        "transformer": build_transformer(config),
        "vae": build_vae(config),
        "text_encoder": CLIPTextModelWithProjection(text_config),
        "text_encoder_2": CLIPTextModelWithProjection(text_config),
        "text_encoder_3": None,
        "tokenizer": tok1,
        "tokenizer_2": tok2,
        "tokenizer_3": None,
        "scheduler": build_scheduler(config),
    }


def build_pipeline(components: dict) -> StableDiffusion3Pipeline:
    """The real SD3 pipeline without T5 (its optional-T5 mode); its transformer computes the run of zero T5
    tokens as one (``null_tokens.compress_null_runs``: the same output, ~9x cheaper)."""
    pipe = StableDiffusion3Pipeline(**components)
    compress_null_runs(pipe.transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe
