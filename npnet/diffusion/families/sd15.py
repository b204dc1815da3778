"""Stable Diffusion 1.x / 2.x family: ``StableDiffusionPipeline`` (UNet, one CLIP text encoder).

The NPNet condition is ``prompt_embeds`` (1, 77, 768) for SD 1.5 (CLIP ViT-L) and (1, 77, 1024) for
SD 2.1 (OpenCLIP ViT-H); both read from the pipeline (tokenizer length, UNet cross-attention width).
"""

from __future__ import annotations

import torch

from npnet.diffusion.families.base import Family, pairs


class SD15Family(Family):
    name = "sd15"
    label = "a Stable Diffusion 1.x/2.x"
    models = "a Stable Diffusion 1.x/2.x model (sd15 for 77x768, sd21 for 77x1024, tiny-sd15)"
    pipeline_classes = ("StableDiffusionPipeline",)
    embed_keys = ("prompt_embeds", "negative_prompt_embeds")
    hub_kwargs = {"safety_checker": None, "requires_safety_checker": False}

    def encode(self, pipe, prompt, negative, device):
        out = pipe.encode_prompt(
            prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=negative
        )
        return dict(zip(self.embed_keys, out))

    def text_shape(self, pipe):
        return int(pipe.tokenizer.model_max_length), int(pipe.unet.config.cross_attention_dim)

    def guidance_embedded(self, pipe):
        return pipe.unet.config.time_cond_proj_dim is not None  # LCM-distilled UNets

    def model_outputs(self, pipe, x, t, embeds, guidance_scale):
        unet = pipe.unet
        b = x.shape[0]
        both = pairs(embeds)
        timestep_cond = None
        if self.guidance_embedded(pipe):
            scale = torch.tensor(guidance_scale - 1).repeat(2 * b)
            timestep_cond = pipe.get_guidance_scale_embedding(scale, embedding_dim=unet.config.time_cond_proj_dim)
            timestep_cond = timestep_cond.to(device=x.device, dtype=x.dtype)
        out = unet(
            torch.cat([x, x]),  # (2B, C, h, w)
            t,
            encoder_hidden_states=both["prompt_embeds"],
            timestep_cond=timestep_cond,
            return_dict=False,
        )[0]
        return out.chunk(2)


SD15 = SD15Family()
