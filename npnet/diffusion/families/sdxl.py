"""SDXL family: ``StableDiffusionXLPipeline`` (UNet, CLIP-L + bigG prompt embeddings (1, 77, 2048)).

Also SDXL-Lightning, LCM-SDXL, DreamShaper-xl, the micro world and tiny-sdxl (all SDXL-class).
"""

from __future__ import annotations

import torch

from npnet.diffusion.families.base import Family, pairs


class SDXLFamily(Family):
    name = "sdxl"
    label = "an SDXL-family"
    models = "an SDXL-family model (sdxl, dreamshaper-xl-v2-turbo, ...)"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    embed_keys = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    )

    def encode(self, pipe, prompt, negative, device):
        out = pipe.encode_prompt(
            prompt=prompt, device=device, do_classifier_free_guidance=True, negative_prompt=negative
        )
        return dict(zip(self.embed_keys, out))

    def text_shape(self, pipe):
        return int(pipe.tokenizer.model_max_length), int(pipe.unet.config.cross_attention_dim)

    def npnet_shape(self, pipe):
        return {"text_dim": self.text_shape(pipe)[1]}  # the official 77-token, 4-channel layout

    def guidance_embedded(self, pipe):
        return pipe.unet.config.time_cond_proj_dim is not None  # LCM

    def model_outputs(self, pipe, x, t, embeds, guidance_scale):
        unet = pipe.unet
        b, _, h, w = x.shape
        both = pairs(embeds)
        size = (h * pipe.vae_scale_factor, w * pipe.vae_scale_factor)
        proj = (
            pipe.text_encoder_2.config.projection_dim
            if pipe.text_encoder_2 is not None
            else int(both["pooled_prompt_embeds"].shape[-1])
        )
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=x.dtype, text_encoder_projection_dim=proj)
        timestep_cond = None
        if self.guidance_embedded(pipe):  # guidance-embedded UNets (LCM)
            scale = torch.tensor(guidance_scale - 1).repeat(2 * b)
            timestep_cond = pipe.get_guidance_scale_embedding(scale, embedding_dim=unet.config.time_cond_proj_dim)
            timestep_cond = timestep_cond.to(device=x.device, dtype=x.dtype)
        out = unet(
            torch.cat([x, x]),  # (2B, C, h, w)
            t,
            encoder_hidden_states=both["prompt_embeds"],
            timestep_cond=timestep_cond,
            added_cond_kwargs={"text_embeds": both["pooled_prompt_embeds"], "time_ids": time_ids.repeat(2 * b, 1)},
            return_dict=False,
        )[0]
        return out.chunk(2)


SDXL = SDXLFamily()
