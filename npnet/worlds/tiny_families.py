"""Offline tiny pipelines for SD 1.5, SD3 and Flux (random weights from configs, fixed seed), for plumbing.

In the style of diffusers' own tests' ``get_dummy_components``: tiny CLIP text encoders and a tiny T5
from ``T5Config`` (tokenizers from files written by ``npnet.worlds.tiny``, no hub), a tiny UNet /
``SD3Transformer2DModel`` / ``FluxTransformer2DModel`` and a 4-block VAE (scale factor 8 as the real
models; 16 latent channels for SD3 and Flux). 64x64 px images: SD 1.5 latents 4x8x8, SD3 / Flux 16x8x8
(Flux packs them to 16 tokens of 64). Their images are noise, not pictures.

Text conditions (the NPNet presets ``tiny-sd15`` / ``tiny-sd3`` / ``tiny-flux`` have these shapes):
SD 1.5 77x48; SD3 joint CLIP (32 + 32, padded to 96) ++ T5 (256 tokens) = 333x96; Flux T5 512x40.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from npnet.worlds.tiny import (
    SDXL_SCHEDULER_CONFIG,
    TINY_SIZE,
    _clip_text_models,
    _tiny_vae,
    place,
    tiny_t5,
    tokenizers,
)

TINY_SD15_TEXT_DIM = 48
TINY_SD3_T5_DIM = 96  # >= CLIP-L + CLIP-G (32 + 32): the CLIP part is zero-padded to it, as in SD3
TINY_FLUX_T5_DIM = 40
SD3_SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}  # SD3.5's FlowMatchEulerDiscreteScheduler
FLUX_SCHEDULER_CONFIG = {  # FLUX.1-dev's FlowMatchEulerDiscreteScheduler
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "base_shift": 0.5,
    "max_shift": 1.15,
}
_SD15_SCHEDULER = {**SDXL_SCHEDULER_CONFIG, "skip_prk_steps": True, "set_alpha_to_one": False, "clip_sample": False}


def _seeded(seed: int, *makers):
    """Each maker's module built right after seeding the CPU generator, inside ``fork_rng``."""
    out = []
    with torch.random.fork_rng(devices=[]):
        for make in makers:
            torch.default_generator.manual_seed(seed)
            out.append(make())
    return out


def build_tiny_sd15(device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight ``StableDiffusionPipeline`` (64x64 px, 77x48 prompt embeddings, 4-channel latents)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    def unet():
        return UNet2DConditionModel(
            sample_size=TINY_SIZE // 8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            cross_attention_dim=TINY_SD15_TEXT_DIM,
            norm_num_groups=8,
        )

    with tempfile.TemporaryDirectory() as tmp:
        clip, _, _ = tokenizers(Path(tmp))
    net, vae, text = _seeded(seed, unet, lambda: _tiny_vae(scaling_factor=0.18215), lambda: _clip_text_models(48)[0])
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text.eval(),
        tokenizer=clip,
        unet=net.eval(),
        scheduler=PNDMScheduler.from_config(_SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return place(pipe, device, dtype)


def _flow_vae():
    return _tiny_vae(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False, scaling_factor=1.5305,
                     shift_factor=0.0609)  # fmt: skip


def build_tiny_sd3(device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight ``StableDiffusion3Pipeline`` (64x64 px, 16x8x8 latents, 333x96 joint prompt embeddings)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        clip, clip_2, t5_tok = tokenizers(Path(tmp), t5_length=256)

    def transformer():
        return SD3Transformer2DModel(
            sample_size=TINY_SIZE // 8,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=TINY_SD3_T5_DIM,
            caption_projection_dim=32,  # = heads x head dim
            pooled_projection_dim=64,  # CLIP-L + CLIP-G pooled (32 + 32)
            out_channels=16,
            pos_embed_max_size=16,
        )

    def texts():
        return _clip_text_models(32)[1], _clip_text_models(32)[1], tiny_t5(len(t5_tok), TINY_SD3_T5_DIM)

    net, vae, (te, te_2, te_3) = _seeded(seed, transformer, _flow_vae, texts)
    pipe = StableDiffusion3Pipeline(
        transformer=net.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SD3_SCHEDULER_CONFIG),
        vae=vae.eval(),
        text_encoder=te.eval(),
        tokenizer=clip,
        text_encoder_2=te_2.eval(),
        tokenizer_2=clip_2,
        text_encoder_3=te_3.eval(),
        tokenizer_3=t5_tok,
    )
    return place(pipe, device, dtype)


def build_tiny_flux(device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0, guidance_embeds: bool = True):
    """A random-weight ``FluxPipeline`` (64x64 px, 16x8x8 latents packed to 16x64, T5 512x40 embeddings);
    ``guidance_embeds``: Flux-dev-like distilled guidance input (False: schnell-like)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    with tempfile.TemporaryDirectory() as tmp:
        clip, _, t5_tok = tokenizers(Path(tmp), t5_length=512)

    def transformer():
        return FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,  # 16 channels x 2 x 2 (packed)
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=TINY_FLUX_T5_DIM,
            pooled_projection_dim=32,  # CLIP-L pooled stand-in
            guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 4, 8),  # sums to the head dim
        )

    def texts():
        return _clip_text_models(32)[0], tiny_t5(len(t5_tok), TINY_FLUX_T5_DIM)

    net, vae, (te, te_2) = _seeded(seed, transformer, _flow_vae, texts)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX_SCHEDULER_CONFIG),
        vae=vae.eval(),
        text_encoder=te.eval(),
        tokenizer=clip,
        text_encoder_2=te_2.eval(),
        tokenizer_2=t5_tok,
        transformer=net.eval(),
    )
    return place(pipe, device, dtype)
