"""Offline tiny pipelines (random weights, fixed seed) of the real diffusers classes, for plumbing.

``tiny-sdxl`` is a ``StableDiffusionXLPipeline`` and ``tiny-hunyuan-dit`` a ``HunyuanDiTPipeline``,
both at 64x64 px (8x8 latents, VAE scale factor 8 as the real models) with tiny text encoders whose
tokenizers are loaded from files this module writes itself (no hub). They make every code path
run in tests and offline; their images are noise, not pictures.

Builders seed the CPU generator (the weights are built on the CPU) inside ``torch.random.fork_rng``: the
same seed gives the same weights, and the process-wide RNG state (other threads' requests, a training
run) is restored afterwards; CUDA generators are not touched.
"""

from __future__ import annotations

import dataclasses
import json
import string
import tempfile
from pathlib import Path

import torch

from npnet.model import NPNET_PRESETS, NPNet
from npnet.worlds.tokenizers import clip_byte_chars

TINY_SIZE = 64  # pixels; latents are 8x8
TINY_SDXL_TEXT_DIM = 64  # 32 (CLIP-L stand-in) + 32 (bigG stand-in), like SDXL's 768 + 1280
TINY_BERT_DIM = 32  # Hunyuan-DiT's 1024-wide bilingual CLIP/BERT stand-in
TINY_T5_DIM = 32

# SDXL base's scheduler config (EulerDiscreteScheduler), so from_config conversions behave as on SDXL.
SDXL_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}
# Hunyuan-DiT v1.2's scheduler config (DDPMScheduler, v-prediction).
HUNYUAN_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.03,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "clip_sample": False,
}
_SCHEDULER_EXTRAS = {"clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True}


# -- tokenizer files ---------------------------------------------------------------------------
def write_clip_tokenizer_files(folder: str | Path) -> Path:
    """CLIP BPE files: the 256 byte characters, the same with ``</w>``, bos/eos; no merges."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(clip_byte_chars())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def write_bert_vocab(folder: str | Path) -> Path:
    """WordPiece ``vocab.txt``: specials, lowercase letters, digits, punctuation and their ``##`` forms."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars + string.punctuation)
    tokens += ["##" + c for c in chars]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return folder


def write_t5_tokenizer_files(folder: str | Path) -> Path:
    """A character-level Unigram ``tokenizer.json`` in T5's layout (pad 0, eos 1, unk 2)."""
    from transformers import T5Tokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in string.ascii_lowercase]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(str(folder))
    return Path(folder)


def _tokenizers(folder: Path):
    """Load the four tiny tokenizers from files written into ``folder``."""
    from transformers import BertTokenizer, CLIPTokenizer, T5Tokenizer

    clip_dir = str(write_clip_tokenizer_files(folder / "clip"))
    clip = CLIPTokenizer.from_pretrained(clip_dir, model_max_length=77)
    clip_2 = CLIPTokenizer.from_pretrained(clip_dir, model_max_length=77, pad_token="!")  # as SDXL's 2nd
    bert = BertTokenizer.from_pretrained(str(write_bert_vocab(folder / "bert")), model_max_length=77)
    t5 = T5Tokenizer.from_pretrained(str(write_t5_tokenizer_files(folder / "t5")), model_max_length=256)
    return clip, clip_2, bert, t5


# -- models ------------------------------------------------------------------------------------
def _tiny_vae(**overrides):
    """A 4-block AutoencoderKL (vae_scale_factor 8); ``overrides``: e.g. 16 latent channels (SD3, Flux)."""
    from diffusers import AutoencoderKL

    options = dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4,
        sample_size=TINY_SIZE,
        scaling_factor=0.13025,  # SDXL's VAE (also used by Hunyuan-DiT)
    )
    return AutoencoderKL(**{**options, **overrides})


