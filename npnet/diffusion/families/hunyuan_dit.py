"""Hunyuan-DiT family: ``HunyuanDiTPipeline`` (DiT; BERT/CLIP embeddings (1, 77, 1024) = the NPNet
condition, plus mT5 embeddings (1, 256, 2048) and attention masks)."""

from __future__ import annotations

import torch

from npnet.diffusion.families.base import Family, pairs


class HunyuanDiTFamily(Family):
    name = "hunyuan-dit"
    label = "a Hunyuan-DiT"
    models = "a DiT model (hunyuan-dit)"
    pipeline_classes = ("HunyuanDiTPipeline",)
    embed_keys = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "prompt_attention_mask",
        "negative_prompt_attention_mask",
        "prompt_embeds_2",
        "negative_prompt_embeds_2",
        "prompt_attention_mask_2",
        "negative_prompt_attention_mask_2",
    )
    hub_kwargs = {"safety_checker": None}
    t5_length = 256  # the pipeline's mT5 max_sequence_length

    def denoiser(self, pipe):
        return pipe.transformer

    def call_kwargs(self):
        return {"use_resolution_binning": False}  # keep the requested size (x_T's shape)

    def encode(self, pipe, prompt, negative, device):
        dtype = pipe.transformer.dtype
        first = pipe.encode_prompt(prompt, device=device, dtype=dtype, negative_prompt=negative)
        second = pipe.encode_prompt(
            prompt,
            device=device,
            dtype=dtype,
            negative_prompt=negative,
            max_sequence_length=self.t5_length,
            text_encoder_index=1,
        )
        return dict(zip(self.embed_keys, (*first, *second)))

    def text_shape(self, pipe):
        return int(pipe.tokenizer.model_max_length), int(pipe.transformer.config.cross_attention_dim)

    def npnet_shape(self, pipe):
        return {"text_dim": self.text_shape(pipe)[1]}  # the official 77-token, 4-channel layout

    def model_outputs(self, pipe, x, t, embeds, guidance_scale):
        from diffusers.models.embeddings import get_2d_rotary_pos_embed
        from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

        net = pipe.transformer
        b, c, h, w = x.shape
        both = pairs(embeds)
        patch = net.config.patch_size
        grid = (h // patch, w // patch)
        crops = get_resize_crop_region_for_grid(grid, 512 // 8 // patch)
        rotary = get_2d_rotary_pos_embed(net.inner_dim // net.num_heads, crops, grid, device=x.device, output_type="pt")
        size = (h * pipe.vae_scale_factor, w * pipe.vae_scale_factor)
        meta = torch.tensor([[1024, 1024, *size, 0, 0]], dtype=x.dtype, device=x.device).repeat(2 * b, 1)
        out = net(
            torch.cat([x, x]),  # (2B, C, h, w)
            torch.full((2 * b,), float(t), device=x.device, dtype=x.dtype),
            encoder_hidden_states=both["prompt_embeds"],
            text_embedding_mask=both["prompt_attention_mask"],
            encoder_hidden_states_t5=both["prompt_embeds_2"],
            text_embedding_mask_t5=both["prompt_attention_mask_2"],
            image_meta_size=meta,
            style=torch.zeros(2 * b, dtype=torch.long, device=x.device),
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        return out[:, :c].chunk(2)  # drop the learned-sigma channels: (B, C, h, w) each


HUNYUAN_DIT = HunyuanDiTFamily()