def _clip_text_models(hidden: int = TINY_SDXL_TEXT_DIM // 2):
    """(CLIPTextModel, CLIPTextModelWithProjection) of width ``hidden`` on the project's CLIP vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=514,
        projection_dim=hidden,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        max_position_embeddings=77,
    )
    return CLIPTextModel(config), CLIPTextModelWithProjection(config)


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    pooled = TINY_SDXL_TEXT_DIM // 2
    return UNet2DConditionModel(
        sample_size=TINY_SIZE // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + pooled,  # 6 time ids x 8 + pooled text
        cross_attention_dim=TINY_SDXL_TEXT_DIM,
        norm_num_groups=8,
    )


def build_tiny_sdxl(device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight ``StableDiffusionXLPipeline`` (64x64 px, 77x64 prompt embeddings)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    with tempfile.TemporaryDirectory() as tmp:
        clip, clip_2, _, _ = _tokenizers(Path(tmp))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        unet = _tiny_unet()
        torch.default_generator.manual_seed(seed)
        vae = _tiny_vae()
        torch.default_generator.manual_seed(seed)
        text_encoder, text_encoder_2 = _clip_text_models()
    scheduler = EulerDiscreteScheduler.from_config({**SDXL_SCHEDULER_CONFIG, **_SCHEDULER_EXTRAS})
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=clip,
        tokenizer_2=clip_2,
        unet=unet.eval(),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    return _place(pipe, device, dtype)


def tiny_t5(vocab: int, width: int = TINY_T5_DIM):
    """A 2-layer T5 encoder of width ``width`` from a ``T5Config`` (diffusers' dummy-components style)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab,
        d_model=width,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config)


def _hunyuan_text_models(bert_vocab: int, t5_vocab: int):
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(
            vocab_size=bert_vocab,
            hidden_size=TINY_BERT_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=128,
        ),
        add_pooling_layer=False,
    )
    t5 = tiny_t5(t5_vocab)
    return bert, t5


def build_tiny_hunyuan_dit(device="cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random-weight ``HunyuanDiTPipeline`` (64x64 px, 77x32 BERT embeddings, 256x32 T5)."""
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline

    with tempfile.TemporaryDirectory() as tmp:
        _, _, bert_tok, t5_tok = _tokenizers(Path(tmp))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        transformer = HunyuanDiT2DModel(
            sample_size=TINY_SIZE // 8,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            in_channels=4,
            cross_attention_dim=TINY_BERT_DIM,
            cross_attention_dim_t5=TINY_T5_DIM,
            pooled_projection_dim=16,
            hidden_size=24,
            activation_fn="gelu-approximate",
        )
        torch.default_generator.manual_seed(seed)
        vae = _tiny_vae()
        torch.default_generator.manual_seed(seed)
        bert, t5 = _hunyuan_text_models(len(bert_tok), len(t5_tok))
    pipe = HunyuanDiTPipeline(
        vae=vae.eval(),
        text_encoder=bert.eval(),
        tokenizer=bert_tok,
        transformer=transformer.eval(),
        scheduler=DDPMScheduler.from_config(HUNYUAN_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        text_encoder_2=t5.eval(),
        tokenizer_2=t5_tok,
    )
    return _place(pipe, device, dtype)


def tokenizers(folder: Path, t5_length: int = 256):
    """(CLIP, CLIP with pad "!", T5 of ``t5_length``) tokenizers loaded from files written into ``folder``."""
    from transformers import T5Tokenizer

    clip, clip_2, _, _ = _tokenizers(folder)
    t5 = T5Tokenizer.from_pretrained(str(write_t5_tokenizer_files(folder / "t5-long")), model_max_length=t5_length)
    return clip, clip_2, t5


def place(pipe, device, dtype: torch.dtype):
    """``pipe`` on ``device``, cast to ``dtype`` unless float32 (the builders' last step)."""
    return _place(pipe, device, dtype)


def _place(pipe, device, dtype: torch.dtype):
    pipe = pipe.to(device)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def build_tiny_npnet(text_dim: int, seed: int = 0, device="cpu", preset: str = "tiny", **shape):
    """A random-init tiny NPNet (8x8 latents) of NPNet preset ``preset`` for a tiny pipeline's
    prompt-embedding width (and ``shape``: other NPNetConfig fields the pipeline fixes)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        net = NPNet(dataclasses.replace(NPNET_PRESETS[preset], text_dim=text_dim, **shape))
    with torch.no_grad():  # released nets have small non-zero alpha/beta; make every branch count
        net.alpha.fill_(0.5)
        net.beta.fill_(0.1)
    return net.to(device=device, dtype=torch.float32).eval()
